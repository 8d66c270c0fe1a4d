"""The mail views through GraphQL (docs/views.md, docs/sharing.md): SalesInbox, related list,
threads, detail, sharing settings, explain — as different users with their own tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from tortoise import connections

from salesinbox.core.crm.api_tokens import issue_token
from salesinbox.core.crm.linking import link_messages
from salesinbox.core.crm.records import RecordInput, create_record
from salesinbox.core.db.models import (
    AddressRole,
    Attachment,
    Direction,
    Folder,
    MailAccount,
    Message,
    MessageBody,
    RecordKind,
    User,
)

from .conftest import GraphQLClient
from .test_policy import write_account, write_message

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


async def mail(account: MailAccount, uid: int, *, sender: str, to: str, minutes: int, subject: str = "Hello",
               thread: str | None = None, direction: Direction = Direction.RECEIVED, seen: bool = False) -> Message:
    own = account.email
    message = await write_message(account, uid, T0 + timedelta(minutes=minutes), [
        (AddressRole.FROM, sender, sender != own), (AddressRole.TO, to, to != own)])
    message.subject, message.from_address, message.direction, message.seen = subject, sender, direction, seen
    message.thread_key = thread or f"<{uid}@t>"
    await message.save()
    await MessageBody.create(message=message, text=f"Body of {subject}", html=f"<p>{subject}</p>")
    await link_messages(account.user.organisation_id, [message.id])
    return message


@pytest.fixture
async def world(rep: User, other_rep: User) -> dict:
    rep_account = await write_account(rep, "PRIVATE", "rep@acme.test")
    other_account = await write_account(other_rep, "PUBLIC", "other@acme.test")
    jane = await create_record(rep, RecordKind.CONTACT, RecordInput(last_name="Doe", first_name="Jane",
                                                                    primary_email="jane@globex.com",
                                                                    secondary_email="jane.doe@gmail.com"))
    lead = await create_record(rep, RecordKind.LEAD, RecordInput(last_name="Lead", primary_email="lead@initech.io"))
    m = {
        "r1": await mail(
            rep_account, 1, sender="jane@globex.com", to="rep@acme.test", minutes=1, subject="Offer", thread="<t1>"
        ),
        "r2": await mail(
            rep_account,
            2,
            sender="rep@acme.test",
            to="jane.doe@gmail.com",
            minutes=2,
            subject="Re: Offer",
            thread="<t1>",
            direction=Direction.SENT,
            seen=True,
        ),
        "r3": await mail(rep_account, 3, sender="lead@initech.io", to="rep@acme.test", minutes=3, subject="Intro"),
        "r4": await mail(
            rep_account, 4, sender="news@spam.example", to="rep@acme.test", minutes=4, subject="Newsletter"
        ),
        "o1": await mail(
            other_account, 1, sender="jane@globex.com", to="other@acme.test", minutes=5, subject="Colleague"
        ),
    }
    await Attachment.create(message=m["r1"], filename="quote.pdf", content_type="application/pdf", size=1234)
    return {"jane": jane, "lead": lead, "m": m, "rep_account": rep_account, "other_account": other_account}


def ids(page: dict) -> list[str]:
    return [item["id"] for item in page["items"]]


async def test_sales_inbox_filters_and_pages(api: GraphQLClient, rep_token: str, world: dict) -> None:
    m = world["m"]
    query = ("query($f: InboxFilterInput, $n: Int!, $a: String) { salesInbox(filter: $f, first: $n, after: $a) { "
             "items { id subject folder direction seen linkedRecords { id kind } owner { email } } nextCursor } }")
    everything = (await api.ok(query, {"n": 50}, token=rep_token))["salesInbox"]
    assert ids(everything) == [str(m[k].id) for k in ("r4", "r3", "r2", "r1")]  # own mail only, newest first
    first = (await api.ok(query, {"n": 3}, token=rep_token))["salesInbox"]
    second = (await api.ok(query, {"n": 3, "a": first["nextCursor"]}, token=rep_token))["salesInbox"]
    assert ids(first) + ids(second) == ids(everything) and second["nextCursor"] is None

    async def filtered(**f: object) -> list[str]:
        return ids((await api.ok(query, {"f": f, "n": 50}, token=rep_token))["salesInbox"])

    assert await filtered(direction="SENT") == [str(m["r2"].id)]
    assert await filtered(seen=False) == [str(m[k].id) for k in ("r4", "r3", "r1")]
    assert await filtered(linked="LEADS") == [str(m["r3"].id)]
    assert await filtered(linked="CONTACTS") == [str(m[k].id) for k in ("r2", "r1")]
    assert await filtered(linked="NONE") == [str(m["r4"].id)]
    assert await filtered(search="OFFER") == [str(m[k].id) for k in ("r2", "r1")]
    assert await filtered(search="initech") == [str(m["r3"].id)]
    assert await filtered(folder="INBOX") == ids(everything)
    item = everything["items"][-1]
    assert item["linkedRecords"] == [{"id": str(world["jane"].id), "kind": "CONTACT"}]
    assert item["owner"] == {"email": "rep@acme.test"} and item["folder"] == "INBOX"
    error = await api.error(query, {"n": 3, "a": "garbage!"}, token=rep_token)
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": "after"}


async def test_related_list_respects_sharing(api: GraphQLClient, rep_token: str, rep: User, other_rep: User,
                                             world: dict) -> None:
    other_token = (await issue_token(other_rep, "t"))[1]
    m, jane = world["m"], world["jane"]
    query = ("query($id: ID!, $by: ID) { "
             "contact(id: $id) { emails(sharedBy: $by) { items { id owner { id } direction } } } }")
    mine = (await api.ok(query, {"id": str(jane.id)}, token=rep_token))["contact"]["emails"]
    # The rep sees their own mail (primary and secondary address) and the colleague's PUBLIC mail.
    assert ids(mine) == [str(m[k].id) for k in ("o1", "r2", "r1")]
    by_other = {"id": str(jane.id), "by": str(other_rep.id)}
    only_other = (await api.ok(query, by_other, token=rep_token))["contact"]["emails"]
    assert ids(only_other) == [str(m["o1"].id)]
    # The colleague does not see the rep's PRIVATE mail…
    theirs = (await api.ok(query, {"id": str(jane.id)}, token=other_token))["contact"]["emails"]
    assert ids(theirs) == [str(m["o1"].id)]
    # …until the rep shares it (CUSTOM + Share Email), on the next query, for old mail too.
    await api.ok("mutation($a: ID!) { setAccountSharing(accountId: $a, permission: CUSTOM) { sharing } }",
                 {"a": str(world["rep_account"].id)}, token=rep_token)
    assert ids((await api.ok(query, {"id": str(jane.id)}, token=other_token))["contact"]["emails"]) == [str(m["o1"].id)]
    ticked = await api.ok(
        "mutation($r: ID!) { setShareEmail(recordId: $r, shared: true) }", {"r": str(jane.id)}, token=rep_token
    )
    assert ticked["setShareEmail"] is True
    assert ids((await api.ok(query, {"id": str(jane.id)}, token=other_token))["contact"]["emails"]) == [
        str(m[k].id) for k in ("o1", "r2", "r1")]
    flag = await api.ok("query($id: ID!) { contact(id: $id) { shareEmail } }", {"id": str(jane.id)}, token=rep_token)
    assert flag["contact"]["shareEmail"] is True
    # Only admins change organisation-wide domains.
    admin_query = "mutation($d: String!) { addOrganisationDomain(kind: EXCLUDED, domain: $d) }"
    assert (await api.error(admin_query, {"d": "globex.com"}, token=rep_token))["extensions"]["code"] == "FORBIDDEN"


async def test_excluded_domains_and_explain(api: GraphQLClient, rep_token: str, admin_token: str, rep: User,
                                           other_rep: User, world: dict) -> None:
    other_token = (await issue_token(other_rep, "t"))[1]
    m = world["m"]
    explain = "query($m: ID!) { explainVisibility(messageId: $m) { visible code reason } }"
    explain_for = ("query($m: ID!, $v: ID) { explainVisibility(messageId: $m, viewerId: $v) "
                   "{ visible code reason } }")
    missing = str(max(message.id for message in m.values()) + 1000)
    not_found = await api.post(explain, {"m": missing}, token=other_token)
    assert not_found == {"data": {"explainVisibility": {
        "visible": False, "code": "not_found", "reason": "no such message, or you may not see it"}}}
    public = (await api.ok(explain, {"m": str(m["o1"].id)}, token=rep_token))["explainVisibility"]
    assert public["code"] == "shared_public"
    # a colleague's hidden message: exactly the answer of a missing id
    assert await api.post(explain, {"m": str(m["r1"].id)}, token=other_token) == not_found
    # its owner (for a colleague) and an admin see why
    for token in (rep_token, admin_token):
        hidden = (await api.ok(explain_for, {"m": str(m["r1"].id), "v": str(other_rep.id)},
                               token=token))["explainVisibility"]
        assert hidden == {"visible": False, "code": "hidden_private", "reason": "hidden: PRIVATE account"}
    # a colleague may not ask for someone else, about a hidden or a missing id alike
    for message_id in (str(m["r1"].id), missing):
        refused = await api.error(explain_for, {"m": message_id, "v": str(rep.id)}, token=other_token)
        assert refused["extensions"]["code"] == "FORBIDDEN" and "viewerId" in refused["message"]

    added = await api.ok('mutation { addOrganisationDomain(kind: EXCLUDED, domain: "Globex.COM") }', token=admin_token)
    assert added["addOrganisationDomain"] == ["globex.com"]
    org = await api.ok("{ organisation { name companyDomains excludedDomains disabledProviders } }", token=rep_token)
    assert org["organisation"]["excludedDomains"] == ["globex.com"]
    assert await api.post(explain, {"m": str(m["o1"].id)}, token=rep_token) == not_found
    now_hidden = (await api.ok(explain_for, {"m": str(m["o1"].id), "v": str(rep.id)},
                               token=admin_token))["explainVisibility"]
    assert now_hidden["code"] == "hidden_org_excluded_domain" and "globex.com" in now_hidden["reason"]
    await api.ok("mutation { removeOrganisationDomain(kind: EXCLUDED, domain: \"globex.com\") }", token=admin_token)

    account = str(world["other_account"].id)
    domains = await api.ok("mutation($a: ID!) { addAccountExcludedDomain(accountId: $a, domain: \"globex.com\") }",
                           {"a": account}, token=other_token)
    assert domains["addAccountExcludedDomain"] == ["globex.com"]
    assert await api.post(explain, {"m": str(m["o1"].id)}, token=rep_token) == not_found
    excluded = (await api.ok(explain_for, {"m": str(m["o1"].id), "v": str(rep.id)},
                             token=other_token))["explainVisibility"]
    assert excluded["reason"] == "hidden: counterparty in account-excluded domain globex.com"
    listed = await api.ok(
        "query($a: ID!) { mailAccount(id: $a) { excludedDomains } }", {"a": account}, token=other_token
    )
    assert listed["mailAccount"]["excludedDomains"] == ["globex.com"]
    cleared = await api.ok("mutation($a: ID!) { removeAccountExcludedDomain(accountId: $a, domain: \"globex.com\") }",
                           {"a": account}, token=other_token)
    assert cleared["removeAccountExcludedDomain"] == []
    error = await api.error("mutation($a: ID!) { addAccountExcludedDomain(accountId: $a, domain: \"not a domain\") }",
                            {"a": account}, token=other_token)
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": "domain"}


async def test_share_email_is_refused_unless_custom(api: GraphQLClient, rep_token: str, world: dict) -> None:
    mutation = "mutation($r: ID!) { setShareEmail(recordId: $r, shared: true) }"
    error = await api.error(mutation, {"r": str(world["jane"].id)}, token=rep_token)
    assert error["extensions"]["code"] == "INVALID_INPUT" and "CUSTOM" in error["message"]
    await api.ok("mutation($a: ID!) { setAccountSharing(accountId: $a, permission: PUBLIC) { sharing } }",
                 {"a": str(world["rep_account"].id)}, token=rep_token)
    error = await api.error(mutation, {"r": str(world["jane"].id)}, token=rep_token)
    assert "PUBLIC" in error["message"] and "no effect" in error["message"]


async def test_message_detail_and_threads(api: GraphQLClient, rep_token: str, other_rep: User, world: dict) -> None:
    m = world["m"]
    detail = ("query($id: ID!) { message(id: $id) { subject accountId messageId bodyText bodyHtml "
              "to { name address } cc { address } bcc { address } "
              "attachments { filename contentType size isInline contentId } threadKey inReplyTo } }")
    data = (await api.ok(detail, {"id": str(m["r1"].id)}, token=rep_token))["message"]
    assert data["bodyText"] == "Body of Offer" and data["to"] == [{"name": "", "address": "rep@acme.test"}]
    assert data["accountId"] == str(world["rep_account"].id) and data["messageId"] == m["r1"].message_id
    assert data["attachments"] == [{"filename": "quote.pdf", "contentType": "application/pdf", "size": 1234,
                                    "isInline": False, "contentId": None}]
    other_token = (await issue_token(other_rep, "t"))[1]
    error = await api.error(detail, {"id": str(m["r1"].id)}, token=other_token)
    assert error["extensions"]["code"] == "NOT_FOUND"  # private: as if it did not exist

    threads = await api.ok(
        "query($id: ID!) { contact(id: $id) { threads { key subject messageCount latestDate messages { id } } } }",
        {"id": str(world["jane"].id)},
        token=rep_token,
    )
    by_key = {t["key"]: t for t in threads["contact"]["threads"]}
    assert by_key["<t1>"]["messageCount"] == 2 and by_key["<t1>"]["subject"] == "Offer"
    assert [x["id"] for x in by_key["<t1>"]["messages"]] == [str(m["r1"].id), str(m["r2"].id)]
    # Bounded by `first` (threads and their messages), and limited to one user's mail with sharedBy.
    bounded = await api.ok("query($id: ID!, $by: ID) { contact(id: $id) { threads(first: 1, sharedBy: $by) { key "
                           "messages(first: 1) { id } } } }", {"id": str(world["jane"].id)}, token=rep_token)
    assert bounded["contact"]["threads"] == [{"key": "<1@t>", "messages": [{"id": str(m["o1"].id)}]}]
    mine = await api.ok("query($id: ID!, $by: ID) { contact(id: $id) { threadPage(sharedBy: $by) { items { key } "
                        "nextCursor } } }", {"id": str(world["jane"].id), "by": str(world["rep_account"].user_id)},
                        token=rep_token)
    assert mine["contact"]["threadPage"] == {"items": [{"key": "<t1>"}], "nextCursor": None}


def count_statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SQL statement sent from now on (the list fills as they run)."""
    client = connections.get("default")
    counted: list[str] = []
    for name in ("execute_query", "execute_query_dict"):
        real = getattr(client, name)

        async def counting(query: str, *args: object, _real=real, **kwargs: object):
            counted.append(query)
            return await _real(query, *args, **kwargs)

        monkeypatch.setattr(client, name, counting)
    return counted


