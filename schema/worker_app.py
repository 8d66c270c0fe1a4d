"""The small HTTP face of a ``salesinbox worker``: ``/healthz``, ``/readyz`` and
``/metrics``, served by uvicorn in the worker's own event loop (``SALESINBOX_WORKER_PORT``).

``/readyz`` answers 200 when the database answers, every migration is applied, the job
queue's tables exist and the worker's procrastinate workers and recovery loop run; else 503
with the reason. ``/metrics`` is the API's handler (same token, same metrics: the worker's
sync passes, IDLE connections and token refreshes, and the gauges read from the database).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from tortoise import connections

from salesinbox.core.observability.readiness import check_readiness
from salesinbox.core.scale_out.worker import WorkerProcess
from salesinbox.core.settings import Settings

from .asgi_app import healthz
from .observability import METRICS_PATH, READY_PATH, metrics


@dataclass
class _WorkerServices:
    """What the shared handlers read from ``app.state.services``."""

    settings: Settings


async def worker_readyz(request: Request) -> JSONResponse:
    """``GET /readyz`` of a worker: see the module docstring."""
    worker: WorkerProcess = request.app.state.worker
    readiness = await check_readiness()
    reason = readiness.reason
    if readiness.ready:
        try:
            rows = await connections.get("default").execute_query_dict(
                "SELECT to_regclass('procrastinate_jobs') IS NOT NULL AS present")
            if not rows[0]["present"]:
                reason = "The job queue's tables are missing: start a worker or run 'salesinbox migrate'."
        except Exception:  # noqa: BLE001 - said, not raised
            reason = "The job queue cannot be read."
        if reason is None and not worker.running:
            reason = "The worker's job runners are not running."
    body: dict[str, object] = {"status": "not ready" if reason else "ready", "database": readiness.database}
    if readiness.pending_migrations:
        body["pendingMigrations"] = list(readiness.pending_migrations)
    if reason:
        body["reason"] = reason
    return JSONResponse(body, status_code=503 if reason else 200)


def create_worker_app(worker: WorkerProcess) -> Starlette:
    """The worker's HTTP app (no lifespan: the worker command opens the database)."""
    app = Starlette(routes=[
        Route("/healthz", healthz, methods=["GET"]),
        Route(READY_PATH, worker_readyz, methods=["GET"]),
        Route(METRICS_PATH, metrics, methods=["GET"]),
    ])
    app.state.worker = worker
    app.state.services = _WorkerServices(settings=worker.settings)
    return app
