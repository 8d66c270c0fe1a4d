"""The synthetic organisation of bench_policy.py and bench_views.py, loaded straight into a database.

Both benchmarks load their data with this module (``create_and_load``; ``drop_database`` at the
end): one organisation "Bench" (company domain acme.com, 20 excluded domains), ``Shape.users``
users with one mail account each (sharing PRIVATE/CUSTOM/PUBLIC by user index) and an INBOX
folder, an account excluded domain on every tenth account, 20,000 leads/contacts over 3,000
customer domains with owners drawn at random (the busy record's: the busy user, if any). Then
N messages over two years with one or two counterparties each: 80 % a record's address (record
0, the busy record, and any further busy records take a fixed share of these; the message is
then linked to the record, ``message_link.date`` = the message's date), 8 % a colleague, 5 % an
excluded domain, 7 % elsewhere. Every CUSTOM user flags 10 % of the records for Share Email and
(every ``share_busy_every``-th of them) the busy record.

The small rows go through the ORM; the share flags, messages, addresses and links are written
directly, 100,000 messages at a time: COPY on PostgreSQL (asyncpg), executemany on SQLite
(sqlite3, ``synchronous = OFF`` on that connection), then ``VACUUM ANALYZE`` / ``ANALYZE``.

The benchmarks use different shapes (``Shape``), each the data it was measured with:
bench_views a busy user (≈ 10 % of all mail, PUBLIC, owner of the busy record) with sent and
received mail in INBOX and Sent; bench_policy mail spread evenly over all accounts, all of it
received, and a second busy record. The same seed gives the same rows.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from tortoise import Tortoise

from salesinbox.core.db import migrate_database, tortoise_config
from salesinbox.core.models import (
    AccountExcludedDomain,
    CrmRecord,
    DomainKind,
    Folder,
    MailAccount,
    Organisation,
    OrganisationDomain,
    RecordKind,
    User,
)

RECORDS, CUSTOMER_DOMAINS = 20_000, 3_000
BUSY_RECORD = 0  # record index of the busy record (further busy records follow it: 1, 2, ...)
SHARINGS = ["PRIVATE", "CUSTOM", "PUBLIC"]  # user i's account: SHARINGS[i % 3]; a busy user's: PUBLIC
EXCLUDED = [f"excluded{i}.com" for i in range(20)]
BATCH = 100_000  # messages generated and written at a time

MESSAGE_COLUMNS = [
    "id", "uidvalidity", "uid", "modseq", "message_id", "in_reply_to", "references", "thread_key",
    "subject", "from_name", "from_address", "date", "direction", "seen", "flagged", "answered",
    "snippet", "size", "has_attachments", "parse_warnings", "created_at", "account_id", "folder_id"]
ADDRESS_COLUMNS = ["message_id", "role", "name", "address", "domain", "is_counterparty"]
LINK_COLUMNS = ["message_id", "record_id", "date"]


@dataclass(frozen=True, kw_only=True)
class Shape:
    """What differs between the benchmarks' organisations (each keeps the data it was measured with)."""

    users: int
    busy_user: int | None
    """This user's account is PUBLIC, receives ``busy_user_share`` of all mail and owns the busy
    record; None: every account is equally likely and every record's owner is drawn."""
    busy_user_share: float
    """Share of all mail in the busy user's account (unused without a busy user)."""
    busy_records: tuple[float, ...]
    """Share of the record counterparties that are record 0, 1, ... (the rest: any record)."""
    share_busy_every: int
    """Every n-th CUSTOM user (in user order) flags the busy record for Share Email."""
    owners_by_id: bool
    """Record owners are drawn from the user ids in id order; False: in the order the database
    returns them unordered (bench_policy's draw: id order on PostgreSQL, but email order on
    SQLite, which reads the ids from the unique index on email)."""
    even_records: RecordKind
    """Kind of the records of even index (those of odd index are the other kind)."""
    excluded_account_offset: int
    """Users i with ``i % 10 == offset`` have the account excluded domain ``cust{i}.com``."""
    detailed_mail: bool
    """True: 20 % sent mail (in a Sent folder, the account's address FROM, the counterparties TO
    and CC), the rest received (first counterparty FROM, others CC, the account TO, last);
    70 % seen, sizes 1000–5999, thread keys. False: all received into INBOX, the account's TO
    row first, ``from_address`` the account's own, unseen, 1000 bytes, no thread key."""


