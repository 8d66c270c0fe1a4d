"""What a worker's jobs do: sync an account, watch it with IDLE, keep every account queued.

- **sync** (queue ``sync``): one pass of :func:`~..sync.engine.sync_account` under the
  account's sync fence; then the next pass is queued for the poll interval (or, after a
  failure, for the backoff delay), and an IDLE watcher is queued if the server has IDLE.
- **watch** (queue ``watch``): an IDLE connection (:mod:`..sync.idle`, in a thread) that
  queues a sync whenever the server reports news, for ``idle_job_minutes``; then it queues
  its own successor, which any worker may take. A worker watching more than its share of the
  mailboxes hands watch jobs back (new ones at once, running ones at their next check), so
  watching spreads over the running workers within seconds of one joining.
- **schedule** (every minute, once across all workers): queues a sync of every account with
  none queued (a safety net: passes queue their successor themselves) and a watcher of every
  account that should have one; deletes finished jobs older than a day.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import procrastinate
from tortoise.exceptions import DoesNotExist

from ..db.models import MailAccount, SyncState
from ..db.orm_values import column_values
from ..settings import Settings
from ..sync.backoff import backoff_delay
from ..sync.engine import SyncServices, sync_account
from ..sync.folder_sync import FenceLost
from ..sync.idle import IdleTiming, offers_idle, watch_mailbox
from ..sync.scheduler import record_retry, watch_login
from ..transport.server_login import ServerLogin
from .fencing import AccountFences, FenceKind
from .job_queue import SCHEDULE_TASK, SYNC_QUEUE, SYNC_TASK, WATCH_QUEUE, WATCH_TASK, request_sync, request_watch

log = logging.getLogger(__name__)

#: seconds before a job that found its account's fence taken tries again
FENCE_RETRY_SECONDS = 5.0
#: seconds before a watch job handed back by a worker over its share is offered again
HAND_BACK_SECONDS = 2.0
#: seconds between a watcher's checks of its account (deleted, needs new credentials, new
#: login) and of its job (still its own?)
WATCH_CHECK_SECONDS = 10.0
#: seconds a worker's share of the mailboxes (:meth:`AccountJobs.watch_share`) is reused
SHARE_CACHE_SECONDS = 2.0
#: procrastinate workers per worker process: one per queue (see :mod:`.worker`)
WORKERS_PER_PROCESS = 2


@dataclass
class AccountJobs:
    """The state a worker process's jobs share (handed to them as procrastinate context)."""

    settings: Settings
    services: SyncServices
    fences: AccountFences
    app: procrastinate.App
    idle_timing: IdleTiming = IdleTiming()  # frozen: one shared default is safe
    backoff_base: float = 5.0
    backoff_cap: float = 900.0
    #: set when the worker stops: watchers end and queue their successor at once
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    #: the accounts this process watches now
    watching: set[int] = field(default_factory=set)
    #: (loop time, value) of the last :meth:`watch_share`
    _share: tuple[float, int] | None = None

    async def sync(self, account_id: int, failures: int) -> str:
        """Run one pass of ``account_id`` unless another process holds its fence; returns
        what happened (for procrastinate's log): ``busy``, ``gone``, ``fence lost``,
        ``failed`` or the account's sync state."""
        if not await self.fences.try_hold(FenceKind.SYNC, account_id):
            await request_sync(self.app, account_id, delay=FENCE_RETRY_SECONDS, failures=failures)
            return "busy"
        log.info("Sync of account %s: fence taken", account_id)
        try:
            return await self._sync_fenced(account_id, failures)
        finally:
            log.info("Sync of account %s: fence released", account_id)  # said first: the log orders takers
            await self.fences.release(FenceKind.SYNC, account_id)

    async def _sync_fenced(self, account_id: int, failures: int) -> str:
        async def fence() -> None:
            await self.fences.check(FenceKind.SYNC, account_id)

        try:
            report = await sync_account(account_id, replace(self.services, fence=fence))
        except DoesNotExist:
            return "gone"  # disconnected: nothing more to queue
        except FenceLost as lost:
            log.warning("Sync of account %s stopped: %s", account_id, lost)
            return "fence lost"
        except Exception as error:  # noqa: BLE001 - every failure is retried with backoff
            failures += 1
            delay = backoff_delay(failures, base=self.backoff_base, cap=self.backoff_cap)
            log.warning("Sync of account %s failed (%s): retry in %.0f s", account_id, error, delay)
            await record_retry(account_id, str(error), delay)
            await request_sync(self.app, account_id, delay=delay, failures=failures)
            return "failed"
        if report.state != SyncState.NEEDS_REAUTH:  # a refused login waits for new credentials
            await request_sync(self.app, account_id, delay=self.settings.sync_poll_interval)
            if await _offers_idle(account_id):
                await request_watch(self.app, account_id)
        return report.state.value

    async def watch(self, account_id: int, job_id: int, worker_id: int | None) -> str:
        """Watch ``account_id`` with IDLE for ``idle_job_minutes`` (less if the worker stops,
        the account goes, or the job was handed to another worker), queueing a sync on news;
        then queue the next watch job.

        Watching writes nothing, so it takes no fence: a worker that froze and had its job
        handed over finds out at its next check that the job is no longer its own and stops
        (a second IDLE connection for up to ``WATCH_CHECK_SECONDS`` is the price; the syncs it
        may queue are fenced)."""
        if self.stopping.is_set():
            await request_watch(self.app, account_id)
            return "handed back"
        if len(self.watching) >= await self.watch_share():
            await request_watch(self.app, account_id, delay=HAND_BACK_SECONDS)
            return "handed back"
        self.watching.add(account_id)
        try:
            return await self._watch(account_id, job_id, worker_id)
        finally:
            self.watching.discard(account_id)

    async def _watch(self, account_id: int, job_id: int, worker_id: int | None) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.idle_job_minutes * 60
        watcher: _Watcher | None = None
        try:
            while True:
                account = await MailAccount.get_or_none(id=account_id)
                if account is None or account.sync_state == SyncState.NEEDS_REAUTH:
                    return "ended"  # the next successful pass queues a watcher again
                fingerprint = _login_fingerprint(account)
                if watcher is None or watcher.fingerprint != fingerprint or not watcher.alive:
                    if watcher is not None:
                        watcher.stop()
                    login = await watch_login(account_id, self.services, loop)
                    if login is None:
                        return "no IDLE"
                    watcher = _Watcher(account_id, login, fingerprint, self, loop)
                remaining = deadline - loop.time()
                if remaining <= 0 or self.stopping.is_set():
                    break
                try:
                    await asyncio.wait_for(self.stopping.wait(), timeout=min(WATCH_CHECK_SECONDS, remaining))
                except TimeoutError:
                    pass
                if not await _still_running_here(self.app, job_id, worker_id):
                    log.warning("IDLE watching of account %s went to another worker: stopping here", account_id)
                    return "taken over"
                if await self._over_share(account_id):  # a worker joined: give it some mailboxes
                    await request_watch(self.app, account_id, delay=HAND_BACK_SECONDS)
                    return "handed back"
        finally:
            if watcher is not None:
                watcher.stop()
        await request_watch(self.app, account_id)  # the next round, on whichever worker
        return "watched"

    async def _over_share(self, account_id: int) -> bool:
        """Whether this process watches more than its share; if so ``account_id`` leaves the
        count at once (no await after the decision), so that only the excess leaves."""
        share = await self.watch_share()
        if len(self.watching) > share and account_id in self.watching:
            self.watching.discard(account_id)
            return True
        return False

    async def watch_share(self) -> int:
        """The most mailboxes this process should watch: the watchable mailboxes divided
        over the worker processes alive (their heartbeats), rounded up, and never more than
        ``worker_max_watched``. Read at most once per ``SHARE_CACHE_SECONDS``: every watcher
        asks at each check, and a thousand of them would otherwise ask 100 times a second."""
        now = asyncio.get_running_loop().time()
        if self._share is not None and now - self._share[0] < SHARE_CACHE_SECONDS:
            return self._share[1]
        watchable = await MailAccount.exclude(sync_state=SyncState.NEEDS_REAUTH).count()
        alive = await _live_worker_processes(self.app, self.settings.worker_heartbeat_seconds * 4)
        share = max(1, min(math.ceil(watchable / max(alive, 1)), self.settings.worker_max_watched))
        self._share = (now, share)
        return share

    async def schedule(self) -> int:
        """Queue a sync of every account that has none waiting (but those waiting for new
        credentials) and a watcher of every account whose server offers IDLE; returns how
        many syncs were queued."""
        queued = 0
        for account_id in await column_values(MailAccount.exclude(sync_state=SyncState.NEEDS_REAUTH), "id"):
            queued += await request_sync(self.app, account_id, bring_forward=False)
        for account_id, capabilities in await MailAccount.exclude(
                sync_state__in=[SyncState.NEEDS_REAUTH, SyncState.NEW]).values_list("id", "capabilities"):
            if offers_idle(capabilities):
                await request_watch(self.app, account_id)
        return queued


