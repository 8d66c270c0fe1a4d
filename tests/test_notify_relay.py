"""The cross-process relay (core/scale_out/notify_relay.py) on a real PostgreSQL: two relays on
one database stand for two server processes, each with its own event bus and token cache.

Absence of duplicates and echoes is shown with markers, not sleeps: a relay's notifications
arrive in the order they were sent, so once a later marker has arrived, a duplicate of an
earlier notification would have arrived before it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING

import asyncpg
import pytest
from prometheus_client import REGISTRY

from salesinbox.core.crm.api_tokens import TokenCache, _Entry, issue_token, revoke_token, token_cache
from salesinbox.core.db.models import Message, User
from salesinbox.core.scale_out import notify_relay
from salesinbox.core.scale_out.notify_payload import MAX_PAYLOAD_BYTES, Inbox, encode_event
from salesinbox.core.scale_out.notify_relay import EVENTS_CHANNEL, NotifyRelay, asyncpg_dsn
from salesinbox.core.scale_out.worker import WorkerProcess
from salesinbox.core.settings import Settings
from salesinbox.core.sync.engine import SyncServices
from salesinbox.core.sync.events import MailEvent

from .servers.messages import build_message
from .test_sync import connect

if TYPE_CHECKING:
    from .servers.fixtures import MailAccount as TestMailbox

pg = pytest.mark.postgres_only  # LISTEN/NOTIFY is PostgreSQL's


def event(n: int, ids: tuple[int, ...] = (), user_id: int = 1) -> MailEvent:
    return MailEvent(kind="NEW_MESSAGES", account_id=n, user_id=user_id, message_ids=ids)


def marker() -> MailEvent:
    return MailEvent(kind="SYNC_STATE", account_id=-1, user_id=1)


class Collector:
    """Everything a subscriber of ``relay`` receives, in a list."""

    def __init__(self) -> None:
        self.events: list[MailEvent] = []
        self.arrived = asyncio.Event()

    async def until(self, done: Callable[[list[MailEvent]], bool], timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not done(self.events):
                self.arrived.clear()
                await self.arrived.wait()

    async def until_marker(self) -> None:
        await self.until(lambda events: bool(events) and events[-1].kind == "SYNC_STATE")


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits


async def started(stack: AsyncExitStack, database_url: str, **kwargs: object) -> NotifyRelay:
    relay = NotifyRelay(database_url, **kwargs)  # type: ignore[arg-type]
    await relay.start()
    stack.push_async_callback(relay.stop)
    return relay


async def subscribed(stack: AsyncExitStack, relay: NotifyRelay) -> Collector:
    collector = Collector()
    queue = await stack.enter_async_context(relay.subscribe(lambda e: True))

    async def drain() -> None:
        while True:
            collector.events.append(await queue.get())
            collector.arrived.set()

    task = asyncio.create_task(drain())
    stack.callback(task.cancel)
    return collector


async def terminate(database_url: str, pid: int | None) -> None:
    assert pid is not None
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        assert await connection.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await connection.close()


def dropped(reason: str, channel: str = "mail_events") -> float:
    value = REGISTRY.get_sample_value("salesinbox_relay_notifications_dropped_total",
                                      {"channel": channel, "reason": reason})
    return value or 0.0


# -- the wire format (no database) -------------------------------------------------------------

def test_a_big_event_is_split_under_the_limit_and_joined_in_order() -> None:
    big = event(3, tuple(range(10**12, 10**12 + 5000)))  # 13-digit ids: 70 kB of them
    payloads = encode_event("sender", 7, big)
    assert len(payloads) >= 9
    assert all(len(p.encode()) <= MAX_PAYLOAD_BYTES < 8000 for p in payloads)
    inbox = Inbox()
    got = [inbox.event(p) for p in payloads]
    assert got[:-1] == [None] * (len(payloads) - 1)
    assert got[-1] == big
    assert inbox.event(payloads[-1]) is None  # delivered again: dropped


def test_the_url_of_tortoise_becomes_a_dsn_of_asyncpg() -> None:
    assert asyncpg_dsn("postgres://u:p@h:5433/db?minsize=1&maxsize=20&sslmode=require") == \
        "postgresql://u:p@h:5433/db?sslmode=require"


# -- events ------------------------------------------------------------------------------------

@pg
async def test_an_event_reaches_every_process_once(database_url: str, stack: AsyncExitStack) -> None:
    one, two = await started(stack, database_url), await started(stack, database_url)
    seen_one, seen_two = await subscribed(stack, one), await subscribed(stack, two)
    sent = MailEvent(kind="NEW_MESSAGES", account_id=4, user_id=9, message_ids=(11, 12),
                     at=datetime(2025, 1, 2, 3, 4, 5, 6789, tzinfo=UTC))
    one.publish(sent)
    one.publish(marker())
    await seen_one.until_marker()
    await seen_two.until_marker()
    assert seen_one.events == seen_two.events == [sent, seen_one.events[-1]]


@pg
async def test_order_is_kept_over_a_thousand_events(database_url: str, stack: AsyncExitStack) -> None:
    one, two = await started(stack, database_url), await started(stack, database_url)
    seen_one, seen_two = await subscribed(stack, one), await subscribed(stack, two)
    began = time.perf_counter()
    for n in range(1000):
        one.publish(event(n, (n,)))
    await seen_two.until(lambda events: len(events) >= 1000)
    elapsed = time.perf_counter() - began
    await seen_one.until(lambda events: len(events) >= 1000)
    one.publish(marker())
    await seen_one.until_marker()
    await seen_two.until_marker()
    assert [e.account_id for e in seen_two.events] == [*range(1000), -1]
    assert [e.account_id for e in seen_one.events] == [*range(1000), -1]
    print(f"1000 events relayed in {elapsed * 1000:.0f} ms")


@pg
async def test_five_thousand_ids_arrive_as_one_event(database_url: str, stack: AsyncExitStack) -> None:
    one, two = await started(stack, database_url), await started(stack, database_url)
    seen = await subscribed(stack, two)
    raw = await asyncpg.connect(asyncpg_dsn(database_url))  # counts the notifications themselves
    stack.push_async_callback(raw.close)
    payloads: list[str] = []
    await raw.add_listener(EVENTS_CHANNEL, lambda *args: payloads.append(args[3]))
    big = event(5, tuple(range(10**9, 10**9 + 5000)))
    one.publish(event(4))
    one.publish(big)
    one.publish(event(6))
    one.publish(marker())
    await seen.until_marker()
    assert [e.account_id for e in seen.events] == [4, 5, 6, -1]  # one event, in its place
    assert seen.events[1] == big
    async with asyncio.timeout(5):
        while not any(json.loads(p)["a"] == -1 for p in payloads):
            await asyncio.sleep(0.01)
    parts = [json.loads(p) for p in payloads if json.loads(p)["a"] == 5]
    assert len(parts) == 8 and all(len(p) <= MAX_PAYLOAD_BYTES for p in payloads)


@pg
async def test_what_is_published_before_stop_is_sent(database_url: str, stack: AsyncExitStack) -> None:
    one = NotifyRelay(database_url)
    await one.start()
    two = await started(stack, database_url)
    seen = await subscribed(stack, two)
    for n in range(300):
        one.publish(event(n))
    await one.stop()
    one.publish(event(999))  # after stop: dropped, counted
    await seen.until(lambda events: len(events) >= 300)
    assert [e.account_id for e in seen.events] == list(range(300))
    assert dropped("stopped") >= 1


# -- token changes -----------------------------------------------------------------------------

def listened(cache: TokenCache) -> list[int]:
    calls: list[int] = []
    cache.add_listener(calls.append)
    return calls


@pg
async def test_a_token_change_reaches_the_other_process_once(
    database_url: str, stack: AsyncExitStack
) -> None:
    cache_one, cache_two = TokenCache(), TokenCache()
    one = await started(stack, database_url, tokens=cache_one)
    two = await started(stack, database_url, tokens=cache_two)
    calls_one, calls_two = listened(cache_one), listened(cache_two)
    user = SimpleNamespace(id=42)  # all the cache reads of a user
    cache_two.put("digest", _Entry(user, 1, None, None, time.monotonic()))  # type: ignore[arg-type]
    arrived = asyncio.Event()
    cache_two.add_listener(lambda _uid: arrived.set())

    began = time.perf_counter()
    cache_one.forget_user(42)
    async with asyncio.timeout(1.0):
        await arrived.wait()
    print(f"token change relayed in {(time.perf_counter() - began) * 1000:.1f} ms")
    assert cache_two.get("digest") is None
    # No echo: two sends a change of its own after applying 42; once one has it, an echo of 42
    # (sent by two before it) would have arrived too.
    back = asyncio.Event()
    cache_one.add_listener(lambda uid: back.set() if uid == 7 else None)
    cache_two.forget_user(7)
    async with asyncio.timeout(1.0):
        await back.wait()
    await asyncio.sleep(0.1)
    assert calls_one == [42, 7] and calls_two == [42, 7]
    assert one.listening and two.listening


@pg
async def test_revoking_a_token_tells_the_other_process(
    admin: User, db: Settings, stack: AsyncExitStack
) -> None:
    row, _clear = await issue_token(admin, "ws")
    await started(stack, db.database_url)  # this process: the process-wide cache
    other_cache = TokenCache()
    await started(stack, db.database_url, tokens=other_cache)
    told = asyncio.Event()
    other_cache.add_listener(lambda uid: told.set() if uid == admin.id else None)
    await revoke_token(admin, row.id)
    async with asyncio.timeout(1.0):
        await told.wait()
    assert token_cache is not other_cache


# -- outages -----------------------------------------------------------------------------------

@pg
async def test_the_listen_connection_comes_back(
    database_url: str, stack: AsyncExitStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=notify_relay.__name__)
    one = await started(stack, database_url)
    two = await started(stack, database_url, reconnect_delay=0.1)
    seen = await subscribed(stack, two)
    before = two.listener_pid
    await terminate(database_url, before)
    async with asyncio.timeout(5):
        while not (two.listening and two.listener_pid not in (None, before)):
            await asyncio.sleep(0.02)
    one.publish(event(1))
    one.publish(marker())
    await seen.until_marker()
    assert [e.account_id for e in seen.events] == [1, -1]
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [m for m in messages if m[0] == "WARNING"] == [
        ("WARNING", "Cross-process relay: lost the LISTEN connection; mail events and token "
         "changes of other processes are missed until it is back")]
    assert ("INFO", "Cross-process relay: listening again") in messages


@pg
async def test_a_killed_sending_connection_is_replaced(database_url: str, stack: AsyncExitStack) -> None:
    one = await started(stack, database_url)
    seen = await subscribed(stack, one)
    one.publish(event(1))
    await seen.until(lambda events: len(events) == 1)
    await terminate(database_url, one.sender_pid)
    before = dropped("database_unavailable")
    one.publish(event(2))
    one.publish(marker())
    await seen.until_marker()
    assert [e.account_id for e in seen.events] == [1, 2, -1]
    assert dropped("database_unavailable") == before


async def on_server(database_url: str, statement: str) -> None:
    """Run ``statement`` on the server's maintenance database."""
    admin = await asyncpg.connect(asyncpg_dsn(database_url.rsplit("/", 1)[0] + "/postgres"))
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


