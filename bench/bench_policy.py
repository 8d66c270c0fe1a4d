"""Benchmark of the sharing filter (core/policy.py) on a synthetic organisation.

Loads N messages (default 200k) with ~2 counterparties each, 20k leads/contacts (one "busy"
record linked to ~0.5% of all mail), 60 users with PRIVATE/CUSTOM/PUBLIC accounts, company and
excluded domains, share flags; then times, p50/p95 over repeated runs:

* the Emails related list (first page of 50, newest first) of the busy record and of a typical
  one, through the ORM, the same generated SQL run raw, and a hand-written SQL equivalent;
* the viewer's own SalesInbox first page, and the first page of everything the viewer may see;
* ``can_see`` of one message.

Then prints the plans (PostgreSQL: EXPLAIN ANALYZE; SQLite: EXPLAIN QUERY PLAN).

    .venv/bin/python bench/bench_policy.py --database-url postgres://postgres@127.0.0.1:5432/bench_policy
    .venv/bin/python bench/bench_policy.py --database-url sqlite:///tmp/bench_policy.sqlite3 --messages 200000
    ... --reuse                      # time an already loaded database again
    ... --index message_date         # also create a candidate index (see INDEXES) before timing
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from tortoise import Tortoise, connections
from tortoise.expressions import Subquery

from salesinbox.core.db import migrate_database, tortoise_config
from salesinbox.core.models import (
    AccountExcludedDomain, CrmRecord, DomainKind, Folder, MailAccount, Message, MessageLink,
    Organisation, OrganisationDomain, RecordKind, User,
)
from salesinbox.core.policy import (  # _visible: the record-path filter, for the joined shape
    _visible, can_see, visible_messages, visible_messages_for_record,
)

USERS, RECORDS, CUSTOMER_DOMAINS = 60, 20_000, 3_000
BUSY, SECOND_BUSY = 0, 1  # record indexes with a large share of all mail
SHARINGS = ["PRIVATE", "CUSTOM", "PUBLIC"]
EXCLUDED = [f"excluded{i}.com" for i in range(20)]
INDEXES = {  # candidate indexes to try with --index NAME
    "message_date": "CREATE INDEX bench_message_date_idx ON message (date, id)",
    "address_covering_pg": "CREATE INDEX bench_address_cp_idx ON message_address (message_id)"
                           " INCLUDE (is_counterparty, domain)",
    "address_covering": "CREATE INDEX bench_address_cp_idx ON message_address"
                        " (message_id, is_counterparty, domain)",
}

# The related list written by hand, for comparison ($1 record, $2 viewer, $3 viewer's org).
HAND_RELATED = """
SELECT m.* FROM message_link l JOIN message m ON m.id = l.message_id
JOIN mail_account a ON a.id = m.account_id JOIN app_user u ON u.id = a.user_id
WHERE l.record_id = $1 AND (a.user_id = $2 OR (
  u.organisation_id = $3 AND a.sharing IN ('PUBLIC', 'CUSTOM')
  AND NOT EXISTS (SELECT 1 FROM message_address ma WHERE ma.message_id = m.id AND ma.is_counterparty
    AND (EXISTS (SELECT 1 FROM organisation_domain d WHERE d.organisation_id = u.organisation_id
                 AND (ma.domain = d.domain OR substr(ma.domain, length(ma.domain) - length(d.domain)) = '.' || d.domain))
      OR EXISTS (SELECT 1 FROM account_excluded_domain x WHERE x.account_id = a.id
                 AND (ma.domain = x.domain OR substr(ma.domain, length(ma.domain) - length(x.domain)) = '.' || x.domain))))
  AND (a.sharing = 'PUBLIC' OR EXISTS (SELECT 1 FROM message_link l2 JOIN share_flag s
       ON s.record_id = l2.record_id AND s.user_id = a.user_id WHERE l2.message_id = m.id))))
