"""One ``salesinbox worker`` process: two procrastinate workers (one per queue, so that
watching a thousand mailboxes never takes the slots of the sync passes), the stalled-job
recovery loop, and the fences, until asked to stop.

Timing, with the default heartbeat of 1 s: a worker silent for 4 s is presumed dead; the
recovery loop looks every 2 s; a job put back is picked up within the 1 s poll. A killed
worker's accounts therefore resume on another within about 7 s (measured: see README,
Running at scale), and a lost machine's once PostgreSQL drops its session (about 25 s, see
:mod:`.fencing`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from ..settings import Settings
from ..sync.engine import SyncServices
from ..sync.idle import IdleTiming
from ..sync.imap_fetch import shutdown_parse_pool, start_parse_pool
from .account_jobs import AccountJobs, register_account_tasks
from .fencing import AccountFences
from .job_queue import SYNC_QUEUE, WATCH_QUEUE, ensure_job_schema, job_app
from .stall_recovery import keep_recovering

log = logging.getLogger(__name__)

#: seconds a stopping worker waits for its sync passes before cancelling them (a cancelled
#: pass rolls its batch back and is queued again)
SHUTDOWN_GRACE_SECONDS = 20.0
#: seconds between two looks for the jobs of silent workers
RECOVERY_INTERVAL = 2.0


@dataclass
class WorkerProcess:
    """Runs the jobs of this process; :meth:`run` returns after ``stop`` is set."""

    settings: Settings
    services: SyncServices
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    jobs: AccountJobs | None = None
    _running: list[asyncio.Task[None]] = field(default_factory=list)

    async def run(self) -> None:
        """Apply the job schema if missing, start the workers and the recovery loop, queue
        what has nothing queued, and serve until :attr:`stop` is set; then stop gracefully
        (watchers hand their mailboxes back at once, passes get ``SHUTDOWN_GRACE_SECONDS``)."""
        settings = self.settings
        url = settings.effective_database_url
        await ensure_job_schema(url)
        app = job_app(url, pool_size=4)
        register_account_tasks(app)
        fences = AccountFences(url)
        heartbeat = settings.worker_heartbeat_seconds
        self.jobs = jobs = AccountJobs(
            settings, self.services, fences, app,
            idle_timing=IdleTiming(probe_interval=settings.idle_probe_interval),
        )
        async with app.open_async():
            await asyncio.to_thread(start_parse_pool)
            try:
                common = {
                    "additional_context": {"jobs": jobs},
                    "install_signal_handlers": False,  # the command handles signals
                    "update_heartbeat_interval": heartbeat,
                    "stalled_worker_timeout": heartbeat * 4,
                    "fetch_job_polling_interval": 1.0,
                    "abort_job_polling_interval": 1.0,
                    "shutdown_graceful_timeout": SHUTDOWN_GRACE_SECONDS,
                    "delete_jobs": "successful",
                }
                self._running = [
                    asyncio.create_task(app.run_worker_async(
                        queues=[SYNC_QUEUE], concurrency=settings.worker_sync_concurrency,
                        name="sync", **common)),  # type: ignore[arg-type]
                    asyncio.create_task(app.run_worker_async(
                        queues=[WATCH_QUEUE], concurrency=settings.worker_max_watched,
                        name="watch", **common)),  # type: ignore[arg-type]
                    asyncio.create_task(keep_recovering(app, heartbeat * 4, RECOVERY_INTERVAL, self.stop)),
                ]
                queued = await jobs.schedule()
                log.info("Sync worker started: %s sync(s) queued, up to %s passes and %s watched "
                         "mailboxes at once", queued, settings.worker_sync_concurrency,
                         settings.worker_max_watched)
                await self._serve_until_stopped()
            finally:
                jobs.stopping.set()
                for task in self._running:
                    task.cancel()  # procrastinate stops gracefully when its task is cancelled
                await asyncio.gather(*self._running, return_exceptions=True)
                await fences.close()
                await asyncio.to_thread(shutdown_parse_pool)
                log.info("Sync worker stopped")

    async def _serve_until_stopped(self) -> None:
        stop = asyncio.create_task(self.stop.wait())
        await asyncio.wait([stop, *self._running], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        for task in self._running:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise RuntimeError("A part of the sync worker ended") from task.exception()

    @property
    def running(self) -> bool:
        """Whether its procrastinate workers and recovery loop all run."""
        return bool(self._running) and not any(task.done() for task in self._running)
