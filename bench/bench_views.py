"""The Emails related list and the SalesInbox through the real server, against hand-written SQL.

Loads a synthetic organisation straight into the database with bench/synthetic_org.py (COPY
on PostgreSQL, executemany on SQLite): 50 users with one mail account each
(PRIVATE/CUSTOM/PUBLIC), 20,000 leads/contacts, N messages (default 1,000,000) with their
addresses and links. User 0 is the busy user (≈ 10 % of all mail, PUBLIC account) and owns
record 0, the busy contact (≈ 0.5 % of all mail linked, ≈ 5,300 links at 1M). Then starts the
app (``create_app``, lifespan on) under uvicorn on a free 127.0.0.1 port in this process and
event loop (uvloop + httptools, as ``salesinbox serve``), and times, interleaved (each run
executes every variant once, in rotating order), p50/p95 of:

* scenarios: the busy record's related list (first page of 50) seen by a colleague (user 1,
  CUSTOM account: most of the page is other users' mail, so the policy decides) and by its
  owner (user 0); the busy user's SalesInbox first page;
* variants of each, from the outside in:
  ``http``     the GraphQL query over HTTP from a client in a process of its own, as a
               frontend is (bench/http_client_process.py: http.client, one keep-alive
               connection; the time is the client's, send to last byte);
  ``http_loop`` the same from an httpx2 client in the server's own process and event loop
               (the client's CPU then adds to the server's: the figure before 2026-11-29);
  ``canned``   the same query over HTTP (client process) to a strawberry endpoint answering
               the same data from memory (bench/canned_graphql.py: no auth, no database): the
               floor of any strawberry server returning those rows;
  ``gql``      the same operation through ``schema.execute`` in process (no HTTP, no JSON);
  ``orm_all``  every ORM call the operation makes (token lookup — cached, as in the server —,
               the record, the page, the page's linked records and owners/folders), no GraphQL;
  ``orm_page`` ``views.related_page`` / ``views.inbox_page`` alone;
  ``raw``      hand-written SQL returning the same rows and joined data (page + linked record
               ids + owner name / folder) in one statement (SalesInbox: the user's account ids
               first, as the ORM does), asyncpg or sqlite3 directly;
* ``/healthz`` over the same connection (HTTP + one ``SELECT 1``): the floor of any request.

The GraphQL rows are checked to equal the raw SQL's. Then: the SQL statements one GraphQL
request sends (from Tortoise's debug log) and EXPLAIN ANALYZE (SQLite: EXPLAIN QUERY PLAN) of
the ORM's related-list query; ``--profile`` adds a cProfile of in-process GraphQL executions.

    .venv/bin/python bench/bench_views.py --database-url postgres://postgres@127.0.0.1:5432/bench_views
    .venv/bin/python bench/bench_views.py --database-url sqlite:///tmp/bench_views.sqlite3
    ... --reuse          # time an already loaded database again (the load takes minutes)
    ... --drop           # drop the database (delete the SQLite file) at the end
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import logging
import os
import pstats
import re
import shutil
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx2 as httpx
import uvicorn
import uvloop
from starlette.routing import Route
from tortoise import connections

from salesinbox.core.credentials import generate_key
from salesinbox.core.crm.api_tokens import authenticate, issue_token
from salesinbox.core.crm.records import get_record
from salesinbox.core.db.connection import tortoise_config
from salesinbox.core.db.models import CrmRecord, Direction, RecordKind, User
from salesinbox.core.settings import Settings
from salesinbox.core.sharing import threads, views
from salesinbox.schema.asgi_app import create_app
from salesinbox.schema.context import Context
from salesinbox.schema.graphql_schema import build_schema
from salesinbox.schema.loaders import folder_name_by_id, owner_by_account, records_by_message

# bench/canned_graphql.py, bench/synthetic_org.py: bench/ is on sys.path when this runs as a script
from canned_graphql import canned_app
from synthetic_org import Shape, _dsn, _is_pg, _sqlite_path, create_and_load, drop_database

BUSY_USER, COLLEAGUE = 0, 1  # user indexes: busy user (owns the busy record), colleague viewer
# The organisation of bench/synthetic_org.py as this benchmark loads it: user 0 (PUBLIC) has 10 %
# of all mail and owns record 0, the busy contact (0.5 % of the record counterparties).
SHAPE = Shape(users=50, busy_user=BUSY_USER, busy_user_share=0.10, busy_records=(0.005,),
              share_busy_every=2, owners_by_id=True, even_records=RecordKind.CONTACT,
              excluded_account_offset=5, detailed_mail=True)
PAGE = 50

RELATED_GQL = """query($id: ID!) { %s(id: $id) { emails(first: 50) {
  items { id subject date fromAddress direction owner { name } linkedRecords { id } } nextCursor } } }"""
INBOX_GQL = """{ salesInbox(first: 50) {
  items { id subject date fromAddress folder linkedRecords { id } } nextCursor } }"""

FILTER_RUNS = 10
INBOX_FILTERS = [
    ("none (first page)", views.InboxFilter()),
    ("folder INBOX", views.InboxFilter(folder="INBOX")),
    ("unread", views.InboxFilter(seen=False)),
    ("sent", views.InboxFilter(direction=Direction.SENT)),
    ("linked to leads", views.InboxFilter(linked="LEADS")),
    ("linked to contacts", views.InboxFilter(linked="CONTACTS")),
    ("linked to nothing", views.InboxFilter(linked="NONE")),
    ("search, common ('cust1')", views.InboxFilter(search="cust1")),
    ("search, rare ('Subject 123456')", views.InboxFilter(search="Subject 123456")),
    ("search, no match", views.InboxFilter(search="zzz-no-such-text")),
]

# The related list by hand, in one statement: the policy of core/sharing/visibility.py, newest first by the
# link's date ($1 record, $2 viewer, $3 organisation), then each row's owner and linked records.
_WITHIN = "({d} = {l} OR substr({d}, length({d}) - length({l})) = '.' || {l})"
HAND_RELATED = f"""
WITH page AS (
  SELECT m.id, m.subject, m.date, m.from_address, m.direction, m.account_id, l.date AS link_date
  FROM message_link l JOIN message m ON m.id = l.message_id
  WHERE l.record_id = $1 AND (
    m.account_id IN (SELECT id FROM mail_account WHERE user_id = $2)
    OR (m.account_id IN (SELECT a.id FROM mail_account a JOIN app_user u ON u.id = a.user_id
                         WHERE u.organisation_id = $3 AND a.sharing IN ('PUBLIC', 'CUSTOM'))
        AND (m.account_id IN (SELECT id FROM mail_account WHERE sharing = 'PUBLIC')
             OR EXISTS (SELECT 1 FROM message_link l2 JOIN share_flag s ON s.record_id = l2.record_id
                        JOIN mail_account a2 ON a2.user_id = s.user_id
                        WHERE l2.message_id = m.id AND a2.id = m.account_id))
        AND NOT EXISTS (
          SELECT 1 FROM message_address ma WHERE ma.message_id = m.id AND ma.is_counterparty
            AND (EXISTS (SELECT 1 FROM organisation_domain d WHERE d.organisation_id = $3
                           AND d.kind IN ('COMPANY', 'EXCLUDED') AND {_WITHIN.format(d="ma.domain", l="d.domain")})
                 OR EXISTS (SELECT 1 FROM account_excluded_domain x WHERE x.account_id = m.account_id
                              AND {_WITHIN.format(d="ma.domain", l="x.domain")})))))
  ORDER BY l.date DESC, m.id DESC LIMIT {PAGE + 1})