@pg
async def test_the_database_away_drops_events_without_blocking_until_it_is_back(
    database_url: str, stack: AsyncExitStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=notify_relay.__name__)
    one = await started(stack, database_url, reconnect_delay=0.1, max_reconnect_delay=0.3)
    seen = await subscribed(stack, one)
    name = database_url.rsplit("/", 1)[1]
    # The database goes: its connections are cut, and new ones refused.
    await on_server(database_url, f'DROP DATABASE "{name}" WITH (FORCE)')
    before = dropped("database_unavailable")
    began = time.perf_counter()
    for n in range(2000):
        one.publish(event(n))
    publishing = time.perf_counter() - began
    async with asyncio.timeout(10):
        while dropped("database_unavailable") - before < 2000 or one.listening:
            await asyncio.sleep(0.05)
    print(f"2000 publish() calls with the database away: {publishing * 1000:.1f} ms")
    assert publishing < 0.5
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum("the database is unreachable" in w for w in warnings) == 1
    assert sum("lost the LISTEN connection" in w for w in warnings) == 1

    await on_server(database_url, f'CREATE DATABASE "{name}"')  # back (empty: NOTIFY needs no table)
    async with asyncio.timeout(5):
        while not one.listening:
            await asyncio.sleep(0.02)
    one.publish(event(1))
    one.publish(marker())
    await seen.until_marker()
    assert [e.account_id for e in seen.events] == [1, -1]
    async with asyncio.timeout(2):  # logged when the send returns, maybe after the delivery
        while "Cross-process relay: sending again" not in caplog.messages:
            await asyncio.sleep(0.01)
    assert "Cross-process relay: listening again" in caplog.messages
    assert len([r for r in caplog.records if r.levelname == "WARNING"]) == 2  # once per outage