class _Watcher:
    """One IDLE thread for one account, queueing a sync (through the job queue) on news."""

    def __init__(self, account_id: int, login: ServerLogin | Callable[[], ServerLogin], fingerprint: tuple[object, ...],
                 jobs: AccountJobs, loop: asyncio.AbstractEventLoop) -> None:
        self.fingerprint = fingerprint
        self._stop = threading.Event()

        def on_change() -> None:
            def queue() -> None:
                if not jobs.stopping.is_set():
                    task = loop.create_task(request_sync(jobs.app, account_id))
                    task.add_done_callback(_log_failure)

            try:
                loop.call_soon_threadsafe(queue)
            except RuntimeError:  # the loop is closed: the worker has stopped
                pass

        self._thread = threading.Thread(
            target=watch_mailbox, args=(login, jobs.services.policy, on_change, self._stop, jobs.idle_timing),
            name=f"idle-account-{account_id}", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()


def _log_failure(task: asyncio.Task[bool]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("Could not queue a sync after IDLE news: %s", task.exception())


def _login_fingerprint(account: MailAccount) -> tuple[object, ...]:
    """What, when it changes, calls for a new IDLE connection (the secret as stored: a new
    password is a new ciphertext)."""
    return (account.imap_host, account.imap_port, account.imap_security, account.imap_username,
            account.imap_auth_kind, account.imap_secret)


async def _still_running_here(app: procrastinate.App, job_id: int, worker_id: int | None) -> bool:
    row = await app.connector.execute_query_one_async(
        "SELECT count(*) AS n FROM procrastinate_jobs WHERE id = %(id)s AND status = 'doing'"
        " AND worker_id IS NOT DISTINCT FROM %(worker)s", id=job_id, worker=worker_id)
    return int(row["n"]) == 1


async def _offers_idle(account_id: int) -> bool:
    capabilities = await MailAccount.filter(id=account_id).values_list("capabilities", flat=True)
    return any(offers_idle(caps) for caps in capabilities)


async def _live_worker_processes(app: procrastinate.App, within_seconds: float) -> int:
    row = await app.connector.execute_query_one_async(
        "SELECT count(*) AS n FROM procrastinate_workers"
        " WHERE last_heartbeat > NOW() - make_interval(secs => %(seconds)s)", seconds=within_seconds)
    return math.ceil(int(row["n"]) / WORKERS_PER_PROCESS)


def register_account_tasks(app: procrastinate.App) -> None:
    """Add the worker's tasks to ``app``; each finds the process's :class:`AccountJobs` in
    its context (``additional_context["jobs"]``)."""

    @app.task(name=SYNC_TASK, queue=SYNC_QUEUE, pass_context=True)
    async def sync_job(context: procrastinate.JobContext, account_id: int, failures: int = 0) -> str:
        jobs: AccountJobs = context.additional_context["jobs"]
        return await jobs.sync(account_id, failures)

    @app.task(name=WATCH_TASK, queue=WATCH_QUEUE, pass_context=True)
    async def watch_job(context: procrastinate.JobContext, account_id: int) -> str:
        jobs: AccountJobs = context.additional_context["jobs"]
        assert context.job.id is not None
        return await jobs.watch(account_id, context.job.id, context.job.worker_id)

    @app.periodic(cron="* * * * *", periodic_id="schedule")
    @app.task(name=SCHEDULE_TASK, queue=SYNC_QUEUE, pass_context=True)
    async def schedule_job(context: procrastinate.JobContext, timestamp: int) -> int:
        jobs: AccountJobs = context.additional_context["jobs"]
        queued = await jobs.schedule()
        await context.app.job_manager.delete_old_jobs(nb_hours=24, include_failed=True,
                                                      include_cancelled=True, include_aborted=True)
        return queued