SELECT p.id, p.subject, p.date, p.from_address, p.direction, u.name AS owner_name,
       (SELECT {{agg}}(x.record_id) FROM message_link x WHERE x.message_id = p.id) AS record_ids
FROM page p JOIN mail_account a ON a.id = p.account_id JOIN app_user u ON u.id = a.user_id
ORDER BY p.link_date DESC, p.id DESC
"""
# The SalesInbox by hand: the viewer's accounts' mail newest first, folder, linked records. The
# account ids are looked up first ({accounts}: one placeholder each), as the ORM does: with the
# ids in the text, one account is an equality and both databases read (account_id, date)
# newest first; "IN (SELECT ...)" would make them sort all of the user's mail.
HAND_INBOX_ACCOUNTS = "SELECT id FROM mail_account WHERE user_id = $1"
HAND_INBOX = f"""
WITH page AS (
  SELECT m.id, m.subject, m.date, m.from_address, m.folder_id FROM message m
  WHERE m.account_id IN ({{accounts}})
  ORDER BY m.date DESC, m.id DESC LIMIT {PAGE + 1})
SELECT p.id, p.subject, p.date, p.from_address, f.name AS folder,
       (SELECT {{agg}}(x.record_id) FROM message_link x WHERE x.message_id = p.id) AS record_ids
