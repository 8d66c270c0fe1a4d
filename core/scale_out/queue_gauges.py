"""The job queue's depth, read from the database when ``/metrics`` is scraped (any process
of a deployment with workers can answer it, as with the accounts per state)."""

from __future__ import annotations

from tortoise import connections

from ..observability.metrics import JOBS
from .job_queue import SYNC_QUEUE, WATCH_QUEUE

_COUNTS = """
SELECT queue_name, status::text AS status, count(*) AS n
  FROM procrastinate_jobs
 WHERE status IN ('todo', 'doing')
 GROUP BY queue_name, status
"""


async def refresh_queue_gauges() -> None:
    """Set :data:`~..observability.metrics.JOBS` for both queues and both live states (0
    included), through the ORM's connection. Raises if the queue's tables are missing."""
    rows = await connections.get("default").execute_query_dict(_COUNTS)
    counts = {(row["queue_name"], row["status"]): int(row["n"]) for row in rows}
    for queue in (SYNC_QUEUE, WATCH_QUEUE):
        for state in ("todo", "doing"):
            JOBS.labels(queue, state).set(counts.get((queue, state), 0))
