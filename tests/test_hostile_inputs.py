"""Hostile input gets a typed error, never INTERNAL_ERROR (one case per bug found by hand).

IDs that ``str.isdigit`` accepts but ``int`` does not, keys beyond the database's integer
range, cursors holding such numbers, NUL and lone surrogates in any string, a folder filter
longer than the column, a huge search pattern, CSV rows shorter than the header or with huge
cells, and CR/LF in an attachment's filename or content type. Every case runs on SQLite and on
PostgreSQL (the ``db`` marker).
"""

from __future__ import annotations

import base64
import email
import json
from typing import TYPE_CHECKING

import pytest
from starlette.applications import Starlette

from salesinbox.core.db.models import CrmRecord, FromAddress, Message, User
from salesinbox.core.sharing import views
from salesinbox.core.sync.engine import sync_account

from .conftest import GraphQLClient
from .servers.messages import build_message
from .test_policy import write_account
from .test_schema_sync import connected

if TYPE_CHECKING:
    from .servers.fixtures import MailAccount as TestMailbox

BEYOND_INT = str(2**31)  # the first key a PostgreSQL ``int`` column cannot hold
BEYOND_BIGINT = str(2**63)


async def post(api: GraphQLClient, query: str, variables: dict, token: str) -> dict:
    """POST as JSON with ``\\uXXXX`` escapes: the only way to send a lone surrogate."""
    response = await api.http.post(
        "/graphql", content=json.dumps({"query": query, "variables": variables}),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    return response.json()


def cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


# (name, operation, variables, expected extensions)
CASES = [
    # IDs: "²" is a digit to str.isdigit() but not to int().
    ("superscript id", "query($id: ID!) { user(id: $id) { id } }", {"id": "²"},
     {"code": "INVALID_INPUT", "field": "id"}),
    ("arabic-indic digits id", "query($id: ID!) { lead(id: $id) { id } }", {"id": "١٢"},
     {"code": "INVALID_INPUT", "field": "id"}),
    # IDs beyond the int columns of PostgreSQL.
    ("contact id beyond int", "query($id: ID!) { contact(id: $id) { id } }", {"id": BEYOND_INT},
     {"code": "INVALID_INPUT", "field": "id"}),
    ("user id beyond int", "query($id: ID!) { user(id: $id) { id } }", {"id": BEYOND_INT},
     {"code": "INVALID_INPUT", "field": "id"}),
    ("token id beyond int", "mutation($id: ID!) { revokeToken(id: $id) { id } }", {"id": BEYOND_INT},
     {"code": "INVALID_INPUT", "field": "id"}),
    ("owner id beyond int", "query($o: ID) { leads(ownerId: $o) { total } }", {"o": BEYOND_INT},
     {"code": "INVALID_INPUT", "field": "ownerId"}),
    ("record input owner beyond int",
     "mutation { createLead(input: {lastName: \"Doe\", ownerId: \"2147483648\"}) { id } }",
     {}, {"code": "INVALID_INPUT", "field": "ownerId"}),
    # Message keys are 64-bit: the largest one is merely absent, one more is invalid.
    ("largest message id", "query($id: ID!) { message(id: $id) { id } }", {"id": str(2**63 - 1)},
     {"code": "NOT_FOUND"}),
    ("message id beyond bigint", "query($id: ID!) { message(id: $id) { id } }", {"id": BEYOND_BIGINT},
     {"code": "INVALID_INPUT", "field": "id"}),
    # Cursors holding such numbers, or dates the database cannot compare.
    ("cursor key beyond bigint", "query($a: String) { salesInbox(after: $a) { nextCursor } }",
     {"a": cursor("2024-01-01T00:00:00+00:00|" + BEYOND_BIGINT)}, {"code": "INVALID_INPUT", "field": "after"}),
    ("cursor key superscript", "query($a: String) { salesInbox(after: $a) { nextCursor } }",
     {"a": cursor("2024-01-01T00:00:00+00:00|²")}, {"code": "INVALID_INPUT", "field": "after"}),
    ("cursor date without zone", "query($a: String) { salesInbox(after: $a) { nextCursor } }",
     {"a": cursor("2024-01-01T00:00:00|5")}, {"code": "INVALID_INPUT", "field": "after"}),
    ("cursor before year one in UTC", "query($a: String) { salesInbox(after: $a) { nextCursor } }",
     {"a": cursor("0001-01-01T00:00:00+14:00|5")}, {"code": "INVALID_INPUT", "field": "after"}),
    ("cursor after year 9999 in UTC", "query($a: String) { salesInbox(after: $a) { nextCursor } }",
     {"a": cursor("9999-12-31T23:59:59-14:00|5")}, {"code": "INVALID_INPUT", "field": "after"}),
    # NUL: PostgreSQL text cannot hold it; FTS5 reads it as the end of the query.
    ("NUL in a record", "mutation($i: RecordInput!) { createLead(input: $i) { id } }",
     {"i": {"lastName": "Do\x00e"}}, {"code": "INVALID_INPUT", "field": "lastName"}),
    ("NUL in a list of records", "mutation($r: [RecordInput!]) { importContacts(rows: $r) { createdCount } }",
     {"r": [{"lastName": "Ok"}, {"lastName": "Doe", "company": "\x00"}]},
     {"code": "INVALID_INPUT", "field": "company"}),
    ("NUL in a literal", "mutation { createLead(input: {lastName: \"Do\\u0000e\"}) { id } }", {},
     {"code": "INVALID_INPUT", "field": "lastName"}),
    ("NUL in an inbox search", "query($f: InboxFilterInput) { salesInbox(filter: $f) { nextCursor } }",
     {"f": {"search": "abc\x00def"}}, {"code": "INVALID_INPUT", "field": "search"}),
    ("NUL in a record search", "query($s: String) { leads(search: $s) { total } }", {"s": "\x00"},
     {"code": "INVALID_INPUT", "field": "search"}),
    ("NUL in a user name", "mutation($n: String!) { issueToken(name: $n) { token } }", {"n": "a\x00"},
     {"code": "INVALID_INPUT", "field": "name"}),
    # Lone surrogates: no database can encode them.
    ("surrogate in a record", "mutation($i: RecordInput!) { createContact(input: $i) { id } }",
     {"i": {"lastName": "Doe\ud800"}}, {"code": "INVALID_INPUT", "field": "lastName"}),
    ("surrogate in a search", "query($s: String) { contacts(search: $s) { total } }", {"s": "\udfff"},
     {"code": "INVALID_INPUT", "field": "search"}),
    ("surrogate in an inbox folder", "query($f: InboxFilterInput) { salesInbox(filter: $f) { nextCursor } }",
     {"f": {"folder": "INBOX\ud83d"}}, {"code": "INVALID_INPUT", "field": "folder"}),
    ("surrogate in a new user", "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
     {"i": {"email": "new@acme.test", "name": "\ud800"}}, {"code": "INVALID_INPUT", "field": "name"}),
    ("surrogate in a domain", "mutation($d: String!) { addOrganisationDomain(kind: COMPANY, domain: $d) }",
     {"d": "acme\ud800.test"}, {"code": "INVALID_INPUT", "field": "domain"}),
    ("surrogate in a provider key", "query($p: String!) { provider(key: $p) { key } }", {"p": "\ud800"},
     {"code": "INVALID_INPUT", "field": "key"}),
    # Longer than the column, or than SQLite's LIKE pattern limit (50,000 bytes).
    ("folder longer than the column", "query($f: InboxFilterInput) { salesInbox(filter: $f) { nextCursor } }",
     {"f": {"folder": "x" * 501}}, {"code": "INVALID_INPUT", "field": "folder"}),
    ("1 MB record search", "query($s: String) { leads(search: $s) { total } }", {"s": "x" * 1_000_000},
     {"code": "INVALID_INPUT", "field": "search"}),
    # Found by tests/test_schema_fuzz.py: graphql-core's variable errors wrap GraphQL errors.
    ("required variable left out", "query($n: Int!) { leads(limit: $n) { total } }", {},
     {"code": "GRAPHQL_VALIDATION_FAILED"}),
    ("non-null variable null", "query($n: Int!) { leads(limit: $n) { total } }", {"n": None},
     {"code": "GRAPHQL_VALIDATION_FAILED"}),
    # CSV import.
    ("CSV row shorter than the header, no last name",
     "mutation($c: String) { importLeads(csv: $c) { createdCount } }",
     {"c": "email,last_name\nann@x.com,Doe\nbob@x.com\n"}, {"code": "INVALID_INPUT", "field": "rows"}),
    ("CSV cell over the csv module's limit", "mutation($c: String) { importLeads(csv: $c) { createdCount } }",
     {"c": "last_name,company\nDoe," + "x" * 131_073 + "\n"}, {"code": "INVALID_INPUT", "field": "csv"}),
]


@pytest.mark.parametrize(("operation", "variables", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_hostile_input_is_a_typed_error(api: GraphQLClient, admin_token: str, operation: str,
                                              variables: dict, expected: dict) -> None:
    body = await post(api, operation, variables, admin_token)
    assert len(body.get("errors", ())) == 1, body
    assert body["errors"][0]["extensions"] == expected, body
    assert await CrmRecord.all().count() == 0  # nothing half-saved


async def test_short_csv_rows_are_padded(api: GraphQLClient, rep: User, rep_token: str) -> None:
    """Trailing optional cells may be left out, as spreadsheets do; extra filled cells may not."""
    data = await api.ok("mutation($c: String) { importLeads(csv: $c) { createdCount created { lastName company } } }",
                        {"c": "last_name,company,email\nDoe,Globex\nRoe\n"}, token=rep_token)
    assert data["importLeads"]["created"] == [
        {"lastName": "Doe", "company": "Globex"}, {"lastName": "Roe", "company": ""}]
    error = await api.error("mutation($c: String) { importLeads(csv: $c) { createdCount } }",
                            {"c": "last_name\nDoe,,\nRoe,Globex\n"}, token=rep_token)
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": "csv"}, error
    assert "line 3" in error["message"].lower(), error


@pytest.mark.parametrize(("filename", "content_type"), [
    ("report.pdf\r\nBcc: everyone@rival.example", "application/pdf"),
    ("report\n.pdf", "application/pdf"),
    ("report.pdf", "application/pdf\r\nBcc: everyone@rival.example"),
    ("report.pdf", "application pdf"),
    ("report.pdf", "pdf"),
], ids=["CRLF in filename", "LF in filename", "CRLF in content type", "space in content type", "no subtype"])
async def test_attachment_headers_cannot_be_broken(api: GraphQLClient, rep: User, rep_token: str,
                                                   filename: str, content_type: str) -> None:
    """Checked before anything is looked up or sent: the rep's account is never contacted."""
    account = await write_account(rep, "PRIVATE", rep.email)
    await FromAddress.create(account=account, address=rep.email, is_default=True)
    attachment = {"filename": filename, "contentType": content_type, "contentBase64": "aGk="}
    for operation, variables in [
        ("mutation($i: EmailInput!) { sendEmail(input: $i) { warning } }",
         {"i": {"to": ["bob@customer.example"], "text": "Hi", "attachments": [attachment]}}),
        ("mutation($i: EmailInput!) { replyToEmail(messageId: \"1\", input: $i) { warning } }",
         {"i": {"text": "Hi", "attachments": [attachment]}}),
    ]:
        body = await post(api, operation, variables, rep_token)
        refusal = {"code": "INVALID_INPUT", "field": "attachments"}
        assert [e["extensions"] for e in body.get("errors", ())] == [refusal], body
    assert await Message.all().count() == 0


@pytest.mark.dovecot
async def test_reply_subject_cannot_inject_headers(api: GraphQLClient, app: Starlette, rep_token: str,
                                                  mail_account: TestMailbox) -> None:
    """Found by tests/test_schema_fuzz.py: a reply's subject went into the header unfolded."""
    box = mail_account
    box.dovecot.append(box.user, "INBOX", build_message(from_="jane@globex.example", to=box.address,
                                                        subject="Question", message_id="<q@globex.example>"))
    await sync_account(int(await connected(api, rep_token, box)), app.state.services.sync_services())
    original = await Message.get(message_id="<q@globex.example>")
    sent = await api.ok("mutation($m: ID!, $i: EmailInput!) { "
                        "replyToEmail(messageId: $m, input: $i) { message { subject } } }",
                        {"m": str(original.id), "i": {"subject": "Offer\r\nBcc: spy@rival.example", "text": "Hi"}},
                        token=rep_token)
    assert sent["replyToEmail"]["message"]["subject"] == "Re: Offer Bcc: spy@rival.example"
    wire = box.smtp.wait_for_messages(1)[0]
    assert "spy@rival.example" not in wire.rcpt_tos and email.message_from_bytes(wire.data)["Bcc"] is None


async def test_operation_name_that_cannot_be_encoded(api: GraphQLClient, admin_token: str) -> None:
    """strawberry repeats an unknown operation name in a plain-text 400: a lone surrogate was a 500."""
    response = await api.http.post(
        "/graphql", content=json.dumps({"query": "query A { me { id } }", "operationName": "\ud800"}),
        headers={"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert [e["extensions"] for e in response.json()["errors"]] == [{"code": "INVALID_INPUT", "field": "operationName"}]


@pytest.mark.parametrize("search", ["abc\x00def", "\x00\x00\x00", '"ab"c', 'a"b'])
async def test_core_search_survives_nul_and_quotes(rep: User, search: str) -> None:
    """Below the API's guard: FTS5 (SQLite) read NUL as the end of its query, PostgreSQL refuses it."""
    page = await views.inbox_page(rep, views.InboxFilter(search=search))
    assert page.items == []