FROM page p JOIN folder f ON f.id = p.folder_id
ORDER BY p.date DESC, p.id DESC
"""


def _hand_sql(template: str, pg: bool, accounts: int = 0) -> str:
    sql = template.replace("{accounts}", ", ".join(f"${n}" for n in range(1, accounts + 1)))
    if pg:
        return sql.replace("{agg}", "array_agg")
    return re.sub(r"\$(\d+)", r"?\1", sql.replace("{agg}", "group_concat"))


# ---------------------------------------------------------------------------------- timing

def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


class Results:
    """Samples (ms) per (scenario, variant), per round."""

    def __init__(self) -> None:
        self.rounds: dict[tuple[str, str], list[list[float]]] = {}
        self.cpu: dict[tuple[str, str], list[float]] = {}

    def add(self, key: tuple[str, str], round_: int, ms: float, cpu_ms: float) -> None:
        rounds = self.rounds.setdefault(key, [])
        while len(rounds) <= round_:
            rounds.append([])
        rounds[round_].append(ms)
        self.cpu.setdefault(key, []).append(cpu_ms)

    def all(self, key: tuple[str, str]) -> list[float]:
        return [s for r in self.rounds[key] for s in r]


class Measured(float):
    """A variant's own measure of its wall time (ms): the client process times its requests."""


async def interleaved(results: Results, scenario: str, variants: dict[str, Callable[[], Awaitable[object]]],
                      runs: int, round_: int) -> None:
    names = list(variants)
    for run in range(runs):
        shift = run % len(names)
        for name in names[shift:] + names[:shift]:
            began, cpu = time.perf_counter(), time.process_time()
            outcome = await variants[name]()
            elapsed = (time.perf_counter() - began) * 1000
            results.add((scenario, name), round_, float(outcome) if isinstance(outcome, Measured) else elapsed,
                        (time.process_time() - cpu) * 1000)


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class QueryLog(logging.Handler):
    """Collects the SQL statements Tortoise sends (its DEBUG log) while installed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.statements: list[tuple[str, list]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "%s: %s" and isinstance(record.args, tuple) and len(record.args) == 2:
            self.statements.append((str(record.args[0]), list(record.args[1] or [])))

    def __enter__(self) -> QueryLog:
        logger = logging.getLogger("tortoise.db_client")
        self._level = logger.level
        logger.addHandler(self)
        logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger("tortoise.db_client")
        logger.removeHandler(self)
        logger.setLevel(self._level)


class GcWatch:
    """Durations of the cyclic garbage collector's passes, by generation, while installed."""

    def __init__(self) -> None:
        self.passes: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._began = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.passes[info["generation"]].append((time.perf_counter() - self._began) * 1000)

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def summary(self) -> str:
        return "; ".join(
            f"gen{g} {len(t)} passes, median {statistics.median(t):.2f} ms, max {max(t):.1f} ms, total {sum(t):.0f} ms"
            for g, t in self.passes.items() if t)


def _records(value: object) -> list[int]:
    if value is None:
        return []
    if isinstance(value, str):  # SQLite's group_concat
        return sorted(int(v) for v in value.split(","))
    return sorted(value)  # type: ignore[arg-type]