def _is_pg(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://"))


def _dsn(url: str, database: str | None = None) -> str:
    parts = urlsplit(url.replace("postgres://", "postgresql://", 1))
    return urlunsplit(parts._replace(path="/" + database)) if database else urlunsplit(parts)


def _sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite://").split("?")[0]


async def create_small_rows(rng: random.Random, shape: Shape) -> None:
    """Organisation, domains, users with one account (INBOX, + Sent) each, records, via the ORM."""
    org = await Organisation.create(name="Bench")
    await OrganisationDomain.create(organisation=org, kind=DomainKind.COMPANY, domain="acme.com")
    await OrganisationDomain.bulk_create(
        [OrganisationDomain(organisation=org, kind=DomainKind.EXCLUDED, domain=d) for d in EXCLUDED])
    for i in range(shape.users):
        user = await User.create(organisation=org, email=f"u{i}@acme.com", name=f"User {i}")
        account = await MailAccount.create(
            user=user, provider="custom_imap", display_name=user.name, email=user.email,
            imap_host="imap.acme.com", imap_port=993, imap_security="SSL", imap_username=user.email,
            imap_auth_kind="PASSWORD", imap_secret="x", smtp_host="smtp.acme.com", smtp_port=465,
            smtp_security="SSL", smtp_username=user.email, smtp_auth_kind="PASSWORD", smtp_secret="x",
            sharing="PUBLIC" if i == shape.busy_user else SHARINGS[i % 3])
        await Folder.create(account=account, name="INBOX")
        if shape.detailed_mail:
            await Folder.create(account=account, name="Sent")
        if i % 10 == shape.excluded_account_offset:
            await AccountExcludedDomain.create(account=account, domain=f"cust{i}.com")
    users = User.all().order_by("id") if shape.owners_by_id else User.all()
    users = await users.values_list("id", flat=True)
    odd = RecordKind.LEAD if shape.even_records == RecordKind.CONTACT else RecordKind.CONTACT
    await CrmRecord.bulk_create([
        CrmRecord(organisation=org, kind=shape.even_records if i % 2 == 0 else odd,
                  owner_id=(users[shape.busy_user] if i == BUSY_RECORD and shape.busy_user is not None
                            else rng.choice(users)),
                  last_name=f"Record {i}", primary_email=f"c{i}@cust{i % CUSTOMER_DOMAINS}.com",
                  secondary_email=f"c{i}.alt@gmail.com" if i % 3 == 0 else None)
        for i in range(RECORDS)], batch_size=2000)


def _counterparty(rng: random.Random, shape: Shape, ids: dict, linked: set) -> str:
    """One counterparty address; a record's is added to ``linked``."""
    r = rng.random()
    if r < 0.80:
        x, bound, record = rng.random(), 0.0, None
        for index, share in enumerate(shape.busy_records):
            bound += share
            if x < bound:
                record = index
                break
        if record is None:
            record = rng.randrange(RECORDS)
        linked.add(ids["records"][record])
        return f"c{record}@cust{record % CUSTOMER_DOMAINS}.com"
    if r < 0.88:
        return f"colleague{rng.randrange(shape.users)}@acme.com"
    if r < 0.93:
        return f"x@{rng.choice(('', 'mail.'))}{rng.choice(EXCLUDED)}"
    return f"someone{rng.randrange(10**6)}@elsewhere{rng.randrange(500)}.net"


def generate(rng: random.Random, shape: Shape, count: int, ids: dict, start: int):
    """Rows for messages ``start..start+count``: (messages, addresses, links)."""
    messages, addresses, links = [], [], []
    epoch = datetime(2023, 1, 1, tzinfo=UTC)
    accounts = ids["accounts"]
    if shape.busy_user is not None:
        busy = accounts[shape.busy_user]
        others = accounts[:shape.busy_user] + accounts[shape.busy_user + 1:]
    for mid in range(start, start + count):
        if shape.busy_user is None:
            account = rng.choice(accounts)
        else:
            account = busy if rng.random() < shape.busy_user_share else rng.choice(others)
        date = epoch + timedelta(seconds=rng.randrange(2 * 365 * 86400))
        if not shape.detailed_mail:
            messages.append((mid, 1, mid, None, f"<{mid}@bench>", None, "", None, f"Subject {mid}", "",
                             account["email"], date, "RECEIVED", False, False, False, "", 1000, False,
                             "[]", date, account["id"], account["inbox"]))
            addresses.append((mid, "TO", "", account["email"], "acme.com", False))
            linked = set()
            for role in ("FROM", "CC")[: rng.choice((1, 1, 2))]:
                address = _counterparty(rng, shape, ids, linked)
                addresses.append((mid, role, "", address, address.rpartition("@")[2], True))
            links.extend((mid, record, date) for record in linked)  # message_link.date = message.date
            continue
        sent = rng.random() < 0.2
        linked = set()
        counterparties = [_counterparty(rng, shape, ids, linked) for _ in range(rng.choice((1, 1, 2)))]
        own = ("FROM", "", account["email"], "acme.com", False)
        if sent:
            roles = [own, *(("TO" if n == 0 else "CC", "", a, a.rpartition("@")[2], True)
                            for n, a in enumerate(counterparties))]
        else:
            roles = [*(("FROM" if n == 0 else "CC", "", a, a.rpartition("@")[2], True)
                       for n, a in enumerate(counterparties)), ("TO", *own[1:])]
        sender = roles[0][2]
        messages.append((mid, 1, mid, None, f"<{mid}@bench>", None, "", f"<{mid}@bench>",
                         f"Subject {mid}", "", sender, date, "SENT" if sent else "RECEIVED",
                         rng.random() < 0.7, False, False, "", 1000 + mid % 5000, False, "[]", date,
                         account["id"], account["sent" if sent else "inbox"]))
        addresses.extend((mid, *role) for role in roles)
        links.extend((mid, record, date) for record in linked)
    return messages, addresses, links


async def load(url: str, total: int, rng: random.Random, shape: Shape) -> None:
    """Fill the migrated, empty database at ``url`` with the organisation and ``total`` messages."""
    await Tortoise.init(config=tortoise_config(url))
    try:
        await create_small_rows(rng, shape)
        accounts = await MailAccount.all().order_by("user_id").values("id", "email", "user_id", "sharing")
        folders = {(f["account_id"], f["name"]): f["id"]
                   for f in await Folder.all().values("id", "account_id", "name")}
        ids = {"accounts": [{**a, "inbox": folders[a["id"], "INBOX"], "sent": folders.get((a["id"], "Sent"))}
                            for a in accounts],
               "records": await CrmRecord.all().order_by("id").values_list("id", flat=True)}
    finally:
        await Tortoise.close_connections()
    custom = [a["user_id"] for a in ids["accounts"] if a["sharing"] == "CUSTOM"]
    busy = ids["records"][BUSY_RECORD]
    flags = sorted({(u, ids["records"][r]) for u in custom for r in rng.sample(range(RECORDS), RECORDS // 10)}
                   | {(u, busy) for u in custom[::shape.share_busy_every]})
    now = datetime.now(UTC)
    if _is_pg(url):
        conn = await asyncpg.connect(_dsn(url))
        try:
            # COPY is binary: jsonb is a version byte then the text
            await conn.set_type_codec("jsonb", encoder=lambda v: b"\x01" + v.encode(),
                                      decoder=lambda b: json.loads(b[1:]), schema="pg_catalog",
                                      format="binary")
            await conn.copy_records_to_table("share_flag", records=[(u, r, now) for u, r in flags],
                                             columns=["user_id", "record_id", "created_at"])
            for start in range(1, total + 1, BATCH):
                messages, addresses, links = generate(rng, shape, min(BATCH, total + 1 - start), ids, start)
                await conn.copy_records_to_table("message", records=messages, columns=MESSAGE_COLUMNS)
                await conn.copy_records_to_table("message_address", records=addresses, columns=ADDRESS_COLUMNS)
                await conn.copy_records_to_table("message_link", records=links, columns=LINK_COLUMNS)
                print(f"  loaded {start + len(messages) - 1} messages", flush=True)
            await conn.execute("SELECT setval('message_id_seq', $1)", total)
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()
        return
    db = sqlite3.connect(_sqlite_path(url))
    try:
        db.execute("PRAGMA synchronous = OFF")  # this connection only: a bench load, not the app
        db.execute("PRAGMA cache_size = -1000000")  # 1 GB: index b-trees stay in memory
        db.executemany("INSERT INTO share_flag (user_id, record_id, created_at) VALUES (?, ?, ?)",
                       [(u, r, now) for u, r in flags])

        def insert(table: str, columns: list[str], rows: list[tuple]) -> None:
            names = ", ".join(f'"{c}"' for c in columns)
            db.executemany(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})", rows)

        for start in range(1, total + 1, BATCH):
            messages, addresses, links = generate(rng, shape, min(BATCH, total + 1 - start), ids, start)
            insert("message", MESSAGE_COLUMNS, messages)
            insert("message_address", ADDRESS_COLUMNS, addresses)
            insert("message_link", LINK_COLUMNS, links)
            db.commit()
            print(f"  loaded {start + len(messages) - 1} messages", flush=True)
        db.execute("ANALYZE")
        db.commit()
    finally:
        db.close()


async def _remove(url: str) -> None:
    if _is_pg(url):
        name = urlsplit(url).path.lstrip("/")
        admin = await asyncpg.connect(_dsn(url, "postgres"))
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
    else:
        for suffix in ("", "-wal", "-shm"):
            Path(_sqlite_path(url) + suffix).unlink(missing_ok=True)


async def create_database(url: str) -> None:
    """An empty, migrated database: PostgreSQL's dropped and created again, SQLite's file deleted."""
    await _remove(url)
    if _is_pg(url):
        admin = await asyncpg.connect(_dsn(url, "postgres"))
        try:
            await admin.execute(f'CREATE DATABASE "{urlsplit(url).path.lstrip("/")}"')
        finally:
            await admin.close()
    await migrate_database(url)


async def create_and_load(url: str, total: int, shape: Shape, seed: int = 2024) -> float:
    """``create_database`` then ``load`` with ``random.Random(seed)``; the load's seconds."""
    await create_database(url)
    began = time.perf_counter()
    await load(url, total, random.Random(seed), shape)
    return time.perf_counter() - began


async def drop_database(url: str) -> None:
    await _remove(url)
    print(f"dropped {url}")
