"""Amplification: the query cost limit, the body budget of a response, and threads in pages.

The attack found by black-box testing: 30 aliases of a contact's threads with every message's
bodies passed the depth, alias and token limits and returned 95 MB. Now every list that grows
with the mail is paginated with a bounded ``first``, an operation estimated over
``SALESINBOX_MAX_QUERY_COST`` is refused before it runs, and the bodies one response returns
are bounded by ``SALESINBOX_MAX_RESPONSE_BODY_CHARS``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2 as httpx
import pytest
from graphql import parse

from salesinbox.core.crm.records import RecordInput, create_record
from salesinbox.core.db.models import Message, MessageBody, RecordKind, User
from salesinbox.core.settings import Settings
from salesinbox.core.sharing import threads
from salesinbox.core.sharing.views import page_of
from salesinbox.core.sharing.visibility import visible_messages_for_record
from salesinbox.schema.asgi_app import create_app
from salesinbox.schema.cost import BODY_COST, estimate_cost
from salesinbox.schema.graphql_schema import build_schema

from . import test_schema_views
from .conftest import GraphQLClient
from .test_policy import write_account
from .test_schema_views import count_statements, mail

world = test_schema_views.world  # the fixture, for the tests that take `world` (an import would be F811)

ATTACK = "{ " + " ".join(
    f'a{i}: contact(id: "{{id}}") {{ threads {{ messages {{ id bodyText bodyHtml }} }} }}' for i in range(30)
) + " }"


@asynccontextmanager
async def client_of(settings: Settings) -> AsyncIterator[GraphQLClient]:
    """A client of an app running with ``settings``."""
    app = create_app(settings, open_db=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            yield GraphQLClient(http)


def cost(query: str, variables: dict | None = None) -> int | None:
    return estimate_cost(build_schema()._schema, parse(query), None, variables)


# ------------------------------------------------------------------------ the cost limit

async def test_the_thirty_alias_attack_is_refused_before_it_runs(api: GraphQLClient, rep_token: str, world: dict,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    query = ATTACK.replace("{id}", str(world["jane"].id))
    await api.ok("{ me { id } }", token=rep_token)  # the token is now known (cached)
    counted = count_statements(monkeypatch)
    error = await api.error(query, token=rep_token)
    assert error["extensions"] == {"code": "QUERY_TOO_COSTLY"}
    assert str(Settings().max_query_cost) in error["message"] and "SALESINBOX_MAX_QUERY_COST" in error["message"]
    assert str(cost(query)) in error["message"]
    for advice in ("`first`", "aliases", "bodyText"):
        assert advice in error["message"]
    assert counted == []  # refused before any resolver read anything
    # One alias is refused too (20 threads × 50 messages × 2 bodies by default) …
    one = 'query($id: ID!) { contact(id: $id) { threads { messages { id bodyText bodyHtml } } } }'
    assert (await api.error(one, {"id": str(world["jane"].id)}, token=rep_token))["extensions"]["code"] == \
        "QUERY_TOO_COSTLY"
    # … while a thread read with its bodies, a page at a time, passes.
    small = (
        "query($id: ID!) { contact(id: $id) { threads(first: 2) { messages(first: 20) { id bodyText bodyHtml } } } }"
    )
    data = await api.ok(small, {"id": str(world["jane"].id)}, token=rep_token)
    assert {m["bodyText"] for t in data["contact"]["threads"] for m in t["messages"]} >= {"Body of Offer"}


async def test_unauthenticated_is_still_told_so_first(api: GraphQLClient, world: dict) -> None:
    error = await api.error(ATTACK.replace("{id}", str(world["jane"].id)), token="not-a-token")
    assert error["extensions"]["code"] == "UNAUTHENTICATED"


async def test_the_readme_queries_and_a_thread_view_pass_with_the_defaults(api: GraphQLClient, rep_token: str,
                                                                            world: dict) -> None:
    jane = str(world["jane"].id)
    for query in (
        "query { salesInbox(first: 20, filter: {linked: CONTACTS, seen: false}) { items { subject fromAddress "
        "linkedRecords { fullName } } nextCursor } }",
        f'query {{ contact(id: "{jane}") {{ emails(first: 20) {{ items {{ subject owner {{ name }} direction }} }} '
        "threads { subject messageCount } } }",
        "query { providers { key displayName incoming { host port security } } }",
        f'query {{ contact(id: "{jane}") {{ threadPage(first: 1) {{ items {{ subject messagePage(first: 50) {{ '
        "items { id subject fromAddress date bodyText bodyHtml to { address } attachments { filename } } "
        "nextCursor } } } } }",
        "query { salesInbox(first: 100) { items { id subject fromName fromAddress date direction seen flagged "
        "answered snippet hasAttachments size folder owner { name } linkedRecords { id fullName } "
        "to { name address } cc { address } attachments { filename size } } nextCursor } }",
        "{ leads(limit: 1) { items { threadPage(first: 1, sharedBy: null) { items { key } nextCursor } } } }",
        "{ __schema { types { name fields { name args { name type { name ofType { name } } } "
        "type { name ofType { name ofType { name } } } } } } }",
    ):
        await api.ok(query, token=rep_token)


async def test_variables_and_their_defaults_are_costed(api: GraphQLClient, rep_token: str, world: dict) -> None:
    query = "query($id: ID!, $n: Int!) { contact(id: $id) { emails(first: $n) { items { id bodyText bodyHtml } } } }"
    jane = str(world["jane"].id)
    assert (await api.ok(query, {"id": jane, "n": 10}, token=rep_token))["contact"]["emails"]["items"]
    error = await api.error(query, {"id": jane, "n": 100}, token=rep_token)
    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
    defaulted = ("query($id: ID!, $n: Int! = 100) { contact(id: $id) { emails(first: $n) { items { id bodyText "
                 "bodyHtml } } } }")
    assert (await api.error(defaulted, {"id": jane}, token=rep_token))["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert cost(query, {"id": jane, "n": 10}) < cost(query, {"id": jane, "n": 100}) == cost(defaulted, {"id": jane})


def test_the_estimate() -> None:
    nested = '{ contact(id: "1") { threads { messages { id } } } }'
    assert cost(nested) == 1 + 20 * (1 + 50 * (1 + 1))  # defaults of first: 20 threads, 50 messages
    assert cost('{ contact(id: "1") { threads(first: 2) { messages(first: 3) { id bodyText } } } }') == \
        1 + 2 * (1 + 3 * (1 + 1 + BODY_COST))
    # Over the maximum counts as the maximum (the resolver refuses it: INVALID_INPUT is the answer).
    assert cost('{ salesInbox(first: 5000) { items { id } } }') == cost('{ salesInbox(first: 100) { items { id } } }')
    # Fragments, inline or named, cost what they select; skipped fields and introspection nothing.
    assert cost('{ contact(id: "1") { ...F } } fragment F on Contact { threads { messages { id } } }') == cost(nested)
    assert cost('{ contact(id: "1") { ... on Contact { threads { messages { id } } } } }') == cost(nested)
    assert cost('query($s: Boolean!) { me { id name @skip(if: $s) } }', {"s": True}) == 2
    assert cost('query($s: Boolean!) { me { id name @include(if: $s) } }', {"s": True}) == 3
    assert cost("{ __typename __schema { types { name } } }") == 0
    # Lists that are not paginated count 10 items; leads/contacts their `limit`.
    assert cost('{ message(id: "1") { to { address } } }') == 1 + 10 * (1 + 1)
    assert cost("{ leads(limit: 7) { total items { id } } }") == 7 * (1 + 1 + 1 * (1 + 1))
    # Variables that do not coerce: execution reports them, not the estimate.
    assert cost("query($n: Int!) { salesInbox(first: $n) { nextCursor } }", {"n": "many"}) is None


async def test_the_limit_is_a_setting(db: Settings, rep_token: str) -> None:
    assert Settings.from_env({"SALESINBOX_MAX_QUERY_COST": "5000"}).max_query_cost == 5000
    assert Settings.from_env({"SALESINBOX_MAX_RESPONSE_BODY_CHARS": "77"}).max_response_body_chars == 77
    async with client_of(db.with_overrides(max_query_cost=3)) as client:
        assert await client.ok("{ me { id name } }", token=rep_token)
        error = await client.error("{ me { id name email } }", token=rep_token)
    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY" and "about 4 values" in error["message"]


async def test_first_beyond_the_maximum_is_refused(api: GraphQLClient, rep_token: str, world: dict) -> None:
    jane = str(world["jane"].id)
    for selection in ("threads(first: 101) { key }", "threads(first: 0) { key }",
                      "threadPage(first: 101) { nextCursor }",
                      "threads(first: 1) { messages(first: 101) { id } }",
                      "threadPage(first: 1) { items { messagePage(first: 0) { nextCursor } } }",
                      "emails(first: 101) { nextCursor }"):
        error = await api.error(f'{{ contact(id: "{jane}") {{ {selection} }} }}', token=rep_token)
        assert error["extensions"] == {"code": "INVALID_INPUT", "field": "first"}, selection
        assert "between 1 and 100" in error["message"]
    for selection in ('threadPage(after: "garbage!") { nextCursor }',
                      'threads(first: 1) { messagePage(after: "garbage!") { nextCursor } }'):
        error = await api.error(f'{{ contact(id: "{jane}") {{ {selection} }} }}', token=rep_token)
        assert error["extensions"] == {"code": "INVALID_INPUT", "field": "after"}, selection


# ------------------------------------------------------------------------ the body budget

async def test_bodies_beyond_the_budget_are_refused_unread(db: Settings, rep_token: str, world: dict,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    jane, m = str(world["jane"].id), world["m"]
    # jane's three messages: bodies "Body of Offer", "Body of Re: Offer", "Body of Colleague" (47 characters).
    texts = "query($id: ID!) { contact(id: $id) { emails { items { bodyText } } } }"
    both = "query($id: ID!) { contact(id: $id) { emails { items { bodyText bodyHtml } } } }"
    async with client_of(db.with_overrides(max_response_body_chars=50)) as client:
        data = await client.ok(texts, {"id": jane}, token=rep_token)
        assert sorted(i["bodyText"] for i in data["contact"]["emails"]["items"]) == [
            "Body of Colleague", "Body of Offer", "Body of Re: Offer"]
        counted = count_statements(monkeypatch)
        body = await client.post(both, {"id": jane}, token=rep_token)
        assert body["data"] is None and body["errors"]
        assert {e["extensions"]["code"] for e in body["errors"]} == {"RESPONSE_TOO_LARGE"}
        message = body["errors"][0]["message"]
        assert "50 characters" in message and "SALESINBOX_MAX_RESPONSE_BODY_CHARS" in message
        # The lengths of both columns were asked; of the bodies, only the column that fitted was read.
        lengths = [s for s in counted if "message_body" in s and "LENGTH(" in s.upper()]
        bodies = [s for s in counted if "message_body" in s and "LENGTH(" not in s.upper()]
        assert len(lengths) == 2 and len(bodies) <= 1, counted
        # One body larger than the budget, alone, is refused just the same.
        await MessageBody.filter(message_id=m["r1"].id).update(text="x" * 51)
        error = await client.error("query($id: ID!) { message(id: $id) { bodyText } }", {"id": str(m["r1"].id)},
                                   token=rep_token)
        assert error["extensions"]["code"] == "RESPONSE_TOO_LARGE"
        # A message without stored bodies has empty ones, for free.
        await MessageBody.filter(message_id=m["r1"].id).delete()
        empty = await client.ok("query($id: ID!) { message(id: $id) { bodyText bodyHtml } }",
                                {"id": str(m["r1"].id)}, token=rep_token)
        assert empty["message"] == {"bodyText": "", "bodyHtml": ""}


# ------------------------------------------------------------------------ threads in pages

@pytest.fixture
async def conversations(rep: User, other_rep: User) -> dict:
    """A contact with threads of 1 to 6 messages whose dates interleave, a message without a
    thread key, two threads whose newest messages share a date, and a colleague's PRIVATE
    message in one of the threads (which the rep must never see nor count)."""
    account = await write_account(rep, "PRIVATE", "rep@acme.test")
    hidden = await write_account(other_rep, "PRIVATE", "other@acme.test")
    contact = await create_record(
        rep, RecordKind.CONTACT, RecordInput(last_name="Busy", primary_email="busy@client.io")
    )
    plan = {"<a>": [1, 10, 20], "<b>": [2, 3], "<c>": [5, 25], "<d>": [4, 6, 7, 8, 9, 11], "<e>": [20], "<f>": [12]}
    uid = 0
    for key, minutes in plan.items():
        for n, minute in enumerate(minutes):
            uid += 1
            await mail(account, uid, sender="busy@client.io", to="rep@acme.test", minutes=minute,
                       subject=f"{key} #{n}", thread=key)
    lone = await mail(account, 99, sender="busy@client.io", to="rep@acme.test", minutes=15, subject="lone")
    await Message.filter(id=lone.id).update(thread_key=None)
    await mail(hidden, 1, sender="busy@client.io", to="other@acme.test", minutes=30, subject="hidden", thread="<a>")
    return {"contact": contact, "account": account}


async def expected_threads(rep: User, contact_id: int) -> list[tuple[str, list[str]]]:
    """(key, message ids oldest first) of every thread the rep sees, most recently active first."""
    rows = await visible_messages_for_record(rep, contact_id).order_by("links__date", "id")
    groups: dict[str, list[Message]] = {}
    for row in rows:
        groups.setdefault(threads.thread_key(row), []).append(row)
    ordered = sorted(groups.items(), key=lambda kv: (kv[1][-1].date, kv[1][-1].id), reverse=True)
    return [(key, [str(m.id) for m in items]) for key, items in ordered]


THREAD_PAGE = """query($id: ID!, $n: Int!, $a: String, $m: Int!) { contact(id: $id) {
    threadPage(first: $n, after: $a) { nextCursor items { key subject messageCount latestDate
      messagePage(first: $m) { items { id folder owner { email } } nextCursor } } } } }"""
@pytest.mark.parametrize("scan", [1000, 2])  # one read per page, and a walk over many small reads
async def test_paging_threads_and_their_messages_walks_each_exactly_once(
        api: GraphQLClient, rep: User, rep_token: str, conversations: dict, scan: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "_SCAN_MAX", scan)
    contact = str(conversations["contact"].id)
    want = await expected_threads(rep, conversations["contact"].id)
    assert [k for k, _ in want][:3] == ["<c>", "<e>", "<a>"]  # <e> and <a> end at the same minute: by id
    assert len(dict(want)["<a>"]) == 3 and any(k.startswith("message:") for k, _ in want)  # not the hidden one
    seen: list[dict] = []
    cursors: list[str | None] = [None]
    while True:
        page = (await api.ok(THREAD_PAGE, {"id": contact, "n": 2, "a": cursors[-1], "m": 2},
                             token=rep_token))["contact"]["threadPage"]
        assert 1 <= len(page["items"]) <= 2
        seen += page["items"]
        if page["nextCursor"] is None:
            break
        cursors.append(page["nextCursor"])
    assert [t["key"] for t in seen] == [k for k, _ in want]
    for thread, (key, ids) in zip(seen, want, strict=True):
        assert thread["messageCount"] == len(ids)
        assert thread["messagePage"]["items"][0]["owner"] == {"email": "rep@acme.test"}
        assert [m["id"] for m in thread["messagePage"]["items"]] == ids[:2]
        if key.startswith("<"):
            assert thread["subject"] == f"{key} #0"  # the oldest message's
        # All the thread's messages, page by page.
        assert await walk_messages(api, rep_token, contact, key, cursors[seen.index(thread) // 2]) == ids


async def walk_messages(api: GraphQLClient, token: str, contact: str, key: str, threads_after: str | None) -> list[str]:
    """The ids of one thread's messages, through messagePage(first: 2) until nextCursor is null
    (the thread is on the page of threads after ``threads_after``)."""
    query = """query($id: ID!, $a: String, $after: String) { contact(id: $id) { threadPage(first: 2, after: $a) {
        items { key messagePage(first: 2, after: $after) { items { id } nextCursor } } } } }"""
    ids: list[str] = []
    after = None
    while True:
        page = (await api.ok(query, {"id": contact, "a": threads_after, "after": after},
                             token=token))["contact"]["threadPage"]
        thread = next(t for t in page["items"] if t["key"] == key)
        ids += [m["id"] for m in thread["messagePage"]["items"]]
        after = thread["messagePage"]["nextCursor"]
        if after is None:
            return ids


async def test_pages_of_messages_are_right_when_thread_counts_are_stale(rep: User, conversations: dict) -> None:
    """The counts listed with the threads only decide which threads are read together."""
    contact_id = conversations["contact"].id
    want = dict(await expected_threads(rep, contact_id))

    def ref(key: str, count: int) -> threads.ThreadRef:
        lone = int(key.split(":")[1]) if key.startswith("message:") else None
        return threads.ThreadRef(contact_id, None, key, lone, count)

    def expected(key: str) -> tuple[list[str], bool]:
        return want[key][:2], len(want[key]) > 2

    lone_key = next(k for k in want if k.startswith("message:"))
    for refs in ([ref("<d>", 1)],  # all of <d> would not fit the read of one small thread: read alone
                 [ref("<d>", 2), ref("<b>", 2), ref("<c>", 1), ref(lone_key, 1)],  # it fits: cut right
                 [ref("<a>", 3), ref("<b>", 2)]):  # <a> will not fit a first page: read alone
        pages = await threads.thread_messages(rep, refs, first=2)
        got = [([str(m.id) for m in p.items], p.next_cursor is not None) for p in pages]
        assert got == [expected(r.key) for r in refs]
        for r, page in zip(refs, pages, strict=True):
            if page.next_cursor:
                rest = await page_of(visible_messages_for_record(rep, contact_id).filter(thread_key=r.key), 100,
                                     page.next_cursor, date_field="links__date", ascending=True)
                assert [str(m.id) for m in page.items + rest.items] == want[r.key]
