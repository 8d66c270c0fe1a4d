"""``salesinbox serve [--workers N]``: the server in this process, or in N worker processes
sharing one listening socket (uvicorn's supervisor).

With one worker (the default) the app runs in this process, as it always has. With N > 1:

* the settings must allow it (:func:`check_workers`): the sync off, since each worker would
  run its own in-process scheduler and sync every account N times, and PostgreSQL, since
  on SQLite one process is the deployment (the OAuth refresh lock, for one, is an asyncio
  lock in the process: two API processes sending mail could refresh one grant twice and lose
  a rotated refresh token);
* migrations are applied once, here, before any worker starts; the workers connect without
  migrating (:func:`~salesinbox.schema.asgi_app.create_worker_app`), so N processes never
  race over the migration table;
* each worker listens on a socket of its own on the same port (``SO_REUSEPORT``,
  :mod:`.worker_sockets`): the kernel spreads the connections over the workers;
* Prometheus' multiprocess mode is on, so that any worker's ``/metrics`` shows the sum over
  all of them: ``PROMETHEUS_MULTIPROC_DIR`` if set (the operator's directory, left as it is),
  else a private temporary directory set in the environment before the workers start (they
  are spawned, so they import prometheus-client afresh and see it) and removed at exit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from salesinbox.core.db.connection import migrate_database
from salesinbox.core.errors import invalid_input
from salesinbox.core.observability.metrics import MULTIPROC_VARIABLE
from salesinbox.core.settings import Settings

from .worker_sockets import SocketPerWorker, bind_sockets

#: uvicorn's factory for the workers (a spawned process builds its own app from the environment)
WORKER_APP = "salesinbox.schema.asgi_app:create_worker_app"
log = logging.getLogger("salesinbox.server")


def check_workers(settings: Settings, workers: int) -> None:
    """Refuse a ``--workers`` count the settings cannot run (``INVALID_INPUT`` saying what
    to change): below 1, or above 1 with the in-process sync on or on SQLite."""
    if workers < 1:
        raise invalid_input(f"--workers must be at least 1, not {workers}.")
    if workers == 1:
        return
    if settings.sync_enabled and not settings.syncs_in_workers:
        raise invalid_input(
            f"--workers {workers} needs the sync out of the server: every process would run its own "
            f"sync scheduler and sync every account {workers} times. Set SALESINBOX_SYNC_RUNNER=workers "
            "and run `salesinbox worker` (or SALESINBOX_SYNC_ENABLED=false).")
    if settings.effective_database_url.startswith("sqlite:"):
        raise invalid_input(
            f"--workers {workers} needs PostgreSQL (SALESINBOX_DATABASE_URL=postgres://…): on "
            "SQLite one server process is the deployment (its database locks and the OAuth "
            "token refresh are per process). Use --workers 1 on SQLite.")


@contextmanager
def multiprocess_metrics() -> Iterator[str]:
    """Prometheus multiprocess mode for the workers started inside the block: the directory
    of ``PROMETHEUS_MULTIPROC_DIR`` (kept), or a new private one (0700), set in the
    environment and removed with its files at the end. Yields the directory."""
    given = os.environ.get(MULTIPROC_VARIABLE)
    if given:
        os.makedirs(given, exist_ok=True)
        yield given
        return
    directory = tempfile.mkdtemp(prefix="salesinbox-metrics-")  # mkdtemp: mode 0700
    os.environ[MULTIPROC_VARIABLE] = directory
    try:
        yield directory
    finally:
        os.environ.pop(MULTIPROC_VARIABLE, None)
        shutil.rmtree(directory, ignore_errors=True)


def serve(settings: Settings, *, host: str, port: int, workers: int = 1) -> None:
    """Run the server until it is stopped (SIGINT, SIGTERM): in this process with one worker,
    else migrate once and run ``workers`` processes under uvicorn's supervisor (see the module
    docstring). Raises ``INVALID_INPUT`` (before anything starts) when :func:`check_workers`
    refuses."""
    import uvicorn

    check_workers(settings, workers)
    options = {
        "host": host, "port": port, "log_level": settings.log_level.lower(),
        # None: uvicorn's loggers propagate to our bounded root handler (commands.main).
        "log_config": None,
        "ws_max_size": settings.max_request_bytes,  # uvicorn refuses bigger frames before assembling them
    }
    if workers == 1:
        from salesinbox.schema.asgi_app import create_app

        uvicorn.run(create_app(settings), **options)  # type: ignore[arg-type]
        return
    asyncio.run(migrate_database(settings.effective_database_url))
    try:
        sockets = bind_sockets(host, port, workers)
    except OSError as error:
        raise invalid_input(f"Cannot listen on {host}:{port}: {error.strerror}.") from None
    try:
        with multiprocess_metrics() as directory:
            config = uvicorn.Config(WORKER_APP, factory=True, workers=workers, **options)  # type: ignore[arg-type]
            log.info("Starting %d workers on http://%s:%d, one socket each; Prometheus multiprocess "
                     "directory %s", workers, host, port, directory)
            SocketPerWorker(config, sockets).run()
    finally:
        for sock in sockets:
            sock.close()
