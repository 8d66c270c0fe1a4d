"""The API side of the scale-out: a :class:`~..sync.scheduler.SyncScheduler` that runs no
sync itself but hands every request (``syncNow``, a new account, new credentials, an audit
that found gaps) to the workers through the job queue."""

from __future__ import annotations

import asyncio
import logging

from .job_queue import ensure_job_schema, job_app, request_sync

log = logging.getLogger(__name__)


class QueuedSyncs:
    """Queues sync requests for ``salesinbox worker`` processes (``SALESINBOX_SYNC_RUNNER=workers``)."""

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url
        self._app = job_app(database_url, pool_size=2)
        self._pending: set[asyncio.Task[bool]] = set()
        self._open = False

    async def start(self) -> None:
        """Open the job queue (creating its tables if no worker has yet)."""
        await ensure_job_schema(self._database_url)
        await self._app.open_async()
        self._open = True

    async def stop(self) -> None:
        """Send the requests still on their way, then close the job queue."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=5)
        if self._open:
            await self._app.close_async()
            self._open = False

    def request_sync(self, account_id: int) -> None:
        """Queue a sync pass of ``account_id`` now (or bring its waiting one forward)."""
        if not self._open:
            return
        task = asyncio.get_running_loop().create_task(request_sync(self._app, account_id))
        self._pending.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[bool]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Could not queue a sync request: %s", task.exception())
