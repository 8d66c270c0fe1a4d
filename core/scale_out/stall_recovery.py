"""Handing the jobs of a dead worker to the living ones.

Procrastinate records a heartbeat per worker but does not, by itself, take back the jobs of
a worker that stopped beating: they stay ``doing`` and their locks stay held. Every worker
process therefore runs :func:`recover_stalled_jobs` in a loop: a job whose worker has been
silent for ``stalled_after`` seconds goes back to ``todo`` (procrastinate's ``retry_job``),
to be taken by any worker. When the account already has a waiting twin (its queueing lock
is taken), the stalled job is marked failed instead and the twin runs. Several workers may
race for the same job: the losers' errors are expected and ignored.

A retried job may belong to a worker that was only frozen: the account's fence
(:mod:`.fencing`) keeps the two from running at once.
"""

from __future__ import annotations

import asyncio
import logging

import procrastinate
from procrastinate import jobs as procrastinate_jobs
from procrastinate.exceptions import ConnectorException, UniqueViolation

log = logging.getLogger(__name__)


async def recover_stalled_jobs(app: procrastinate.App, stalled_after: float) -> int:
    """Put back every job of a worker silent for ``stalled_after`` seconds; returns how many."""
    recovered = 0
    for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after):
        assert job.id is not None
        try:
            await app.job_manager.retry_job(job)
            recovered += 1
            log.warning("Job %s (%s %s) of a silent worker goes back to the queue",
                        job.id, job.task_name, job.task_kwargs)
        except UniqueViolation:  # its twin is already waiting: this one ends, the twin runs
            await _finish_failed(app, job)
            recovered += 1
        except ConnectorException as error:  # another worker got there first, or the database blinked
            log.debug("Job %s was not retried: %s", job.id, error)
    return recovered


async def _finish_failed(app: procrastinate.App, job: procrastinate_jobs.Job) -> None:
    try:
        await app.job_manager.finish_job(job, procrastinate_jobs.Status.FAILED, delete_job=False)
        log.warning("Job %s (%s %s) of a silent worker ends: a twin waits", job.id, job.task_name,
                    job.task_kwargs)
    except ConnectorException as error:
        log.debug("Job %s was not ended: %s", job.id, error)


async def keep_recovering(app: procrastinate.App, stalled_after: float, interval: float,
                          stop: asyncio.Event) -> None:
    """Run :func:`recover_stalled_jobs` every ``interval`` seconds until ``stop``."""
    while not stop.is_set():
        try:
            await recover_stalled_jobs(app, stalled_after)
        except Exception:  # the database may be away: try again next round
            log.warning("Could not look for stalled jobs", exc_info=True)
        try:
            await asyncio.wait_for(stop.wait(), timeout=interval)
        except TimeoutError:
            pass