async def measure(url: str, runs: int, rounds: int, profile: bool, profile_runs: int, gc_freeze: bool) -> None:
    pg = _is_pg(url)
    data_dir = Path(tempfile.mkdtemp(prefix="bench_views-"))
    settings = Settings(database_url=url, data_dir=data_dir, secret_key=generate_key(), sync_enabled=False,
                        log_level="WARNING")
    app = create_app(settings, open_db=True)
    sock = _free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", http="httptools", loop="none",
                                           log_level="warning", access_log=False))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.02)
    raw_pg: asyncpg.Connection | None = None
    raw_lite: sqlite3.Connection | None = None
    client_process: asyncio.subprocess.Process | None = None
    try:
        # The app's lifespan connected the ORM (global fallback): the same connections serve
        # the HTTP requests and the in-process variants below.
        services = app.state.services
        schema = build_schema(settings)
        users = await User.all().order_by("id")
        owner, colleague = users[BUSY_USER], users[COLLEAGUE]
        record = await CrmRecord.filter(organisation_id=owner.organisation_id).order_by("id").first()
        assert record is not None and record.owner_id == owner.id
        field = "contact" if record.kind == RecordKind.CONTACT else "lead"
        tokens = {u.id: "Bearer " + (await issue_token(u, "bench_views"))[1] for u in (owner, colleague)}
        conn = connections.get("default")
        (total,), = (await conn.execute_query("SELECT count(*) FROM message"))[1]
        (links,), = (await conn.execute_query(
            f"SELECT count(*) FROM message_link WHERE record_id = {record.id}"))[1]
        ((mine,),) = (
            await conn.execute_query(
                "SELECT count(*) FROM message m JOIN mail_account a ON a.id = m.account_id "
                f"WHERE a.user_id = {owner.id}"
            )
        )[1]
        print(f"{'PostgreSQL' if pg else 'SQLite'} {url}: {total} messages, busy {field} {record.id} has "
              f"{links} links, busy user {owner.id} has {mine} messages; server on 127.0.0.1:{port}; "
              f"load average {os.getloadavg()[0]:.2f}")

        if pg:  # with the server settings the app's connections have (plan_cache_mode…)
            app_connection = tortoise_config(url)["connections"]["default"]
            server_settings = (app_connection.get("credentials", {}).get("server_settings", {})
                               if isinstance(app_connection, dict) else {})
            raw_pg = await asyncpg.connect(_dsn(url), server_settings=server_settings or None)
            print(f"  raw SQL connection server settings: {server_settings or 'defaults'}")
        else:
            raw_lite = sqlite3.connect(_sqlite_path(url))
        hand_related, hand_accounts = _hand_sql(HAND_RELATED, pg), _hand_sql(HAND_INBOX_ACCOUNTS, pg)
        hand_inbox = {n: _hand_sql(HAND_INBOX, pg, n) for n in range(1, 5)}

        async def raw(sql: str, *args: object) -> list[dict]:
            if raw_pg is not None:
                return [dict(r) for r in await raw_pg.fetch(sql, *args)]
            cursor = raw_lite.execute(sql, args)  # type: ignore[union-attr]
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

        async def raw_inbox(viewer: User) -> list[dict]:
            accounts = [r["id"] for r in await raw(hand_accounts, viewer.id)]
            return await raw(hand_inbox[len(accounts)], *accounts)

        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60)

        async def http(query: str, variables: dict, viewer: User) -> dict:
            response = await client.post("/graphql", json={"query": query, "variables": variables},
                                         headers={"Authorization": tokens[viewer.id]})
            body = response.json()
            assert response.status_code == 200 and not body.get("errors"), body
            return body["data"]

        async def gql(query: str, variables: dict, viewer: User) -> dict:
            result = await schema.execute(query, variables, context_value=Context(
                services=services, authorization=tokens[viewer.id]))
            assert not result.errors, result.errors
            return result.data  # type: ignore[return-value]

        async def orm_related(viewer: User) -> tuple:
            user = await authenticate(tokens[viewer.id])
            await get_record(user, record.id, record.kind)
            page = await views.related_page(user, record.id, first=PAGE, record_verified=True)
            return page, await asyncio.gather(
                records_by_message([m.id for m in page.items]),
                owner_by_account(sorted({m.account_id for m in page.items})))

        async def orm_inbox(viewer: User) -> tuple:
            user = await authenticate(tokens[viewer.id])
            page = await views.inbox_page(user, views.InboxFilter(), first=PAGE)
            return page, await asyncio.gather(
                records_by_message([m.id for m in page.items]),
                folder_name_by_id(sorted({m.folder_id for m in page.items})))

        related_query = RELATED_GQL % field
        # The frontend: a process of its own on one keep-alive connection (bench/http_client_process.py).
        client_process = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__).with_name("http_client_process.py")), "127.0.0.1", str(port),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)

        async def remote(command: dict) -> dict:
            client_process.stdin.write(json.dumps(command).encode() + b"\n")  # type: ignore[union-attr]
            await client_process.stdin.drain()  # type: ignore[union-attr]
            return json.loads(await client_process.stdout.readline())  # type: ignore[union-attr]

        async def remote_define(name: str, path: str, query: str, variables: dict, token: str | None = None) -> None:
            headers = {"Authorization": token} if token else {}
            await remote({"op": "define", "name": name, "path": path, "headers": headers,
                          "body": {"query": query, "variables": variables}})

        async def remote_run(name: str) -> Measured:
            answer = await remote({"op": "run", "name": name})
            assert answer["ok"], answer
            return Measured(answer["ms"])

        for viewer in (colleague, owner):
            await remote_define(f"related:{viewer.id}", "/graphql", related_query, {"id": str(record.id)},
                                tokens[viewer.id])
        await remote_define("inbox", "/graphql", INBOX_GQL, {}, tokens[owner.id])
        scenarios: dict[str, dict[str, Callable[[], Awaitable[object]]]] = {}
        for label, viewer in (("related list, colleague", colleague), ("related list, owner", owner)):
            scenarios[label] = {
                "http": lambda v=viewer: remote_run(f"related:{v.id}"),
                "http_loop": lambda v=viewer: http(related_query, {"id": str(record.id)}, v),
                "gql": lambda v=viewer: gql(related_query, {"id": str(record.id)}, v),
                "orm_all": lambda v=viewer: orm_related(v),
                "orm_page": lambda v=viewer: views.related_page(v, record.id, first=PAGE),
                "raw": lambda v=viewer: raw(hand_related, record.id, v.id, v.organisation_id),
            }
        scenarios["SalesInbox, busy user"] = {
            "http": lambda: remote_run("inbox"),
            "http_loop": lambda: http(INBOX_GQL, {}, owner),
            "gql": lambda: gql(INBOX_GQL, {}, owner),
            "orm_all": lambda: orm_inbox(owner),
            "orm_page": lambda: views.inbox_page(owner, views.InboxFilter(), first=PAGE),
            "raw": lambda: raw_inbox(owner),
        }

        async def healthz() -> None:
            assert (await client.get("/healthz")).status_code == 200

        # Same rows and joined data, GraphQL vs hand-written SQL.
        for label, viewer in (("related list, colleague", colleague), ("related list, owner", owner)):
            got = (await http(related_query, {"id": str(record.id)}, viewer))[field]["emails"]
            hand = await raw(hand_related, record.id, viewer.id, viewer.organisation_id)
            assert [(int(m["id"]), m["owner"]["name"], sorted(int(r["id"]) for r in m["linkedRecords"]))
                    for m in got["items"]] == [(r["id"], r["owner_name"], _records(r["record_ids"]))
                                               for r in hand[:PAGE]], label
            assert (got["nextCursor"] is not None) == (len(hand) > PAGE)
            own = sum(m["owner"]["name"] == viewer.name for m in got["items"])
            print(f"  {label}: {len(got['items'])} rows ({own} of the viewer's own), same as the hand-written SQL")
        got = (await http(INBOX_GQL, {}, owner))["salesInbox"]
        hand = await raw_inbox(owner)
        assert [(int(m["id"]), m["folder"], sorted(int(r["id"]) for r in m["linkedRecords"]))
                for m in got["items"]] == [(r["id"], r["folder"], _records(r["record_ids"]))
                                           for r in hand[:PAGE]]
        print(f"  SalesInbox: {len(got['items'])} rows, same as the hand-written SQL")

        # The floor of strawberry + HTTP: the same answers served from memory (bench/canned_graphql.py).
        related_answer = (await http(related_query, {"id": str(record.id)}, colleague))[field]["emails"]
        app.router.routes.append(Route("/canned", canned_app(related_answer, got), methods=["POST"]))

        async def canned(query: str, variables: dict) -> dict:
            response = await client.post("/canned", json={"query": query, "variables": variables})
            body = response.json()
            assert response.status_code == 200 and not body.get("errors"), body
            return body["data"]

        assert (await canned(related_query, {"id": str(record.id)}))[field]["emails"] == related_answer
        assert (await canned(INBOX_GQL, {}))["salesInbox"] == got
        await remote_define("canned:related", "/canned", related_query, {"id": str(record.id)})
        await remote_define("canned:inbox", "/canned", INBOX_GQL, {})
        for label in scenarios:
            name = "canned:inbox" if label.startswith("SalesInbox") else "canned:related"
            scenarios[label]["canned"] = lambda n=name: remote_run(n)

        # Warm-up, then interleaved rounds.
        for variants in scenarios.values():
            for call in variants.values():
                for _ in range(20):
                    await call()
        for _ in range(20):
            await healthz()
        if gc_freeze:  # the proposal: the server freezes what start-up allocated (gc.freeze())
            gc.collect()
            gc.freeze()
            print(f"  gc.freeze(): {gc.get_freeze_count()} objects no longer scanned by the collector")
        results = Results()
        loads = []
        with GcWatch() as collector:
            for round_ in range(rounds):
                loads.append(os.getloadavg()[0])
                for label, variants in scenarios.items():
                    await interleaved(results, label, {**variants}, runs, round_)
                await interleaved(results, "floor", {"healthz": healthz}, runs, round_)
        loads.append(os.getloadavg()[0])
        report(results, scenarios, runs, rounds, loads, pg)
        print(f"  garbage collector during the rounds (client and server share the process): {collector.summary()}")

        # The SalesInbox's filters, each alone (not interleaved; the page query only).
        print(f"\n--- SalesInbox filters of the busy user (views.inbox_page), then the busy {field}'s threads "
              f"(threads.thread_page, first page of 20): p50 / max of {FILTER_RUNS} runs (ms)")
        for label, filters in INBOX_FILTERS:
            samples = []
            for _ in range(FILTER_RUNS + 1):
                began = time.perf_counter()
                page = await views.inbox_page(owner, filters, first=PAGE)
                samples.append((time.perf_counter() - began) * 1000)
            samples = samples[1:]  # the first run warms the cache
            print(f"  {label:<34} {statistics.median(samples):8.2f} {max(samples):8.2f}   {len(page.items)} rows")
        # The related list grouped by conversation: the first page of threads (their summaries).
        for label, viewer in (("colleague", colleague), ("owner", owner)):
            samples = []
            for _ in range(FILTER_RUNS + 1):
                began = time.perf_counter()
                page = await threads.thread_page(viewer, record.id, record_verified=True)
                samples.append((time.perf_counter() - began) * 1000)
            samples = samples[1:]
            print(
                f"  {'threads, ' + label:<34} {statistics.median(samples):8.2f} "
                f"{max(samples):8.2f}   {len(page.items)} threads of "
                f"{sum(t.ref.message_count for t in page.items)} messages"
            )

        # What one request sends, and the related-list query's plan.
        with QueryLog() as log:
            await http(related_query, {"id": str(record.id)}, colleague)
        print(f"\n--- SQL sent by one related-list request (colleague): {len(log.statements)} statements "
              "(a token lookup among them runs once per token_cache_seconds, 5 s, per token)")
        for sql, values in log.statements:
            print(f"  {' '.join(sql.split())[:200]}{' …' if len(' '.join(sql.split())) > 200 else ''}   {values[:6]}")
        with QueryLog() as log:
            await http(INBOX_GQL, {}, owner)
        print(f"\n--- SQL sent by one SalesInbox request: {len(log.statements)} statements")
        for sql, values in log.statements:
            print(f"  {' '.join(sql.split())[:200]}{' …' if len(' '.join(sql.split())) > 200 else ''}   {values[:6]}")
        for label, viewer in (("colleague", colleague), ("owner", owner)):
            with QueryLog() as log:
                await views.related_page(viewer, record.id, first=PAGE)
            page_sql = [(s, v) for s, v in log.statements if "message_link" in s and "LIMIT" in s]
            sql, values = page_sql[0]
            print(f"\n--- the ORM's related-list query ({label}):\n{sql}\n  values {values}")
            explain = "EXPLAIN (ANALYZE, BUFFERS) " if pg else "EXPLAIN QUERY PLAN "
            _, rows = await conn.execute_query(explain + sql, values)
            print(f"--- plan ({label})")
            for row in rows:
                print("  " + (row[0] if pg else " | ".join(str(v) for v in tuple(row))))
        owner_account = (await raw(hand_accounts, owner.id))[0]["id"]
        for label, sql, args in (("hand-written related list (colleague)", hand_related,
                                  (record.id, colleague.id, colleague.organisation_id)),
                                 ("hand-written SalesInbox", hand_inbox[1], (owner_account,))):
            print(f"\n--- plan: {label}")
            if raw_pg is not None:
                for row in await raw_pg.fetch("EXPLAIN (ANALYZE, BUFFERS) " + sql, *args):
                    print("  " + row[0])
            else:
                for row in raw_lite.execute("EXPLAIN QUERY PLAN " + sql, args):  # type: ignore[union-attr]
                    print("  " + " | ".join(str(v) for v in row))

        if profile:
            for label in ("related list, colleague", "SalesInbox, busy user"):
                call = scenarios[label]["gql"]
                profiler = cProfile.Profile()
                profiler.enable()
                for _ in range(profile_runs):
                    await call()
                profiler.disable()
                out = io.StringIO()
                stats = pstats.Stats(profiler, stream=out)
                print(f"\n--- cProfile: {profile_runs} in-process GraphQL executions of {label} (tottime)")
                stats.sort_stats("tottime").print_stats(25)
                print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:12000])
        await client.aclose()
    finally:
        if client_process is not None:
            client_process.stdin.close()  # type: ignore[union-attr]
            await client_process.wait()
        if raw_pg is not None:
            await raw_pg.close()
        if raw_lite is not None:
            raw_lite.close()
        server.should_exit = True
        await serving
        shutil.rmtree(data_dir, ignore_errors=True)


