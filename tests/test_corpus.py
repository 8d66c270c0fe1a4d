"""The adversarial corpus (tests/corpus/): one hand-written message per RFC corner, with its
meaning written by hand in tests/corpus/expected.toml. Each message is read twice: by
``parse_message`` directly, and through Dovecot by a real sync, checking what the store keeps
(docs/records-and-links.md, docs/sync.md#what-is-stored)."""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from salesinbox.core.crm.records import RecordInput, create_record
from salesinbox.core.db.models import Attachment, DateSource, Message, MessageAddress, MessageLink, RecordKind, User
from salesinbox.core.db.orm_values import column_values
from salesinbox.core.parsing.message_parser import Address, ParsedMessage, parse_message
from salesinbox.core.sync.engine import SyncServices, sync_account

from .test_sync import connect

if TYPE_CHECKING:
    from .servers.fixtures import MailAccount as TestMailbox

CORPUS = Path(__file__).parent / "corpus"
TABLE: dict[str, dict[str, Any]] = tomllib.loads((CORPUS / "expected.toml").read_text("utf-8"))
DEFAULTS = TABLE.pop("defaults")
NAMES = sorted(p.stem for p in CORPUS.glob("*.eml"))
APPENDED_AT = datetime(2020, 5, 17, 12, 0, tzinfo=UTC)  # the INTERNALDATE of every message
INTERNALDATE_WARNING = "no readable Date header: the date is the server's INTERNALDATE"  # docs/sync.md


def expected(name: str, key: str) -> Any:
    return TABLE[name].get(key, DEFAULTS.get(key))


def raw(name: str) -> bytes:
    return (CORPUS / f"{name}.eml").read_bytes()


def as_imap(data: bytes) -> bytes:
    """The message as IMAP returns it: every line end CRLF (RFC 3501 §4.3)."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def collapsed(text: str) -> str:
    return " ".join(text.split())


def pairs(addresses: tuple[Address, ...]) -> list[list[str]]:
    return [[a.name, a.address] for a in addresses]


def expected_date(name: str) -> datetime | None:
    value = expected(name, "date")
    return None if value == "none" else datetime.fromisoformat(value)


def test_the_corpus_is_complete() -> None:
    """Every message has its expected values and every entry its message; 60 at least."""
    assert sorted(TABLE) == NAMES
    assert len(NAMES) >= 60
    for name in NAMES:
        assert raw(name).strip(), name


@pytest.mark.parametrize("name", NAMES)
def test_parsed_as_the_rfcs_say(name: str) -> None:
    data = raw(name)
    parsed = parse_message(data)
    spec = TABLE[name]
    assert parsed.size == len(data)
    for key in ("from", "to", "cc", "bcc", "reply_to"):
        if (want := expected(name, key)) is not None:
            assert pairs(getattr(parsed, "from_" if key == "from" else key)) == want, key
    if "sender" in spec:
        assert ([parsed.sender.name, parsed.sender.address] if parsed.sender else []) == spec["sender"]
    assert parsed.date == expected_date(name)
    for key in ("subject", "message_id", "in_reply_to"):
        if key in spec:
            assert getattr(parsed, key) == spec[key], key
    if "references" in spec:
        assert list(parsed.references) == spec["references"]
    if "text" in spec:
        assert collapsed(parsed.text) == spec["text"]
    if "html_contains" in spec:
        assert spec["html_contains"] in parsed.html
    if "attachments" in spec:
        assert attachment_rows(parsed) == [
            (a["filename"], a["type"], a["size"], a["inline"]) for a in spec["attachments"]]
        for found, want in zip(parsed.attachments, spec["attachments"], strict=True):
            if "content_id" in want:
                assert found.content_id == want["content_id"]
    if "has_attachments" in spec:
        assert parsed.has_attachments is spec["has_attachments"]
    if spec.get("check_warnings", True):
        assert sorted(parsed.warnings) == sorted(expected(name, "warnings"))


def attachment_rows(parsed: ParsedMessage) -> list[tuple[str, str, int, bool]]:
    return [(a.filename, a.content_type, a.size, a.is_inline) for a in parsed.attachments]


# Records whose addresses the corpus writes in other forms: each must get its messages linked.
LINKED = {
    "john.doe@example.com": {"addr-quoted-local-dot-atom", "addr-case-is-folded"},
    '"Sales Team"@Example.com': {"addr-quoted-local-with-space"},
    "ops@[192.0.2.10]": {"addr-domain-literal-ipv4"},
    "jane@y.test": {"addr-from-list-with-sender"},  # the second author of a From list
    "c@public.example": {"addr-rfc5322-a5-white-space-and-comments"},
    "dana@example.com": {"addr-comment-is-not-a-name", "broken-line-without-colon-mid-headers"},
}


@pytest.mark.dovecot
async def test_synced_through_dovecot_and_stored_as_the_rfcs_say(
    rep: User, mail_account: TestMailbox, services: SyncServices
) -> None:
    box = mail_account
    records = {address: await create_record(rep, RecordKind.CONTACT, RecordInput(
        last_name=f"Record {n}", primary_email=address)) for n, address in enumerate(LINKED)}
    uids = box.dovecot.append_many(box.user, "INBOX", [raw(n) for n in NAMES], date=APPENDED_AT)
    account = await connect(rep, box, services)
    await sync_account(account.id, services)

    stored = {m.uid: m for m in await Message.filter(account_id=account.id, folder__name="INBOX")}
    assert sorted(stored) == sorted(uids)
    for name, uid in zip(NAMES, uids, strict=True):
        message, spec = stored[uid], TABLE[name]
        authors = expected(name, "from")
        assert message.from_address == (authors[0][1] if authors else ""), name
        assert message.date == (expected_date(name) or APPENDED_AT), name
        assert message.size == len(as_imap(raw(name))), name
        for key in ("subject", "message_id"):
            if key in spec:
                assert getattr(message, key) == spec[key], (name, key)
        rows = await MessageAddress.filter(message_id=message.id).order_by("id").values_list("role", "address")
        want = [(role, a) for role, key in (("FROM", "from"), ("TO", "to"), ("CC", "cc"), ("BCC", "bcc"),
                                            ("REPLY_TO", "reply_to")) for _, a in expected(name, key)]
        want += [("SENDER", spec["sender"][1])] if spec.get("sender") else []
        assert sorted((str(r), a) for r, a in rows) == sorted(want), name
        if "attachments" in spec:
            sizes = await Attachment.filter(message_id=message.id).order_by("id").values_list("filename", "size")
            assert list(sizes) == [(a["filename"], a.get("size_imap", a["size"])) for a in spec["attachments"]], name
        if "has_attachments" in spec:
            assert message.has_attachments is spec["has_attachments"], name
        assert message.date_source == (DateSource.HEADER if expected_date(name) else DateSource.INTERNALDATE)
        if spec.get("check_warnings", True):  # the parser's, and the store's on a date fallback
            fallback = [] if expected_date(name) else [INTERNALDATE_WARNING]
            assert sorted(message.parse_warnings) == sorted(expected(name, "warnings") + fallback), name

    by_uid = dict(zip(uids, NAMES, strict=True))
    for address, names in LINKED.items():
        linked = await column_values(MessageLink.filter(record_id=records[address].id), "message__uid")
        assert {by_uid[uid] for uid in linked} == names, address
