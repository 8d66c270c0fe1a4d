"""Every header of a message, kept as received (core/parsing/header_fields.py) and shown by
``Message.headers``: in order, values unfolded but not decoded, bounded in size."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from salesinbox.core.db.models import Message, MessageBody, User
from salesinbox.core.parsing.header_fields import MAX_HEADER_BLOCK, header_block_text, header_fields
from salesinbox.core.parsing.message_parser import parse_message
from salesinbox.core.parsing.parse_warnings import Warnings
from salesinbox.core.sync.engine import SyncServices, sync_account

from .conftest import GraphQLClient
from .test_sync import connect

if TYPE_CHECKING:
    from .servers.fixtures import MailAccount as TestMailbox

RAW = (b"Received: from mx.globex.example\r\n\tby mx.acme.test; Tue, 5 Mar 2024 09:00:00 +0100\r\n"
       b"From: =?utf-8?q?J=C3=B6rg?= <jorg@globex.example>\r\nTo: rep@acme.test\r\n"
       b"X-Mailer: Acme \xc3\x9cbermail 2.0\r\nSubject: Offer\r\nDate: Tue, 5 Mar 2024 09:00:00 +0100\r\n"
       b"Message-ID: <offer@globex.example>\r\n\r\nFrom: not a header, the body\r\n")
EXPECTED = [
    ("Received", "from mx.globex.example\tby mx.acme.test; Tue, 5 Mar 2024 09:00:00 +0100"),
    ("From", "=?utf-8?q?J=C3=B6rg?= <jorg@globex.example>"),  # as sent: not decoded
    ("To", "rep@acme.test"),
    ("X-Mailer", "Acme Übermail 2.0"),  # RFC 6532 UTF-8
    ("Subject", "Offer"),
    ("Date", "Tue, 5 Mar 2024 09:00:00 +0100"),
    ("Message-ID", "<offer@globex.example>"),
]


def test_the_header_block_is_kept_and_read_back_in_order() -> None:
    parsed = parse_message(RAW)
    assert header_fields(parsed.header_block) == EXPECTED
    assert "the body" not in parsed.header_block
    lf_only = parse_message(RAW.replace(b"\r\n", b"\n"))
    assert header_fields(lf_only.header_block) == EXPECTED


def test_a_huge_header_block_is_cut_at_a_line_with_a_warning() -> None:
    line = b"X-Padding: " + b"x" * 80 + b"\r\n"
    raw = b"Subject: big\r\n" + line * (2 * MAX_HEADER_BLOCK // len(line)) + b"\r\nbody\r\n"
    warn = Warnings()
    block = header_block_text(raw, warn)
    assert len(block.encode()) <= MAX_HEADER_BLOCK and block.endswith("x" * 80)
    assert any("64 KiB" in w for w in warn.as_tuple())
    assert any("64 KiB" in w for w in parse_message(raw).warnings)
    nul = header_block_text(b"Subject: a\x00b\r\n\r\n", Warnings())
    assert "\x00" not in nul  # storable on PostgreSQL


def test_lines_that_are_no_field_are_skipped() -> None:
    assert header_fields("From someone@example.com Tue Mar  5 2024\nSubject: x\nbroken line\nTo: y") == [
        ("Subject", "x"), ("To", "y")]


@pytest.mark.dovecot
@pytest.mark.db
async def test_headers_through_a_real_sync_and_the_api(
    rep: User, mail_account: TestMailbox, services: SyncServices, api: GraphQLClient, rep_token: str,
) -> None:
    box = mail_account
    box.dovecot.append(box.user, "INBOX", RAW)
    account = await connect(rep, box, services)
    await sync_account(account.id, services)
    message = await Message.get(account_id=account.id, message_id="<offer@globex.example>")
    query = "query($id: ID!) { message(id: $id) { headers { name value } } }"
    shown = (await api.ok(query, {"id": str(message.id)}, token=rep_token))["message"]["headers"]
    assert [(h["name"], h["value"]) for h in shown] == EXPECTED
    await MessageBody.filter(message_id=message.id).update(headers="")  # mail stored before 0013
    assert (await api.ok(query, {"id": str(message.id)}, token=rep_token))["message"]["headers"] == []