def report(results: Results, scenarios: dict, runs: int, rounds: int, loads: list[float], pg: bool) -> None:
    print(f"\n=== {'PostgreSQL' if pg else 'SQLite'}: {rounds} round(s) x {runs} runs, interleaved; "
          f"load average during rounds {', '.join(f'{x:.2f}' for x in loads)} (2 cores)")
    print(f"  {'scenario':<26} {'variant':<9} {'p50 ms':>8} {'p95 ms':>8} {'min':>7} {'cpu/op':>7}   p50/p95 per round")
    for label in [*scenarios, "floor"]:
        for name in (scenarios.get(label) or {"healthz": None}):
            samples = results.all((label, name))
            per_round = "  ".join(f"{statistics.median(r):.2f}/{_percentile(r, 0.95):.2f}"
                                  for r in results.rounds[label, name])
            print(f"  {label:<26} {name:<9} {statistics.median(samples):8.2f} {_percentile(samples, 0.95):8.2f} "
                  f"{min(samples):7.2f} {statistics.mean(results.cpu[label, name]):7.2f}   {per_round}")
    print("\n  ratios to the hand-written SQL (p50 | p95), overall and per round")
    for label in scenarios:
        raw_all = results.all((label, "raw"))
        for name in ("http", "http_loop", "canned", "gql", "orm_all", "orm_page"):
            mine = results.all((label, name))
            per = "  ".join(
                f"{statistics.median(a) / statistics.median(b):.1f}"
                for a, b in zip(results.rounds[label, name], results.rounds[label, "raw"], strict=True))
            print(f"  {label:<26} {name + '/raw':<13} {statistics.median(mine) / statistics.median(raw_all):6.1f}x |"
                  f" {_percentile(mine, 0.95) / _percentile(raw_all, 0.95):5.1f}x    p50 per round: {per}")
    for label in scenarios:
        http_, raw_ = results.all((label, "http")), results.all((label, "raw"))
        p95 = _percentile(http_, 0.95)
        ratio = statistics.median(http_) / statistics.median(raw_)
        target = (
            f"p95 {p95:.1f} ms {'<' if p95 < 20 else '>='} 20 ms"
            if label.startswith("related")
            else f"p95 {p95:.1f} ms"
        )
        print(f"  target, {label}: {target}; GraphQL/raw p50 {ratio:.1f}x {'<' if ratio < 2 else '>='} 2x")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=200, help="timed runs of each variant per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (their spread is printed)")
    parser.add_argument("--reuse", action="store_true", help="skip loading: the database is ready")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    parser.add_argument("--load-only", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile in-process GraphQL executions")
    parser.add_argument("--profile-runs", type=int, default=200)
    parser.add_argument("--gc-freeze", action="store_true",
                        help="gc.freeze() after the warm-up too (the app's lifespan freezes at start-up "
                             "since eef826d; for older revisions)")
    args = parser.parse_args()
    url = args.database_url
    if not args.reuse:
        seconds = await create_and_load(url, args.messages, SHAPE)
        print(f"loaded {args.messages} messages in {seconds:.0f} s")
    if not args.load_only:
        await measure(url, args.runs, args.rounds, args.profile, args.profile_runs, args.gc_freeze)
    if args.drop:
        await drop_database(url)


if __name__ == "__main__":
    uvloop.run(main())
