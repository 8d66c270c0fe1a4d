"""``GET /messages/{id}/original`` (README, "Downloading the original message") against the real
Dovecot: the RFC 5322 bytes as the server holds them, through the sharing policy (a hidden
message answers exactly as an unknown id), typed errors when the server no longer has it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from starlette.applications import Starlette

from salesinbox.core.crm.api_tokens import issue_token
from salesinbox.core.crm.records import RecordInput, create_record
from salesinbox.core.db.models import MailAccount, Message, RecordKind, SharingPermission, User
from salesinbox.core.sync.engine import sync_account

from .conftest import GraphQLClient
from .test_schema_sync import connected

if TYPE_CHECKING:
    import httpx2 as httpx

    from .servers.fixtures import MailAccount as TestMailbox

pytestmark = pytest.mark.dovecot

# Written by hand, not by a library: obsolete and odd syntax a parser would not give back as
# it was (folded header, "Subject :", 8-bit UTF-8 body, CRLF line ends, no final newline).
RAW = (
    b"From: Jane Doe <jane@globex.example>\r\n"
    b"To: rex@acme.test,\r\n"
    b"   bob@globex.example\r\n"
    b"Subject : =?utf-8?q?Pr=C3=BCfung?= of the quote\r\n"
    b"Date: Tue, 3 Mar 2026 09:15:00 +0100\r\n"
    b"Message-ID: <orig-1@globex.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Gr\xc3\xbc\xc3\x9fe,\r\nthe quote is fine.\r\n-- \r\nJane"
)


async def original(http: httpx.AsyncClient, message_id: object, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await http.get(f"/messages/{message_id}/original", headers=headers)


async def synced(api: GraphQLClient, app: Starlette, token: str, box: TestMailbox) -> Message:
    box.dovecot.append(box.user, "INBOX", RAW)
    account_id = await connected(api, token, box)
    await sync_account(int(account_id), app.state.services.sync_services())
    return await Message.get(account_id=int(account_id))  # by account: what the parser reads may vary


def server_flags(box: TestMailbox, uid: int) -> set[bytes]:
    with box.dovecot.imap_client(box.user) as client:
        client.select_folder("INBOX", readonly=True)
        return {bytes(f) for data in client.fetch([uid], [b"FLAGS"]).values() for f in data[b"FLAGS"]}


async def test_the_owner_downloads_the_bytes_as_received(api: GraphQLClient, app: Starlette, rep_token: str,
                                                         mail_account: TestMailbox) -> None:
    message = await synced(api, app, rep_token, mail_account)
    response = await original(api.http, message.id, rep_token)
    assert response.status_code == 200
    assert response.content == RAW
    assert response.headers["content-type"] == "message/rfc822"
    assert response.headers["content-disposition"] == f'attachment; filename="message-{message.id}.eml"'
    assert response.headers["cache-control"] == "private, no-store"
    assert b"\\Seen" not in server_flags(mail_account, message.uid)  # BODY.PEEK: still unread


async def test_a_hidden_message_answers_as_an_unknown_id(
    api: GraphQLClient, app: Starlette, rep: User, rep_token: str, admin_token: str, other_rep: User,
    mail_account: TestMailbox,
) -> None:
    message = await synced(api, app, rep_token, mail_account)
    other_token = (await issue_token(other_rep, "t"))[1]
    unknown = await original(api.http, message.id + 1000, other_token)
    assert unknown.status_code == 404
    assert unknown.json() == {"errors": [{"message": "No such message, or you may not see it.",
                                          "extensions": {"code": "NOT_FOUND"}}]}
    for token in (other_token, admin_token):  # PRIVATE: not even an admin reads it
        hidden = await original(api.http, message.id, token)
        assert (hidden.status_code, hidden.content, hidden.headers["content-type"]) == (
            unknown.status_code, unknown.content, unknown.headers["content-type"])
    # Shared (PUBLIC, linked to a contact), the colleague may read it, and download it.
    await MailAccount.filter(id=message.account_id).update(sharing=SharingPermission.PUBLIC)
    await create_record(rep, RecordKind.CONTACT, RecordInput(last_name="Doe", primary_email="jane@globex.example"))
    shared = await original(api.http, message.id, other_token)
    assert (shared.status_code, shared.content) == (200, RAW)


async def test_refusals_are_typed(api: GraphQLClient, app: Starlette, rep_token: str,
                                  mail_account: TestMailbox) -> None:
    message = await synced(api, app, rep_token, mail_account)
    for token in (None, "not-a-token"):
        refused = await original(api.http, message.id, token)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert b"Jane" not in refused.content
    for bad in ("abc", "99999999999999999999"):
        invalid = await original(api.http, bad, rep_token)
        assert invalid.status_code == 400 and invalid.json()["errors"][0]["extensions"]["code"] == "INVALID_INPUT"
    # The folder renumbered since the last sync: the UID may name another message now.
    await Message.filter(id=message.id).update(uidvalidity=message.uidvalidity + 1)
    conflict = await original(api.http, message.id, rep_token)
    assert conflict.status_code == 409 and conflict.json()["errors"][0]["extensions"]["code"] == "CONFLICT"
    await Message.filter(id=message.id).update(uidvalidity=message.uidvalidity)
    # Deleted on the server since the last sync.
    with mail_account.dovecot.imap_client(mail_account.user) as client:
        client.select_folder("INBOX")
        client.delete_messages([message.uid])
        client.expunge()
    gone = await original(api.http, message.id, rep_token)
    assert gone.status_code == 410
    error = gone.json()["errors"][0]
    assert error["extensions"]["code"] == "MESSAGE_NOT_ON_SERVER" and "no longer has this message" in error["message"]
    # The mail server unreachable: said so, with the account's server named, not a 500.
    await MailAccount.filter(id=message.account_id).update(imap_port=1)
    down = await original(api.http, message.id, rep_token)
    assert down.status_code == 502 and down.json()["errors"][0]["extensions"]["code"] == "CONNECTION_FAILED"
