"""Benchmark of the sharing filter (core/sharing/visibility.py) on a synthetic organisation.

Loads, with bench/synthetic_org.py (COPY on PostgreSQL, executemany on SQLite), N messages
(default 200k) with ~2 counterparties each, 20k leads/contacts (one "busy" record linked to
~0.5% of all mail), 60 users with PRIVATE/CUSTOM/PUBLIC accounts, company and excluded domains,
share flags; then times, p50/p95 over repeated runs:

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
import statistics
import time
from collections.abc import Awaitable, Callable

from tortoise import Tortoise, connections
from tortoise.expressions import Subquery

from salesinbox.core.db.connection import tortoise_config
from salesinbox.core.db.models import CrmRecord, MailAccount, Message, MessageLink, RecordKind, User
from salesinbox.core.sharing.visibility import (  # _visible: the record-path filter, for the joined shape
    _visible,
    can_see,
    visible_messages,
    visible_messages_for_record,
)

# bench/synthetic_org.py: bench/ is on sys.path when this file runs as a script
from synthetic_org import Shape, _is_pg, create_and_load

BUSY, SECOND_BUSY = 0, 1  # record indexes with a large share of all mail
# The organisation of bench/synthetic_org.py as this benchmark loads it: mail spread evenly over
# 60 accounts, all received; records 0 and 1 are 0.5 % and 0.2 % of the record counterparties;
# every CUSTOM user shares record 0.
SHAPE = Shape(users=60, busy_user=None, busy_user_share=0.0, busy_records=(0.005, 0.002),
              share_busy_every=1, owners_by_id=False, even_records=RecordKind.LEAD,
              excluded_account_offset=0, detailed_mail=False)
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
                 AND (ma.domain = d.domain
                      OR substr(ma.domain, length(ma.domain) - length(d.domain)) = '.' || d.domain))
      OR EXISTS (SELECT 1 FROM account_excluded_domain x WHERE x.account_id = a.id
                 AND (ma.domain = x.domain
                      OR substr(ma.domain, length(ma.domain) - length(x.domain)) = '.' || x.domain))))
  AND (a.sharing = 'PUBLIC' OR EXISTS (SELECT 1 FROM message_link l2 JOIN share_flag s
       ON s.record_id = l2.record_id AND s.user_id = a.user_id WHERE l2.message_id = m.id))))
ORDER BY m.date DESC, m.id DESC LIMIT 50
"""


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
        print(f"loaded in {await create_and_load(url, args.messages, SHAPE):.0f} s")
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