async def test_each_sales_inbox_item_shows_its_own_folder(api: GraphQLClient, rep_token: str, world: dict) -> None:
    m = world["m"]
    sent = await Folder.create(account=world["rep_account"], name="Sent", uidvalidity=1)
    await Message.filter(id=m["r2"].id).update(folder_id=sent.id)
    query = ("query($f: InboxFilterInput) { salesInbox(filter: $f, first: 50) { items { id folder } } }")
    shown = {x["id"]: x["folder"] for x in (await api.ok(query, {}, token=rep_token))["salesInbox"]["items"]}
    assert shown == {str(m[k].id): "Sent" if k == "r2" else "INBOX" for k in ("r1", "r2", "r3", "r4")}
    by_filter = (await api.ok(query, {"f": {"folder": "Sent"}}, token=rep_token))["salesInbox"]["items"]  # the ORM path
    assert by_filter == [{"id": str(m["r2"].id), "folder": "Sent"}]


async def test_a_page_of_fifty_costs_a_fixed_number_of_queries(api: GraphQLClient, rep: User, rep_token: str,
                                                               world: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    account = world["rep_account"]
    for uid in range(100, 160):
        await mail(account, uid, sender="jane@globex.com", to="rep@acme.test", minutes=10 + uid)
    query = ("query($n: Int!) { "
             "salesInbox(first: $n) { items { id subject folder owner { email } linkedRecords { id lastName } } } }")
    await api.ok(query, {"n": 1}, token=rep_token)  # the token is now known (cached, last use written)
    counted = count_statements(monkeypatch)
    sizes = {}
    for n in (5, 50):
        counted.clear()
        data = await api.ok(query, {"n": n}, token=rep_token)
        assert len(data["salesInbox"]["items"]) == n
        sizes[n] = len(counted)
    # the viewer's accounts + the page (with its folders' names) + one per relation (owners,
    # links): no N+1.
    assert sizes == {5: 4, 50: 4}, counted


async def test_a_leads_related_list_threads_and_share_flag(api: GraphQLClient, rep_token: str, world: dict) -> None:
    query = """query($id: ID!) { lead(id: $id) { ... on Lead { shareEmail emails { items { id } }
               threads { subject messageCount messages { id } } } } }"""
    data = (await api.ok(query, {"id": str(world["lead"].id)}, token=rep_token))["lead"]
    intro = str(world["m"]["r3"].id)
    assert data == {"shareEmail": False, "emails": {"items": [{"id": intro}]},
                    "threads": [{"subject": "Intro", "messageCount": 1, "messages": [{"id": intro}]}]}


async def test_a_single_message_reads_its_folder_owner_and_records(api: GraphQLClient, rep_token: str,
                                                                   world: dict) -> None:
    query = """query($id: ID!) { message(id: $id) { folder owner { email name } linkedRecords { id kind fullName
               ... on Contact { secondaryEmail } } } }"""
    data = (await api.ok(query, {"id": str(world["m"]["r2"].id)}, token=rep_token))["message"]
    assert data["folder"] == "INBOX" and data["owner"]["email"] == "rep@acme.test"
    assert data["linkedRecords"] == [{"id": str(world["jane"].id), "kind": "CONTACT", "fullName": "Jane Doe",
                                      "secondaryEmail": "jane.doe@gmail.com"}]
    unlinked = (await api.ok(query, {"id": str(world["m"]["r4"].id)}, token=rep_token))["message"]
    assert unlinked["linkedRecords"] == []


async def test_relations_of_threads_and_pages_through_fragments(api: GraphQLClient, rep_token: str,
                                                                world: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    query = """query($id: ID!) { contact(id: $id) {
                 threads { messages { ...Who } }
                 emails { items { ... on Message { folder linkedRecords { id } } ...Who } } } }
               fragment Who on Message { id owner { email } }"""
    await api.ok(query, {"id": str(world["jane"].id)}, token=rep_token)
    counted = count_statements(monkeypatch)
    data = (await api.ok(query, {"id": str(world["jane"].id)}, token=rep_token))["contact"]
    m = world["m"]
    owner_of = {str(m[k].id): e for k, e in (("r1", "rep@acme.test"), ("r2", "rep@acme.test"),
                                            ("o1", "other@acme.test"))}
    threads = [[(x["id"], x["owner"]["email"]) for x in t["messages"]] for t in data["threads"]]
    assert sorted(threads) == sorted([[(str(m["r1"].id), "rep@acme.test"), (str(m["r2"].id), "rep@acme.test")],
                                      [(str(m["o1"].id), "other@acme.test")]])
    items = data["emails"]["items"]
    assert {x["id"]: x["owner"]["email"] for x in items} == owner_of
    assert all(x["folder"] == "INBOX" and x["linkedRecords"] == [{"id": str(world["jane"].id)}] for x in items)
    # record + (thread walk + counts + subjects + the threads' messages + owners) + (page + folders + owners
    # + links): fragments are followed, and the messages of all the threads come in one query.
    assert len(counted) == 10, counted