ORDER BY m.date DESC, m.id DESC LIMIT 50
"""


def _is_pg(url: str) -> bool:
    return url.startswith(("postgres://", "postgresql://"))


def _dsn(url: str, database: str | None = None) -> str:
    parts = urlsplit(url.replace("postgres://", "postgresql://", 1))
    return urlunsplit(parts._replace(path="/" + database)) if database else urlunsplit(parts)


async def create_small_rows(rng: random.Random) -> None:
    """Organisation, domains, users, accounts, folders and records, through the ORM."""
    org = await Organisation.create(name="Bench")
    await OrganisationDomain.create(organisation=org, kind=DomainKind.COMPANY, domain="acme.com")
    await OrganisationDomain.bulk_create(
        [OrganisationDomain(organisation=org, kind=DomainKind.EXCLUDED, domain=d) for d in EXCLUDED])
    for i in range(USERS):
        user = await User.create(organisation=org, email=f"u{i}@acme.com", name=f"User {i}")
        account = await MailAccount.create(
            user=user, provider="custom_imap", display_name=user.name, email=user.email,
            imap_host="imap.acme.com", imap_port=993, imap_security="SSL", imap_username=user.email,
            imap_auth_kind="PASSWORD", imap_secret="x", smtp_host="smtp.acme.com", smtp_port=465,
            smtp_security="SSL", smtp_username=user.email, smtp_auth_kind="PASSWORD", smtp_secret="x",
            sharing=SHARINGS[i % 3])
        await Folder.create(account=account, name="INBOX")
        if i % 10 == 0:
            await AccountExcludedDomain.create(account=account, domain=f"cust{i}.com")
    owners = await User.all().values_list("id", flat=True)
    await CrmRecord.bulk_create([
        CrmRecord(organisation=org, kind=RecordKind.CONTACT if i % 2 else RecordKind.LEAD,
                  owner_id=rng.choice(owners), last_name=f"Record {i}",
                  primary_email=f"c{i}@cust{i % CUSTOMER_DOMAINS}.com",
                  secondary_email=f"c{i}.alt@gmail.com" if i % 3 == 0 else None)
        for i in range(RECORDS)], batch_size=2000)


def generate(rng: random.Random, count: int, ids: dict, start: int):
    """Rows for messages ``start..start+count``: (messages, addresses, links)."""
    messages, addresses, links = [], [], []
    epoch = datetime(2023, 1, 1, tzinfo=UTC)
    for mid in range(start, start + count):
        account = rng.choice(ids["accounts"])
        date = epoch + timedelta(seconds=rng.randrange(2 * 365 * 86400))
        messages.append((mid, 1, mid, None, f"<{mid}@bench>", None, "", None, f"Subject {mid}", "",
                         account["email"], date, "RECEIVED", False, False, False, "", 1000, False,
                         "[]", date, account["id"], account["folder"]))
        addresses.append((mid, "TO", "", account["email"], "acme.com", False))
        linked = set()
        for role in ("FROM", "CC")[: rng.choice((1, 1, 2))]:
            r = rng.random()
            if r < 0.80:
                x = rng.random()
                record = BUSY if x < 0.005 else SECOND_BUSY if x < 0.007 else rng.randrange(RECORDS)
                address = f"c{record}@cust{record % CUSTOMER_DOMAINS}.com"
                linked.add(ids["records"][record])
            elif r < 0.88:
                address = f"colleague{rng.randrange(USERS)}@acme.com"
            elif r < 0.93:
                address = f"x@{rng.choice(('', 'mail.'))}{rng.choice(EXCLUDED)}"
            else:
                address = f"someone{rng.randrange(10**6)}@elsewhere{rng.randrange(500)}.net"
            addresses.append((mid, role, "", address, address.rpartition("@")[2], True))
        links.extend((mid, record, date) for record in linked)  # message_link.date = message.date
    return messages, addresses, links


MESSAGE_COLUMNS = [
    "id", "uidvalidity", "uid", "modseq", "message_id", "in_reply_to", "references", "thread_key",
    "subject", "from_name", "from_address", "date", "direction", "seen", "flagged", "answered",
    "snippet", "size", "has_attachments", "parse_warnings", "created_at", "account_id", "folder_id"]
ADDRESS_COLUMNS = ["message_id", "role", "name", "address", "domain", "is_counterparty"]


async def load(url: str, total: int, rng: random.Random) -> None:
    await Tortoise.init(config=tortoise_config(url))
    try:
        await create_small_rows(rng)
        accounts = await MailAccount.all().values("id", "email", "user_id")
        folders = dict(await Folder.all().values_list("account_id", "id"))
        ids = {"accounts": [{**a, "folder": folders[a["id"]]} for a in accounts],
               "records": await CrmRecord.all().order_by("id").values_list("id", flat=True)}
        custom = await MailAccount.filter(sharing="CUSTOM").values_list("user_id", flat=True)
    finally:
        await Tortoise.close_connections()
    flags = sorted({(u, ids["records"][r]) for u in custom
                    for r in [BUSY, *rng.sample(range(RECORDS), RECORDS // 10)]})
    batch = 100_000
    if _is_pg(url):
        conn = await asyncpg.connect(_dsn(url))
        # COPY is binary: jsonb is a version byte then the text
        await conn.set_type_codec("jsonb", encoder=lambda v: b"\x01" + v.encode(),
                                  decoder=lambda b: json.loads(b[1:]), schema="pg_catalog",
                                  format="binary")
        await conn.copy_records_to_table("share_flag", records=[(u, r, datetime.now(UTC)) for u, r in flags],
                                         columns=["user_id", "record_id", "created_at"])
        for start in range(1, total + 1, batch):
            messages, addresses, links = generate(rng, min(batch, total + 1 - start), ids, start)
            await conn.copy_records_to_table("message", records=messages, columns=MESSAGE_COLUMNS)
            await conn.copy_records_to_table("message_address", records=addresses, columns=ADDRESS_COLUMNS)
            await conn.copy_records_to_table("message_link", records=links,
                                             columns=["message_id", "record_id", "date"])
            print(f"  loaded {start + len(messages) - 1} messages", flush=True)
        await conn.execute("SELECT setval('message_id_seq', $1)", total)
        await conn.execute("VACUUM ANALYZE")
        await conn.close()
        return
    db = sqlite3.connect(url.removeprefix("sqlite://"))
    db.executemany("INSERT INTO share_flag (user_id, record_id, created_at) VALUES (?, ?, ?)",
                   [(u, r, datetime.now(UTC)) for u, r in flags])
    for start in range(1, total + 1, batch):
        messages, addresses, links = generate(rng, min(batch, total + 1 - start), ids, start)
        cols = ", ".join(f'"{c}"' for c in MESSAGE_COLUMNS)
        db.executemany(f"INSERT INTO message ({cols}) VALUES ({', '.join('?' * len(MESSAGE_COLUMNS))})", messages)
        db.executemany(f"INSERT INTO message_address ({', '.join(ADDRESS_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)", addresses)
        db.executemany("INSERT INTO message_link (message_id, record_id, date) VALUES (?, ?, ?)", links)
        db.commit()
        print(f"  loaded {start + len(messages) - 1} messages", flush=True)
    db.execute("ANALYZE")
    db.commit()
    db.close()


def _sql(query) -> tuple[str, list]:
    """The SQL and bound values Tortoise would send (private API: fine for a benchmark)."""
    query._choose_db_if_not_chosen()
    query._make_query()
    sql, values = query.query.get_parameterized_sql()
    return sql, list(values)


async def timed(label: str, runs: int, call: Callable[[], Awaitable[object]], warm: int = 3) -> None:
    for _ in range(warm):
        await call()
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        result = await call()
        samples.append((time.perf_counter() - began) * 1000)
    samples.sort()
    p95 = samples[min(len(samples) - 1, int(len(samples) * 0.95))]
    size = len(result) if isinstance(result, list) else result
    print(f"  {label:<58} p50 {statistics.median(samples):7.2f} ms   p95 {p95:7.2f} ms   ({size})")


LINK_DATE = [  # the recommended denormalisation, added to the bench database only (--link-date)
    "ALTER TABLE message_link ADD COLUMN date TIMESTAMP",
    "UPDATE message_link SET date = (SELECT m.date FROM message m WHERE m.id = message_link.message_id)",
    "CREATE INDEX bench_link_record_date_idx ON message_link (record_id, date, message_id)",
    "ANALYZE",
]


def _by_link_date(query) -> tuple[str, list]:
    """The related list joined to the record's links and ordered by the link's copy of the date
    (what Tortoise would generate with a ``MessageLink.date`` field)."""
    sql, values = _sql(query)
    ordered = sql.replace('ORDER BY "message"."date" DESC,"message"."id" DESC',
                          'ORDER BY "message_link"."date" DESC,"message"."id" DESC')
    assert ordered != sql
    return ordered, values


async def measure(url: str, runs: int, plans: bool, everything_too: bool) -> None:
    await Tortoise.init(config=tortoise_config(url))
    conn = connections.get("default")
    pg = _is_pg(url)
    try:
        viewer = await User.get(email="u0@acme.com")  # owns a PRIVATE account
        own_account = await MailAccount.get(user=viewer)
        records = await CrmRecord.all().order_by("id").limit(3).values_list("id", flat=True)
        busy, medium, typical = records[BUSY], records[SECOND_BUSY], records[2]
        counts = {r: await Message.filter(links__record_id=r).count() for r in records}
        total = await Message.all().count()
        columns = await conn.execute_query_dict(
            "SELECT column_name AS name FROM information_schema.columns WHERE table_name = 'message_link'"
            if pg else "SELECT name FROM pragma_table_info('message_link')")
        link_date = any(c["name"] == "date" for c in columns)
        print(f"{'PostgreSQL' if pg else 'SQLite'}: {total} messages; busy record {counts[busy]} "
              f"linked, medium {counts[medium]}, typical {counts[typical]}; viewer sees "
              f"{await visible_messages(viewer).count()} messages")

        def related(record: int, by: int | None = None):
            return visible_messages_for_record(viewer, record, by).order_by("-date", "-id").limit(50)

        def related_joined(record: int):  # the shape to use with a MessageLink.date column
            query = Message.filter(links__record_id=record).filter(_visible(viewer, known_linked=True))
            return query.order_by("-date", "-id").limit(50)

        def no_policy(record: int):
            linked = MessageLink.filter(record_id=record).values("message_id")
            return Message.filter(id__in=Subquery(linked)).order_by("-date", "-id").limit(50)

        def own_account_page():
            mine = visible_messages(viewer).filter(account_id=own_account.id)
            return mine.order_by("-date", "-id").limit(50)

        def own_user_page():
            mine = visible_messages(viewer).filter(account__user_id=viewer.id)
            return mine.order_by("-date", "-id").limit(50)

        def everything():
            return visible_messages(viewer).order_by("-date", "-id").limit(50)

        hand = HAND_RELATED if pg else HAND_RELATED.replace("$1", "?").replace("$2", "?").replace("$3", "?")
        hand_args = [busy, viewer.id, viewer.organisation_id]
        sharer = await User.get(email="u2@acme.com")  # PUBLIC
        probe = (await related(busy))[-1].id
        await timed("busy record, no policy at all (baseline)", runs, lambda: no_policy(busy))
        await timed("related list, busy record (ORM)", runs, lambda: related(busy))
        await timed("related list, busy record (generated SQL, raw)", runs,
                    lambda: conn.execute_query_dict(*_sql(related(busy))))
        await timed("related list, busy record (hand-written SQL)", runs,
                    lambda: conn.execute_query_dict(hand, hand_args))
        if link_date:
            await timed("related list, busy record, by link date (raw)", runs,
                        lambda: conn.execute_query_dict(*_by_link_date(related_joined(busy))))
            page = await conn.execute_query_dict(*_by_link_date(related_joined(busy)))
            assert [r["id"] for r in page] == [m.id for m in await related(busy)]
        await timed("related list, busy record, shared by one user (ORM)", runs,
                    lambda: related(busy, sharer.id))
        await timed("related list, medium record (ORM)", runs, lambda: related(medium))
        await timed("related list, typical record (ORM)", runs, lambda: related(typical))
        await timed("own SalesInbox first page, account_id = its account (ORM)", runs, own_account_page)
        await timed("own SalesInbox first page, account__user_id = V (ORM)", runs, own_user_page)
        if everything_too:
            await timed("everything visible, first page (ORM)", 3, everything, warm=1)
        await timed("can_see one message", runs, lambda: can_see(viewer, probe))
        if plans:
            shown = [("related list, busy record", _sql(related(busy))),
                     ("own SalesInbox, one account", _sql(own_account_page()))]
            if link_date:
                shown.append(("related list by link date", _by_link_date(related_joined(busy))))
            for label, (sql, values) in shown:
                explain = "EXPLAIN (ANALYZE, BUFFERS) " if pg else "EXPLAIN QUERY PLAN "
                _, rows = await conn.execute_query(explain + sql, values)
                print(f"\n--- plan: {label}")
                for row in rows:
                    print("  " + (row[0] if pg else " | ".join(str(v) for v in tuple(row))))
    finally:
        await Tortoise.close_connections()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--reuse", action="store_true", help="skip loading: the database is ready")
    parser.add_argument("--index", action="append", default=[], choices=sorted(INDEXES))
    parser.add_argument("--no-plans", action="store_true")
    parser.add_argument("--link-date", action="store_true",
                        help="add the recommended message_link.date column and index first")
    parser.add_argument("--everything", action="store_true",
                        help="also time the first page of all visible mail (slow, not a product view)")
    args = parser.parse_args()
    url = args.database_url
    if not args.reuse:
        if _is_pg(url):
            name = urlsplit(url).path.lstrip("/")
            admin = await asyncpg.connect(_dsn(url, "postgres"))
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
            await admin.close()
        else:
            from pathlib import Path
            Path(url.removeprefix("sqlite://")).unlink(missing_ok=True)
        await migrate_database(url)
        began = time.perf_counter()
        await load(url, args.messages, random.Random(2024))
        print(f"loaded in {time.perf_counter() - began:.0f} s")
    for name in args.index:
        await Tortoise.init(config=tortoise_config(url))
        await connections.get("default").execute_script(
            INDEXES[name].replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS") + "; ANALYZE")
        await Tortoise.close_connections()
        print(f"with index {name}")
    if args.link_date:
        await Tortoise.init(config=tortoise_config(url))
        try:
            conn = connections.get("default")
            columns = await conn.execute_query_dict(
                "SELECT column_name AS name FROM information_schema.columns WHERE table_name = 'message_link'"
                if _is_pg(url) else "SELECT name FROM pragma_table_info('message_link')")
            if any(c["name"] == "date" for c in columns):  # migration 0003 added it: nothing to do
                print("message_link.date and its index are in the schema (migration 0003)")
            else:
                for statement in LINK_DATE:
                    await conn.execute_script(statement)
                print("with message_link.date and index (record_id, date, message_id)")
        finally:
            await Tortoise.close_connections()
    await measure(url, args.runs, not args.no_plans, args.everything)


if __name__ == "__main__":
    asyncio.run(main())
