"""The sync's FETCH answers read by core/sync/fetch_response.py: the same values as
``IMAPClient.fetch``, from Dovecot and from answers of other shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from imapclient.response_parser import parse_fetch_response

from salesinbox.core.sync import fetch_response
from salesinbox.core.sync.fetch_response import _read_fast, fetch_bodies
from tests.servers.dovecot import DovecotServer, MailUser
from tests.servers.messages import build_message

BODY = b"Subject: hi\r\n\r\nHello\r\n"


def _imapclient(data: list[Any]) -> dict[int, dict[bytes, Any]]:
    """What IMAPClient.fetch makes of ``data``, without the SEQ entries."""
    parsed = parse_fetch_response(data, True, True)
    return {uid: {k: v for k, v in fields.items() if k != b"SEQ"} for uid, fields in parsed.items()}


USUAL = [
    [(b'1 (UID 7 MODSEQ (12) FLAGS (\\Seen $Forwarded) INTERNALDATE "01-Mar-2026 12:30:00 +0000" '
      b"BODY[] {%d}" % len(BODY), BODY), b")"],
    [(b"2 (UID 0 FLAGS () BODY[] {%d}" % len(BODY), BODY), b")",
     (b'3 (INTERNALDATE "01-Mar-2026 12:30:00 -0700" UID 9 FLAGS (\\Answered) BODY[] {0}', b""), b")"],
]
OTHER = [
    [b"4 (FLAGS (\\Seen))"],  # unsolicited, no body
    [b"1 (UID 7 BODY[] NIL)"],  # no literal
    [(b"1 (UID 7 BODY[] {%d}" % len(BODY), BODY), b" FLAGS (\\Seen))"],  # items after the body
    [(b"1 (UID 7 FLAGS (\\Seen 123) BODY[] {%d}" % len(BODY), BODY), b")"],  # imapclient: an int
    [(b"1 (UID 7 FLAGS (NIL) BODY[] {%d}" % len(BODY), BODY), b")"],  # imapclient: None
    [(b"1 (UID 07 BODY[] {%d}" % len(BODY), BODY), b")"],
    [(b"1 (UID 7 BODY[] {%d}" % (len(BODY) + 1), BODY), b")"],  # literal of another length
    [(b'1 (UID 7 INTERNALDATE "01-Mar-2026 \\"12" BODY[] {%d}' % len(BODY), BODY), b")"],
]


@pytest.mark.parametrize("data", USUAL)
def test_usual_answers_read_as_imapclient_reads_them(data: list[Any]) -> None:
    assert _read_fast(data, True) == _imapclient(data)
    assert _read_fast(data, False) == {
        uid: {k: v for k, v in fields.items() if k != b"SEQ"}
        for uid, fields in parse_fetch_response(data, False, True).items()}


@pytest.mark.parametrize("data", OTHER)
def test_other_answers_are_left_to_imapclient(data: list[Any]) -> None:
    assert _read_fast(data, True) is None


@pytest.mark.dovecot
def test_fetch_bodies_equals_imapclient_fetch_from_dovecot(
    dovecot: DovecotServer, mail_user: MailUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    raws = [build_message(subject=f"Offer {i}", text="x" * i) for i in range(3)]
    when = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    uids = [dovecot.append(mail_user, "INBOX", raw, flags=flags, date=when)
            for raw, flags in zip(raws, [(b"\\Seen",), (), (b"\\Flagged", b"$Label1")], strict=True)]
    items = [b"BODY.PEEK[]", b"FLAGS", b"INTERNALDATE", b"MODSEQ"]
    fast: list[Any] = []

    def noting_read_fast(*args: Any) -> Any:
        fast.append(_read_fast(*args))
        return fast[-1]

    monkeypatch.setattr(fetch_response, "_read_fast", noting_read_fast)
    with dovecot.imap_client(mail_user) as client:
        client.select_folder("INBOX", readonly=True)
        ours = fetch_bodies(client, [*uids, max(uids) + 5], items)
        theirs = client.fetch(uids, items)
    assert fast and fast[0] is not None  # Dovecot's answer took the fast path
    assert ours == {uid: {k: v for k, v in fields.items() if k != b"SEQ"} for uid, fields in theirs.items()}
    assert [ours[uid][b"BODY[]"] for uid in uids] == raws
