"""Fencing: what makes "one worker at a time per account" hold when a worker freezes.

Procrastinate hands the jobs of a worker that stopped sending heartbeats to another worker
(:mod:`.stall_recovery`). A worker that was only frozen (SIGSTOP, a long pause, a network
partition) then wakes up still running its job, beside the replacement. So before it syncs
or watches an account, a job takes a PostgreSQL *session* advisory lock on the account,
held on one connection per worker process, and every write of the sync checks the lock is
still held (``SyncServices.fence``). A frozen process keeps its session, so its lock stays
held and the replacement waits; a dead one loses its session, PostgreSQL frees the lock, and
the replacement proceeds.

- A killed process: its socket closes and the lock is free at once.
- A lost machine or cable: PostgreSQL notices the silent peer by TCP keepalives, which the
  connection sets for its session (``tcp_keepalives_*``: 10 s idle, 5 s apart, 3 probes):
  the lock is free within about 25 s.
- A connection this process lost (database restart, network cut): every lock it held is
  gone, so every check of those locks fails (:class:`~..sync.folder_sync.FenceLost`) and the
  jobs stop writing; new jobs take their locks on a new connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from enum import IntEnum

import psycopg

from ..errors import ErrorCode, SalesInboxError
from ..sync.folder_sync import FenceLost
from .job_queue import conninfo

log = logging.getLogger(__name__)

#: the server-side keepalives of the lock connection (seconds, probes)
_SERVER_KEEPALIVES = "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"


class FenceKind(IntEnum):
    """What a fence guards (the sync: the only writer of an account's mail). The value is the
    first key of the two-key advisory lock, the account id the second; both are 32-bit, and
    the value is unlikely in another application's advisory locks."""

    SYNC = 0x5A1E_0101


class AccountFences:
    """This process's advisory locks, on one dedicated connection."""

    def __init__(self, database_url: str) -> None:
        self._conninfo = conninfo(database_url)
        self._connection: psycopg.AsyncConnection | None = None
        self._generation = 0  # bumped on each new connection: older locks are gone
        self._held: dict[tuple[FenceKind, int], int] = {}  # key -> generation it was taken in
        self._lock = asyncio.Lock()  # one statement at a time on the connection

    async def close(self) -> None:
        """Release every lock (by closing the connection)."""
        async with self._lock:
            if self._connection is not None:
                await self._connection.close()
            self._connection = None
            self._held.clear()

    async def try_hold(self, kind: FenceKind, account_id: int) -> bool:
        """Take the account's lock of ``kind`` unless another process (or another job of
        this one) holds it; never waits for it. Raises if the database cannot be reached."""
        key = (kind, account_id)
        async with self._lock:
            if key in self._held and self._held[key] == self._generation:
                return False  # a job of this process has it (session locks would nest)
            connection = await self._connected()
            cursor = await connection.execute(
                "SELECT pg_try_advisory_lock(%s, %s)", (int(kind), account_id))
            row = await cursor.fetchone()
            if row is None or not row[0]:
                return False
            self._held[key] = self._generation
            return True

    async def release(self, kind: FenceKind, account_id: int) -> None:
        """Give the lock back (nothing to do if its connection is gone: so is the lock)."""
        key = (kind, account_id)
        async with self._lock:
            generation = self._held.pop(key, None)
            connection = self._connection
            if generation != self._generation or connection is None or connection.closed:
                return
            try:
                await connection.execute("SELECT pg_advisory_unlock(%s, %s)", (int(kind), account_id))
            except psycopg.Error:
                log.warning("Could not release the %s lock of account %s: closing its connection",
                            kind.name, account_id)
                await self._drop_connection()

    async def check(self, kind: FenceKind, account_id: int) -> None:
        """Raise :class:`FenceLost` unless this process still holds the lock (checked on the
        database, over the connection that took it)."""
        key = (kind, account_id)
        async with self._lock:
            connection = self._connection
            if self._held.get(key) != self._generation or connection is None or connection.closed:
                raise FenceLost(f"The {kind.name.lower()} lock of account {account_id} was lost.")
            try:
                cursor = await connection.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND pid = pg_backend_pid() AND classid = %s::bigint::oid AND objid = %s::bigint::oid"
                    " AND objsubid = 2", (int(kind), account_id))
                row = await cursor.fetchone()
            except psycopg.Error as error:
                await self._drop_connection()
                raise FenceLost(f"The lock connection failed ({type(error).__name__}).") from error
            if row is None or row[0] == 0:
                self._held.pop(key, None)
                raise FenceLost(f"The {kind.name.lower()} lock of account {account_id} is no longer held.")

    @property
    def held(self) -> int:
        """How many locks this process holds now."""
        return sum(1 for generation in self._held.values() if generation == self._generation)

    async def _connected(self) -> psycopg.AsyncConnection:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        self._connection = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, application_name="salesinbox-fences",
            keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
            options=_SERVER_KEEPALIVES,
        )
        self._generation += 1
        return self._connection

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        self._held.clear()
        if connection is not None:
            try:
                await connection.close()
            except psycopg.Error:
                pass


@asynccontextmanager
async def exclusive_sync(database_url: str, account_id: int) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """For work outside the workers that writes an account's mail (``salesinbox sync``, a
    backfill from the API): hold the account's sync fence for the block, and yield the check
    to pass as ``SyncServices.fence``. Raises ``CONFLICT`` when a worker's pass holds it."""
    fences = AccountFences(database_url)
    try:
        if not await fences.try_hold(FenceKind.SYNC, account_id):
            raise SalesInboxError(ErrorCode.CONFLICT, (
                f"A sync pass of account {account_id} is running on a worker: try again when it has ended "
                "(usually seconds)."))

        async def check() -> None:
            await fences.check(FenceKind.SYNC, account_id)

        yield check
    finally:
        await fences.close()
