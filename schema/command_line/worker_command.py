"""``salesinbox worker``: the sync worker process (core/scale_out/worker.py) with its HTTP
face (schema/worker_app.py), stopped cleanly by SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Generator

import uvicorn

from salesinbox.core.db.connection import is_postgres, open_database
from salesinbox.core.errors import ErrorCode, SalesInboxError
from salesinbox.core.observability.metrics import forget_this_process
from salesinbox.core.scale_out.notify_relay import NotifyRelay
from salesinbox.core.scale_out.worker import WorkerProcess
from salesinbox.core.settings import Settings

log = logging.getLogger("salesinbox.worker")


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the worker's handlers stop both."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def check_worker_settings(settings: Settings) -> None:
    """Refuse to start where workers make no sense, naming the fix."""
    if not is_postgres(settings.effective_database_url):
        raise SalesInboxError(ErrorCode.INVALID_INPUT, (
            "The sync worker needs PostgreSQL: set SALESINBOX_DATABASE_URL=postgres://… (on SQLite the "
            "server syncs in its own process; no worker is needed)."))
    if not settings.syncs_in_workers:
        raise SalesInboxError(ErrorCode.INVALID_INPUT, (
            "Set SALESINBOX_SYNC_RUNNER=workers for the workers and for every server process: a server "
            "that syncs in its own process would sync the same accounts beside the workers."))


async def _run(settings: Settings, host: str, port: int) -> None:
    from salesinbox.schema.asgi_app import build_services
    from salesinbox.schema.worker_app import create_worker_app

    async with open_database(settings):
        services = build_services(settings.with_overrides(sync_enabled=False))
        worker = WorkerProcess(settings, services.syncing_services())
        relay = services.events if isinstance(services.events, NotifyRelay) else None
        if relay is not None:
            await relay.start()  # before any pass publishes
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, worker.stop.set)
        server: _QuietServer | None = None
        served: asyncio.Task[None] | None = None
        if port:
            server = _QuietServer(uvicorn.Config(
                create_worker_app(worker), host=host, port=port, log_config=None, lifespan="off",
                access_log=False))
            served = asyncio.create_task(server.serve())
        try:
            await worker.run()
        finally:
            if server is not None and served is not None:
                server.should_exit = True
                await asyncio.gather(served, return_exceptions=True)
            if relay is not None:
                await relay.stop()  # after the last pass: sends its last events
            forget_this_process()


def run_worker(settings: Settings, *, host: str, port: int) -> int:
    """Run the worker until SIGTERM/SIGINT; returns the exit status."""
    check_worker_settings(settings)
    print(f"SalesInbox sync worker: health, readiness and metrics at http://{host}:{port}/"
          if port else "SalesInbox sync worker (no HTTP port)", flush=True)
    asyncio.run(_run(settings, host, port))
    return 0
