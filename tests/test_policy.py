"""The sharing policy (docs/sharing.md): the SQL filter against the reference model, and the
named cases.

The property test writes generated organisations to the database (one database per test, one
rolled-back transaction per example) and checks, for every viewer, that ``visible_messages``,
``can_see``, the Emails related list and a page of an ordered query all agree with
:mod:`tests.policy_model`, and that ``explain`` tells each user, about themselves and about
every other user, what the model says they are told: the reason, or for a message they may
not know of exactly the answer an id that does not exist gets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tortoise.transactions import in_transaction

from salesinbox.core.crm.linking import relink_record
from salesinbox.core.crm.records import RecordInput, create_record
from salesinbox.core.db.connection import open_database
from salesinbox.core.db.models import (
    AccountExcludedDomain,
    AddressRole,
    CrmRecord,
    Direction,
    DomainKind,
    Folder,
    MailAccount,
    Message,
    MessageAddress,
    MessageLink,
    Organisation,
    OrganisationDomain,
    Profile,
    RecordKind,
    ShareFlag,
    SharingPermission,
    User,
)
from salesinbox.core.errors import SalesInboxError
from salesinbox.core.plugin_host.providers import AuthKind, Security
from salesinbox.core.settings import Settings
from salesinbox.core.sharing.explanations import NOT_FOUND, Explanation, explain
from salesinbox.core.sharing.views import InboxFilter, Page, inbox_page, related_page
from salesinbox.core.sharing.visibility import can_see, visible_messages, visible_messages_for_record

from . import policy_model as model

# Small pools so that collisions happen: a listed domain, its subdomain, a look-alike suffix.
DOMAINS = ["acme.com", "mail.acme.com", "globex.com", "sub.globex.com", "bigacme.com", "initech.io"]
ADDRESSES = [
    "ceo@acme.com", "joe@mail.acme.com", "jane@globex.com", "bob@globex.com",
    "ann@sub.globex.com", "kim@bigacme.com", "lee@initech.io", "max@gmail.com", "sue@gmail.com",
]
DATES = [datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=d) for d in range(4)]
SHARINGS = [p.value for p in SharingPermission]
VISIBLE_CODES = {"owner", "shared_public", "shared_custom"}


@dataclass
class Scenario:
    """A model world plus what the model does not need: dates, roles, own alias addresses."""

    world: model.World
    dates: list[datetime] = field(default_factory=list)
    aliases: list[list[str]] = field(default_factory=list)  # own From addresses seen in mail
    roles: list[list[AddressRole]] = field(default_factory=list)


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    few_domains = st.sets(st.sampled_from(DOMAINS), max_size=1)
    an_address = st.sampled_from(ADDRESSES)
    users = [model.User(id=i) for i in range(draw(st.integers(2, 5)))]
    users[0].admin = draw(st.booleans())
    accounts: list[model.Account] = []
    for user in users:
        for _ in range(draw(st.integers(0, 2))):
            accounts.append(model.Account(
                id=len(accounts), owner=user.id, sharing=draw(st.sampled_from(SHARINGS)),
                excluded_domains=draw(few_domains)))
    records = [
        model.Record(id=i, kind=draw(st.sampled_from(["LEAD", "CONTACT"])),
                     primary_email=draw(an_address), secondary_email=draw(st.none() | an_address))
        for i in range(draw(st.integers(0, 5)))
    ]
    if draw(st.booleans()):  # a user of another organisation, without mail, maybe its admin
        users.append(model.User(id=len(users), organisation="other", admin=draw(st.booleans())))
    flags = {(u.id, r.id) for u in users for r in records if draw(st.booleans())}
    scenario = Scenario(model.World(
        organisation=model.Organisation(draw(few_domains), draw(few_domains)),
        users=users, accounts=accounts, records=records, share_flags=flags, messages=[]))
    for i in range(draw(st.integers(1, 10)) if accounts else 0):
        counterparties = draw(st.lists(an_address, max_size=3, unique=True))
        scenario.world.messages.append(model.Message(
            id=i, account=draw(st.sampled_from(accounts)).id, counterparties=counterparties))
        scenario.dates.append(draw(st.sampled_from(DATES)))
        scenario.aliases.append(draw(st.lists(
            st.sampled_from([a for a in ADDRESSES if a not in counterparties]), max_size=1)))
        n = len(counterparties)
        roles = st.lists(st.sampled_from(list(AddressRole)), min_size=n, max_size=n)
        scenario.roles.append(draw(roles))
    return scenario


@dataclass
class Written:
    """Database rows of a written scenario, by model id."""

    users: dict[int, User] = field(default_factory=dict)
    records: dict[int, int] = field(default_factory=dict)
    messages: dict[int, int] = field(default_factory=dict)


async def write_account(owner: User, sharing: str, email: str) -> MailAccount:
    return await MailAccount.create(
        user=owner, provider="custom_imap", display_name=owner.name, email=email,
        imap_host="imap.acme.test", imap_port=993, imap_security=Security.SSL, imap_username=email,
        imap_auth_kind=AuthKind.PASSWORD, imap_secret="not-a-secret", smtp_host="smtp.acme.test",
        smtp_port=465, smtp_security=Security.SSL, smtp_username=email,
        smtp_auth_kind=AuthKind.PASSWORD, smtp_secret="not-a-secret", sharing=sharing)


async def write_message(account: MailAccount, uid: int, date: datetime,
                        addresses: list[tuple[AddressRole, str, bool]]) -> Message:
    folder, _ = await Folder.get_or_create(account=account, name="INBOX")
    message = await Message.create(account=account, folder=folder, uidvalidity=1, uid=uid,
                                   direction=Direction.RECEIVED, date=date, subject="Secret plans")
    await MessageAddress.bulk_create([
        MessageAddress(message=message, role=role, address=address,
                       domain=model.domain_of(address), is_counterparty=counterparty)
        for role, address, counterparty in addresses])
    return message


async def write(scenario: Scenario) -> Written:
    world, out = scenario.world, Written()
    org = await Organisation.create(name="Acme")
    other_org = None
    await OrganisationDomain.bulk_create(
        [OrganisationDomain(organisation=org, kind=DomainKind.COMPANY, domain=d)
         for d in world.organisation.company_domains]
        + [OrganisationDomain(organisation=org, kind=DomainKind.EXCLUDED, domain=d)
           for d in world.organisation.excluded_domains])
    for user in world.users:
        profile = Profile.ADMIN if user.admin else Profile.STANDARD
        if user.organisation != "main" and other_org is None:
            other_org = await Organisation.create(name="Other")
        out.users[user.id] = await User.create(
            organisation=org if user.organisation == "main" else other_org,
            email=f"user{user.id}@acme.com", name=f"User {user.id}", profile=profile)
    accounts = {}
    for account in world.accounts:
        row = await write_account(out.users[account.owner], account.sharing,
                                  f"u{account.owner}.a{account.id}@acme.com")
        await AccountExcludedDomain.bulk_create(
            [AccountExcludedDomain(account=row, domain=d) for d in account.excluded_domains])
        accounts[account.id] = row
    for i, message in enumerate(world.messages):
        own = accounts[message.account].email
        addresses = [(AddressRole.TO, own, False)]
        addresses += [(AddressRole.FROM, alias, False) for alias in scenario.aliases[i]]
        addresses += [(role, a, True) for role, a in zip(scenario.roles[i], message.counterparties, strict=True)]
        stored = await write_message(accounts[message.account], i + 1, scenario.dates[i], addresses)
        out.messages[message.id] = stored.id
    for record in world.records:
        crm_record = await CrmRecord.create(
            organisation=org, kind=RecordKind(record.kind), owner=out.users[0],
            first_name="Rec", last_name=str(record.id),
            primary_email=record.primary_email, secondary_email=record.secondary_email)
        out.records[record.id] = crm_record.id
        await relink_record(crm_record)  # the real linking code
    await ShareFlag.bulk_create([ShareFlag(user=out.users[u], record_id=out.records[r])
                                 for u, r in sorted(world.share_flags)])
    return out


async def check(scenario: Scenario, db: Written) -> None:
    world = scenario.world
    msg_id = db.messages
    by_db_id = {v: k for k, v in msg_id.items()}
    linked = {m.id: {r.id for r in model.records_linked_to(world, m)} for m in world.messages}
    stored_links = await MessageLink.all().values_list("message_id", "record_id")
    assert {(by_db_id[m], r) for m, r in stored_links} == {
        (m, db.records[r]) for m, records in linked.items() for r in records}
    for user in world.users:
        viewer = db.users[user.id]
        expected = model.visible_messages(world, user.id)
        got = set(await visible_messages(viewer).values_list("id", flat=True))
        assert got == {msg_id[m] for m in expected}, f"viewer {user.id}"
        for message in world.messages:
            assert await can_see(viewer, msg_id[message.id]) == (message.id in expected)
        for record in world.records:
            in_list = {msg_id[m] for m in expected if record.id in linked[m]}
            related = visible_messages_for_record(viewer, db.records[record.id])
            assert set(await related.values_list("id", flat=True)) == in_list
            sharer = world.users[record.id % len(world.users)].id
            mine = {msg_id[m.id] for m in world.messages
                    if model.account_of(world, m).owner == sharer}
            by_sharer = visible_messages_for_record(
                viewer, db.records[record.id], db.users[sharer].id)
            assert set(await by_sharer.values_list("id", flat=True)) == in_list & mine
            # the list views' own SQL (core/sharing/page_rows.py), page by page with cursors
            assert await _all_pages(partial(
                related_page, viewer, db.records[record.id], first=2, record_verified=True)) == in_list
            assert await _all_pages(partial(
                related_page, viewer, db.records[record.id], shared_by=db.users[sharer].id, first=2,
                record_verified=True)) == in_list & mine
        own = {msg_id[m.id] for m in world.messages if model.account_of(world, m).owner == user.id}
        assert await _all_pages(partial(inbox_page, viewer, InboxFilter(), first=2)) == own
        # composes with ordering and pagination: the second page of two, newest first
        order = sorted(expected, key=lambda m: (scenario.dates[m], msg_id[m]), reverse=True)
        page = await visible_messages(viewer).order_by("-date", "-id").offset(2).limit(2)
        assert [m.id for m in page] == [msg_id[m] for m in order[2:4]]
    await check_explanations(scenario, db)


async def _all_pages(read: Callable[..., Awaitable[Page]]) -> set[int]:
    """The ids of every page ``read(after=…)`` returns, following the cursors to the end; each
    page is newest first and no id comes twice."""
    seen: list[int] = []
    after = None
    while True:
        page = await read(after=after)
        keys = [(m.date, m.id) for m in page.items]
        assert keys == sorted(keys, reverse=True)
        seen += [m.id for m in page.items]
        if page.next_cursor is None:
            assert len(seen) == len(set(seen))
            return set(seen)
        after = page.next_cursor


async def told(asker: User, message_id: int, viewer: User | None = None) -> Explanation | str:
    """What ``explain`` answers: an explanation, or the code of the error it raises."""
    try:
        return await explain(asker, message_id, viewer=viewer)
    except SalesInboxError as error:
        return error.code.value


async def check_explanations(scenario: Scenario, db: Written) -> None:
    """Every user asks about every message, for themselves and, when they own it or are an
    admin, for every other user; one user who is neither asks too. Each answer is the
    model's: a hidden message's reason only to its owner and admins, otherwise exactly what a
    missing id gets."""
    world = scenario.world
    missing = max(db.messages.values(), default=0) + 1000
    for message in world.messages:
        owner = model.account_of(world, message).owner
        others = [u.id for u in world.users if u.id != owner and not u.admin]
        askers = {u.id for u in world.users if u.admin} | {owner} | set(others[:1])
        for asker in world.users:
            viewers = [v.id for v in world.users] if asker.id in askers else [asker.id]
            for viewer in viewers:
                about = None if viewer == asker.id else db.users[viewer]
                why = await told(db.users[asker.id], db.messages[message.id], about)
                expected = model.explanation_told(world, asker.id, message, viewer)
                event(expected)  # --hypothesis-show-statistics: how often each answer occurs
                if expected in ("not_found", "forbidden"):
                    # byte for byte what a message id that does not exist gets
                    assert why == await told(db.users[asker.id], missing, about), (asker.id, viewer)
                    assert why == (NOT_FOUND if expected == "not_found" else "FORBIDDEN")
                    continue
                if expected == "no_such_user":
                    assert why == "NOT_FOUND"
                    continue
                assert isinstance(why, Explanation) and why.code == expected, (asker.id, viewer, why)
                assert why.visible == (expected in VISIBLE_CODES)
                assert why.visible == model.may_see(world, viewer, message)
                listed = model.first_listed_domain(world, message, model.account_of(world, message))
                if expected.endswith("_domain"):
                    assert listed is not None and why.reason.endswith(" " + listed[1])
                # nothing of the message: no subject, address or (when hidden) record name
                assert "Secret" not in why.reason and "@" not in why.reason
                assert why.visible or "Rec" not in why.reason


class _Rollback(Exception):
    pass


@pytest.fixture
def policy_runner(settings: Settings) -> Iterator[asyncio.Runner]:
    """An event loop of our own with the ORM connected, for a sync hypothesis test."""
    with asyncio.Runner() as runner:
        database = open_database(settings, apply_migrations=False)
        runner.run(database.__aenter__())
        try:
            yield runner
        finally:
            runner.run(database.__aexit__(None, None, None))


async def _run_example(scenario: Scenario) -> None:
    try:
        async with in_transaction():
            await check(scenario, await write(scenario))
            raise _Rollback  # leave the database empty for the next example
    except _Rollback:
        pass


@settings(max_examples=600, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios())
def test_policy_agrees_with_the_model(policy_runner: asyncio.Runner, scenario: Scenario) -> None:
    policy_runner.run(_run_example(scenario))


# --- The named consequences of docs/sharing.md#the-rule ---------------------------------------

NOW = datetime(2024, 6, 1, tzinfo=UTC)


async def _mail(account: MailAccount, *counterparties: str, uid: int | None = None) -> int:
    """A received message in ``account`` from ``counterparties``; returns its id."""
    addresses = [(AddressRole.TO, account.email, False)]
    addresses += [(AddressRole.FROM, a, True) for a in counterparties]
    uid = uid or await Message.filter(account=account).count() + 1
    return (await write_message(account, uid, NOW + timedelta(minutes=uid), addresses)).id


async def _contact(owner: User, email: str, last_name: str = "Doe", first_name: str = "Jane",
                   kind: RecordKind = RecordKind.CONTACT) -> CrmRecord:
    return await create_record(owner, kind, RecordInput(last_name=last_name, first_name=first_name,
                                                        primary_email=email))


async def _domain(user: User, kind: DomainKind, domain: str) -> None:
    await OrganisationDomain.create(organisation_id=user.organisation_id, kind=kind, domain=domain)


async def _ids(query) -> set[int]:
    return set(await query.values_list("id", flat=True))


async def test_ceo_added_as_contact_does_not_expose_internal_mail(
    rep: User, other_rep: User
) -> None:
    await _domain(rep, DomainKind.COMPANY, "acme.test")
    account = await write_account(rep, "PUBLIC", rep.email)
    internal = await _mail(account, "ceo@acme.test")
    with_customer = await _mail(account, "ceo@acme.test", "jane@globex.com")
    customer = await _mail(account, "jane@globex.com")
    await _contact(rep, "ceo@acme.test", "Boss", "Carla")
    await _contact(rep, "jane@globex.com")
    assert await _ids(visible_messages(other_rep)) == {customer}
    assert await _ids(visible_messages(rep)) == {internal, with_customer, customer}
    assert await explain(other_rep, internal) == NOT_FOUND  # a colleague is told nothing
    why = await explain(rep, internal, viewer=other_rep)  # the owner asks for the colleague
    assert (why.visible, why.code) == (False, "hidden_company_domain")
    assert why.reason == "hidden: counterparty in company domain acme.test"


async def test_admin_cannot_read_private_mail(admin: User, rep: User) -> None:
    account = await write_account(rep, "PRIVATE", rep.email)
    message = await _mail(account, "jane@globex.com")
    await _contact(rep, "jane@globex.com")
    assert admin.profile == Profile.ADMIN
    assert await _ids(visible_messages(admin)) == set() and not await can_see(admin, message)
    hidden = Explanation(False, "hidden: PRIVATE account", "hidden_private")
    assert await explain(admin, message) == hidden
    assert await explain(rep, await Message.get(id=message)) == Explanation(True, "owner", "owner")


async def test_mail_without_a_record_is_never_shared(rep: User, other_rep: User) -> None:
    account = await write_account(rep, "PUBLIC", rep.email)
    message = await _mail(account, "stranger@globex.com")
    assert not await can_see(other_rep, message)
    assert (await explain(rep, message, viewer=other_rep.id)).reason == (
        "hidden: not linked to any lead or contact")
    await _contact(rep, "stranger@globex.com", "Stranger", "Sam")  # links its history
    why = await explain(other_rep, message)
    assert why == Explanation(True, "shared: PUBLIC account, linked to contact Sam Stranger",
                              "shared_public")
    assert await can_see(other_rep, message)


async def test_custom_share_on_one_record_shows_the_message_under_all(
    rep: User, other_rep: User
) -> None:
    account = await write_account(rep, "CUSTOM", rep.email)
    message = await _mail(account, "jane@globex.com", "bob@globex.com")
    jane = await _contact(rep, "jane@globex.com")
    bob = await _contact(rep, "bob@globex.com", "Builder", "Bob", RecordKind.LEAD)
    await ShareFlag.create(user=other_rep, record=bob)  # someone else's tick shares nothing
    assert await _ids(visible_messages_for_record(other_rep, bob.id)) == set()
    assert (await explain(rep, message, viewer=other_rep)).code == "hidden_not_shared"
    await ShareFlag.create(user=rep, record=bob)
    for record in (jane, bob):
        assert await _ids(visible_messages_for_record(other_rep, record.id)) == {message}
        assert await _ids(visible_messages_for_record(other_rep, record.id, rep.id)) == {message}
        assert await _ids(visible_messages_for_record(other_rep, record.id, other_rep.id)) == set()
    assert (await explain(other_rep, message)).reason == (
        "shared: CUSTOM account, Share Email set on lead Bob Builder")


async def test_permission_change_applies_to_old_and_new_mail(rep: User, other_rep: User) -> None:
    account = await write_account(rep, "PRIVATE", rep.email)
    old = await _mail(account, "jane@globex.com")
    jane = await _contact(rep, "jane@globex.com")
    assert await _ids(visible_messages(other_rep)) == set()
    await MailAccount.filter(id=account.id).update(sharing=SharingPermission.PUBLIC)
    new = await _mail(account, "jane@globex.com")
    await relink_record(jane)  # as sync does when mail arrives
    assert await _ids(visible_messages(other_rep)) == {old, new}
    await MailAccount.filter(id=account.id).update(sharing=SharingPermission.CUSTOM)
    assert await _ids(visible_messages(other_rep)) == set()
    await MailAccount.filter(id=account.id).update(sharing=SharingPermission.PRIVATE)
    assert await _ids(visible_messages(other_rep)) == set()


async def test_excluded_domain_hides_its_subdomains_only(rep: User, other_rep: User) -> None:
    await _domain(rep, DomainKind.EXCLUDED, "acme-internal.com")
    account = await write_account(rep, "PUBLIC", rep.email)
    hidden = [await _mail(account, a) for a in ("x@acme-internal.com", "y@mail.acme-internal.com")]
    lookalike = await _mail(account, "z@notacme-internal.com")
    for address in ("x@acme-internal.com", "y@mail.acme-internal.com", "z@notacme-internal.com"):
        await _contact(rep, address)
    assert await _ids(visible_messages(other_rep)) == {lookalike}
    for message in hidden:
        assert (await explain(rep, message, viewer=other_rep)).reason == (
            "hidden: counterparty in organisation-excluded domain acme-internal.com")


async def test_account_excluded_domain_only_affects_that_account(
    admin: User, rep: User, other_rep: User
) -> None:
    mine = await write_account(rep, "PUBLIC", rep.email)
    theirs = await write_account(other_rep, "PUBLIC", other_rep.email)
    await AccountExcludedDomain.create(account=mine, domain="globex.com")
    hidden = await _mail(mine, "jane@sub.globex.com")
    shown = await _mail(theirs, "jane@sub.globex.com")
    await _contact(rep, "jane@sub.globex.com")
    assert await _ids(visible_messages(admin)) == {shown}
    assert await explain(admin, hidden) == Explanation(
        False, "hidden: counterparty in account-excluded domain globex.com",
        "hidden_account_excluded_domain")


async def test_another_organisation_never_sees_mail(rep: User) -> None:
    outsider = await User.create(organisation=await Organisation.create(name="Other"),
                                 email="out@other.test", name="Out")
    message = await _mail(await write_account(rep, "PUBLIC", rep.email), "jane@globex.com")
    await _contact(rep, "jane@globex.com")
    assert not await can_see(outsider, message)
    assert await explain(outsider, message) == await explain(outsider, 10**9) == NOT_FOUND


async def test_hidden_mail_is_explained_to_its_owner_and_admins_only(
    admin: User, rep: User, other_rep: User
) -> None:
    """A colleague who may not see a message learns nothing of it, not even that it exists:
    explain answers as for an id that does not exist; the owner and the organisation's admins
    get the reason and the customer domain, for themselves or a colleague."""
    account = await write_account(rep, "PUBLIC", rep.email)
    await AccountExcludedDomain.create(account=account, domain="bigcustomer.com")
    hidden = await _mail(account, "cfo@bigcustomer.com")
    await _contact(rep, "cfo@bigcustomer.com")
    missing = hidden + 1000
    assert await explain(other_rep, hidden) == await explain(other_rep, missing) == NOT_FOUND
    assert "bigcustomer" not in NOT_FOUND.reason
    # a colleague may not ask on anyone's behalf, about hidden and missing ids alike
    for message_id in (hidden, missing):
        with pytest.raises(SalesInboxError) as refused:
            await explain(other_rep, message_id, viewer=admin)
        assert refused.value.code == "FORBIDDEN"
    told = Explanation(False, "hidden: counterparty in account-excluded domain bigcustomer.com",
                       "hidden_account_excluded_domain")
    assert await explain(rep, hidden, viewer=other_rep) == told
    assert await explain(admin, hidden, viewer=other_rep.id) == told
    assert await explain(admin, hidden) == told
    assert await explain(rep, hidden) == Explanation(True, "owner", "owner")
    assert await explain(admin, hidden, viewer=rep) == Explanation(True, "owner", "owner")
    # an admin of another organisation is nobody here
    outsider = await User.create(organisation=await Organisation.create(name="Other"),
                                 email="root@other.test", name="Root", profile=Profile.ADMIN)
    assert await explain(outsider, hidden) == await explain(outsider, hidden, viewer=other_rep) == NOT_FOUND
    # nor can anyone name a user of another organisation
    with pytest.raises(SalesInboxError) as unknown:
        await explain(rep, hidden, viewer=outsider)
    assert unknown.value.code == "NOT_FOUND"


async def test_filter_composes_and_binds_values(rep: User, other_rep: User) -> None:
    account = await write_account(rep, "PUBLIC", rep.email)
    messages = [await _mail(account, "jane@globex.com") for _ in range(5)]
    await _contact(rep, "jane@globex.com")
    query = visible_messages(other_rep).filter(direction=Direction.RECEIVED)
    assert await query.count() == 5
    page = await query.order_by("-date", "-id").offset(1).limit(2)
    assert [m.id for m in page] == messages[3:1:-1]
    assert await visible_messages(other_rep).filter(direction=Direction.SENT).count() == 0
    sql = visible_messages(User(id=987654321, organisation_id=123456789)).sql()
    assert "987654321" not in sql and "123456789" not in sql  # values are bound parameters
