"""SQLite transactions that a cancelled task cannot wedge (a fix to Tortoise 1.1.9).

On SQLite, Tortoise serialises transactions on the one connection with an ``asyncio.Lock``:
``SqliteTransactionContext.__aenter__`` takes the lock, then awaits ``BEGIN``. A task
cancelled during that await (a scheduler stopping, a WebSocket operation ended by its
client, a timeout) leaves ``__aenter__`` by the exception, so ``__aexit__`` never runs and
the lock is never released: every later query of the process waits forever (measured: a
storm of cancelled transactions wedged the server after 166 of them). PostgreSQL's pool
has no such lock.

:func:`make_sqlite_transactions_cancel_safe` replaces that ``__aenter__`` with one that, when
entering fails or is cancelled, queues a ROLLBACK behind whatever aiosqlite's thread may
still run for it (a BEGIN issued before the cancellation lands) and then releases the lock,
so the connection is neither wedged nor left inside a transaction nobody owns.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tortoise.backends.sqlite.client import SqliteTransactionContext
from tortoise.connection import get_connections

log = logging.getLogger(__name__)
_PATCHED = "_salesinbox_cancel_safe"


def _log_failed_rollback(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("Rolling back an abandoned SQLite transaction failed: %s", task.exception())


async def _cancel_safe_aenter(self: SqliteTransactionContext) -> Any:
    await self._trxlock.acquire()
    try:
        await self.ensure_connection()
        self.token = get_connections().set(self.connection_name, self.connection)
    except BaseException:
        self._trxlock.release()
        raise
    try:
        await self.connection.begin()
    except BaseException:
        get_connections().reset(self.token)
        # aiosqlite runs queued statements in order on its thread, cancelled or not: a
        # ROLLBACK queued now ends the transaction that a late BEGIN would open (and is a
        # no-op otherwise). It is queued before the lock goes to the next waiter.
        rollback = asyncio.ensure_future(self.connection._connection.rollback())
        rollback.add_done_callback(_log_failed_rollback)
        self._trxlock.release()
        raise
    return self.connection


def make_sqlite_transactions_cancel_safe() -> None:
    """Install the cancellation-safe ``__aenter__`` (idempotent)."""
    if getattr(SqliteTransactionContext.__aenter__, _PATCHED, False):
        return
    setattr(_cancel_safe_aenter, _PATCHED, True)
    SqliteTransactionContext.__aenter__ = _cancel_safe_aenter  # type: ignore[method-assign]
