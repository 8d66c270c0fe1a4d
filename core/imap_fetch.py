"""Reading a folder over IMAP: select, list UIDs, fetch and parse messages, read flag changes.

Blocking functions on a logged-in ``IMAPClient`` (see :func:`salesinbox.core.imap.open_imap`),
run by the sync engine in a worker thread. They return plain values and know nothing of the
database. Parsing happens here, in the same thread as the fetch, so the event loop never
does CPU-heavy work.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

from imapclient import IMAPClient

from .parsing import parse_message
from .store import FetchedMessage

# UID lists are sent comma-separated: 500 UIDs stay far below Dovecot's 64 KB command limit.
UID_CHUNK = 500


@dataclass(frozen=True, slots=True)
class FolderSnapshot:
    """What SELECT tells about a folder: enough to see "nothing changed" in O(1)."""

    name: str
    uidvalidity: int
    uidnext: int | None
    highestmodseq: int | None
    exists: int


def chunked(uids: Sequence[int], size: int = UID_CHUNK) -> Iterator[list[int]]:
    """``uids`` in lists of at most ``size``."""
    for start in range(0, len(uids), size):
        yield list(uids[start : start + size])


def _int(value: object) -> int | None:
    if isinstance(value, (list, tuple)):
        value = value[0] if value else None
    return int(value) if value is not None else None  # type: ignore[arg-type]


def select_folder(client: IMAPClient, name: str, *, readonly: bool = True) -> FolderSnapshot:
    """SELECT ``name`` (read-only by default: syncing never changes the mailbox)."""
    info = client.select_folder(name, readonly=readonly)
    return FolderSnapshot(
        name=name,
        uidvalidity=_int(info.get(b"UIDVALIDITY")) or 0,
        uidnext=_int(info.get(b"UIDNEXT")),
        highestmodseq=_int(info.get(b"HIGHESTMODSEQ")),
        exists=_int(info.get(b"EXISTS")) or 0,
    )


def list_uids(client: IMAPClient, since: date | None = None) -> list[int]:
    """Every UID of the selected folder (or those with an INTERNALDATE since ``since``), ascending."""
    criteria: list[object] = ["SINCE", since] if since is not None else ["ALL"]
    return sorted(int(uid) for uid in client.search(criteria))


def uids_from(client: IMAPClient, first_uid: int) -> list[int]:
    """The UIDs at or above ``first_uid``, ascending (new mail since the last sync)."""
    # "n:*" always matches the highest UID even when it is below n (RFC 3501): filter.
    found = client.search(["UID", f"{first_uid}:*"])
    return sorted(int(uid) for uid in found if int(uid) >= first_uid)


def _flags(values: object) -> frozenset[str]:
    if not values:
        return frozenset()
    return frozenset(
        flag.decode("utf-8", "replace") if isinstance(flag, bytes) else str(flag)
        for flag in values  # type: ignore[union-attr]
    )


def _as_utc(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def fetch_messages(client: IMAPClient, uids: Sequence[int], *, condstore: bool) -> list[FetchedMessage]:
    """Fetch and parse the given UIDs of the selected folder (UIDs expunged meanwhile are
    simply absent from the result). Never marks messages as read (BODY.PEEK)."""
    items = [b"BODY.PEEK[]", b"FLAGS", b"INTERNALDATE"]
    if condstore:
        items.append(b"MODSEQ")
    fetched: list[FetchedMessage] = []
    for chunk in chunked(uids):
        response = client.fetch(chunk, items)
        for uid in chunk:
            data = response.get(uid)
            if data is None:
                continue
            raw = data.get(b"BODY[]") or b""
            fetched.append(
                FetchedMessage(
                    uid=uid,
                    flags=_flags(data.get(b"FLAGS")),
                    parsed=parse_message(raw),
                    modseq=_int(data.get(b"MODSEQ")),
                    internal_date=_as_utc(data.get(b"INTERNALDATE")),
                )
            )
    return fetched


def fetch_flags(
    client: IMAPClient, uids: Sequence[int], *, condstore: bool
) -> dict[int, tuple[frozenset[str], int | None]]:
    """Current flags (and MODSEQ) of ``uids`` in the selected folder."""
    items = [b"FLAGS", b"MODSEQ"] if condstore else [b"FLAGS"]
    result: dict[int, tuple[frozenset[str], int | None]] = {}
    for chunk in chunked(uids):
        for uid, data in client.fetch(chunk, items).items():
            result[int(uid)] = (_flags(data.get(b"FLAGS")), _int(data.get(b"MODSEQ")))
    return result


def changed_since(client: IMAPClient, modseq: int) -> list[int]:
    """UIDs whose flags changed after ``modseq`` (CONDSTORE ``SEARCH MODSEQ``)."""
    return sorted(int(uid) for uid in client.search(["MODSEQ", str(modseq)]))


def set_flags(client: IMAPClient, folder: str, uid: int, *, seen: bool | None, flagged: bool | None) -> None:
    """Set or clear \\Seen and \\Flagged on one message, read-write (two-way flag sync)."""
    client.select_folder(folder, readonly=False)
    for flag, wanted in ((b"\\Seen", seen), (b"\\Flagged", flagged)):
        if wanted is True:
            client.add_flags([uid], [flag], silent=True)
        elif wanted is False:
            client.remove_flags([uid], [flag], silent=True)
