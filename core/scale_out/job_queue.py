"""The job queue that API processes and workers share: procrastinate on the PostgreSQL
database, its task names and queues, and the two ways of putting an account's work on it.

Every job of an account carries two procrastinate locks named after the account: ``lock``
(two jobs of the same lock never run at the same time) and ``queueing_lock`` (at most one
*waiting* job per lock, further defers are refused as already enqueued). So an account has
at most one sync running and one waiting, however many processes ask; the same holds for
its IDLE watcher. Procrastinate's locks alone do not make a sync exclusive when a worker
freezes and its job is handed to another: :mod:`.fencing` does.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit

import procrastinate
import psycopg
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.schema import SchemaManager

log = logging.getLogger(__name__)

SYNC_QUEUE = "sync"
WATCH_QUEUE = "watch"
SYNC_TASK = "salesinbox.sync_account"
WATCH_TASK = "salesinbox.watch_account"
SCHEDULE_TASK = "salesinbox.schedule_accounts"

#: the advisory lock that makes two processes applying the job schema at once wait in turn
_SCHEMA_LOCK = 0x5A1E_0001


def conninfo(database_url: str) -> str:
    """The libpq connection string (for psycopg) of a Tortoise PostgreSQL URL
    (``postgres://``, ``asyncpg://``, ``psql://`` …): the scheme made ``postgresql`` and
    Tortoise's own query parameters (pool sizes and the like) left out."""
    parts = urlsplit(database_url)
    if parts.scheme not in {"postgres", "postgresql", "asyncpg", "psycopg", "psql"}:
        raise ValueError("The sync workers need PostgreSQL (SALESINBOX_DATABASE_URL=postgres://…).")
    return urlunsplit(("postgresql", parts.netloc, parts.path, "", ""))


def job_app(database_url: str, *, pool_size: int = 4) -> procrastinate.App:
    """An (unopened) procrastinate app on the database; the worker adds its tasks to it, an
    API process defers by task name. ``async with app.open_async():`` before use."""
    connector = procrastinate.PsycopgConnector(
        conninfo=conninfo(database_url), min_size=1, max_size=pool_size
    )
    return procrastinate.App(connector=connector)


async def ensure_job_schema(database_url: str) -> bool:
    """Create procrastinate's tables in the database unless they exist; returns whether it
    created them. Safe when several processes start at once (they take turns)."""
    async with await psycopg.AsyncConnection.connect(conninfo(database_url), autocommit=True) as connection:
        await connection.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
        try:
            cursor = await connection.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
            row = await cursor.fetchone()
            if row is not None and row[0]:
                return False
            await connection.execute(SchemaManager.get_schema())
            log.info("Created the job queue's tables (procrastinate)")
            return True
        finally:
            await connection.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))


def sync_lock(account_id: int) -> str:
    """The procrastinate lock (and queueing lock) of an account's sync jobs."""
    return f"sync-{account_id}"


def watch_lock(account_id: int) -> str:
    """The procrastinate lock (and queueing lock) of an account's IDLE-watching jobs."""
    return f"watch-{account_id}"


async def request_sync(
    app: procrastinate.App, account_id: int, *, delay: float = 0.0, failures: int = 0,
    bring_forward: bool = True,
) -> bool:
    """Queue a sync pass of ``account_id`` to start in ``delay`` seconds. If one is already
    waiting, a request for now (``delay`` 0, ``bring_forward``) brings that one forward
    instead, so that ``syncNow`` or new mail never waits for a queued poll or backoff.
    Returns whether a new job was queued."""
    lock = sync_lock(account_id)
    deferrer = app.configure_task(
        SYNC_TASK, queue=SYNC_QUEUE, lock=lock, queueing_lock=lock,
        schedule_in={"seconds": delay} if delay > 0 else None,
    )
    try:
        await deferrer.defer_async(account_id=account_id, failures=failures)
        return True
    except AlreadyEnqueued:
        if delay <= 0 and bring_forward:
            await _bring_forward(app, lock)
        return False


async def request_watch(app: procrastinate.App, account_id: int, *, delay: float = 0.0) -> bool:
    """Queue an IDLE-watching job of ``account_id``; returns whether a new one was queued
    (``False``: one is already waiting)."""
    lock = watch_lock(account_id)
    deferrer = app.configure_task(
        WATCH_TASK, queue=WATCH_QUEUE, lock=lock, queueing_lock=lock,
        schedule_in={"seconds": delay} if delay > 0 else None,
    )
    try:
        await deferrer.defer_async(account_id=account_id)
        return True
    except AlreadyEnqueued:
        return False


# The waiting job is made due now, and the workers are told as procrastinate's own insert
# trigger tells them (same channels, same payload): otherwise they would only see it at
# their next poll.
_BRING_FORWARD = """
WITH moved AS (
    UPDATE procrastinate_jobs SET scheduled_at = NULL
     WHERE queueing_lock = %(lock)s AND status = 'todo' AND scheduled_at > NOW()
 RETURNING id, queue_name
)
SELECT pg_notify('procrastinate_queue_v1#' || queue_name,
                 json_build_object('type', 'job_inserted', 'job_id', id)::text),
       pg_notify('procrastinate_any_queue_v1',
                 json_build_object('type', 'job_inserted', 'job_id', id)::text)
  FROM moved
"""


async def _bring_forward(app: procrastinate.App, lock: str) -> None:
    await app.connector.execute_query_async(_BRING_FORWARD, lock=lock)