@pg
async def test_stop_returns_while_the_database_is_away(database_url: str) -> None:
    one = NotifyRelay(database_url)
    await one.start()
    await on_server(database_url, f'DROP DATABASE "{database_url.rsplit("/", 1)[1]}" WITH (FORCE)')
    for n in range(10):
        one.publish(event(n))
    async with asyncio.timeout(6):
        await one.stop()
    assert not one.listening


@pg
async def test_a_full_queue_drops_new_events(database_url: str, stack: AsyncExitStack) -> None:
    one = NotifyRelay(database_url, queue_size=10)  # not started: nothing drains the queue
    before = dropped("queue_full")
    for n in range(15):
        one.publish(event(n))
    assert dropped("queue_full") - before == 5
    seen = await subscribed(stack, one)
    await one.start()  # what waited is sent now
    stack.push_async_callback(one.stop)
    await seen.until(lambda events: len(events) == 10)
    assert [e.account_id for e in seen.events] == list(range(10))


# -- a real worker -----------------------------------------------------------------------------

@pg
@pytest.mark.dovecot
async def test_a_workers_sync_events_reach_an_api_process(
    db: Settings, rep: User, mail_account: TestMailbox, services: SyncServices, stack: AsyncExitStack
) -> None:
    """A worker (procrastinate jobs, real Dovecot) publishing through its relay; a subscriber of
    another relay, as in an API process, gets the new mail's event with the stored ids."""
    box = mail_account
    box.dovecot.append_many(box.user, "INBOX", [build_message(to=box.address, subject=f"m{i}") for i in range(3)])
    account = await connect(rep, box, services)
    worker_relay = await started(stack, db.database_url, tokens=TokenCache())
    api_relay = await started(stack, db.database_url, tokens=TokenCache())
    seen = await subscribed(stack, api_relay)
    settings = db.with_overrides(sync_runner="workers", worker_heartbeat_seconds=0.5, worker_port=0)
    worker = WorkerProcess(settings, replace(services, events=worker_relay))
    running = asyncio.create_task(worker.run())
    try:
        await seen.until(lambda events: sum(len(e.message_ids) for e in events
                                            if e.kind == "NEW_MESSAGES") == 3, timeout=30)
        stored = {m.id for m in await Message.filter(folder__account_id=account.id)}
        assert {i for e in seen.events for i in e.message_ids} == stored
        assert {e.account_id for e in seen.events} == {account.id}
    finally:
        worker.stop.set()
        await asyncio.wait_for(running, timeout=30)
