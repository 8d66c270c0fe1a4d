"""Opening the database and applying migrations (SQLite by default, PostgreSQL to scale out).

Schema changes are made with Tortoise's built-in migrations::

    TORTOISE_ORM=salesinbox.core.db.connection.TORTOISE_ORM tortoise makemigrations   # after editing models
    salesinbox migrate                                                       # apply them

``TORTOISE_ORM`` here is built from the same settings the server uses.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tortoise import Tortoise, connections, get_connections
from tortoise.migrations.api.migrate import migrate
from tortoise.migrations.recorder import MigrationRecorder

from ..private_files import create_private_file, ensure_private_directory, tighten_file
from ..settings import Settings
from .sqlite_transactions import make_sqlite_transactions_cancel_safe

APP_LABEL = "salesinbox"
MODELS_MODULE = "salesinbox.core.db.models"
MIGRATIONS_MODULE = "salesinbox.core.db.migrations"

log = logging.getLogger(__name__)

make_sqlite_transactions_cancel_safe()  # before any transaction of this process


def tortoise_config(database_url: str) -> dict[str, Any]:
    """Build the Tortoise configuration for ``database_url`` with our single app."""
    return {
        "connections": {"default": database_url},
        "apps": {
            APP_LABEL: {
                "models": [MODELS_MODULE],
                "migrations": MIGRATIONS_MODULE,
                "default_connection": "default",
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }


# Files SQLite keeps next to the database; it creates them with the database file's mode.
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def is_postgres(database_url: str) -> bool:
    """Whether ``database_url`` names a PostgreSQL database (any scheme Tortoise takes for it)."""
    return database_url.split("://", 1)[0] in {"postgres", "postgresql", "asyncpg", "psycopg", "psql"}


def sqlite_path(database_url: str) -> Path | None:
    """The file of an SQLite ``database_url``; ``None`` for other databases and ``:memory:``."""
    if not database_url.startswith("sqlite://") or ":memory:" in database_url:
        return None
    return Path(database_url.removeprefix("sqlite://").split("?")[0])


def prepare_sqlite_files(database_url: str) -> None:
    """Make the files of an SQLite ``database_url`` private before SQLite opens them.

    The directory is created 0700 (an existing one is only warned about, see
    :mod:`..private_files`), the database file is created 0600 (or tightened to 0600), and any
    left-over ``-wal``/``-shm``/``-journal`` file is tightened too. SQLite gives the files it
    creates later the database file's mode whatever the umask, so they are 0600 as well.
    Other databases: nothing to do.
    """
    path = sqlite_path(database_url)
    if path is None:
        return
    ensure_private_directory(path.parent)
    create_private_file(path)
    for suffix in SQLITE_COMPANIONS:
        tighten_file(path.with_name(path.name + suffix))


def redacted_url(database_url: str) -> str:
    """``database_url`` without its password, for messages and logs."""
    scheme, sep, rest = database_url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return database_url
    return f"{scheme}{sep}{credentials.partition(':')[0]}:***@{host}"


async def _apply_migrations(database_url: str) -> None:
    try:
        await migrate(config=tortoise_config(database_url))
    finally:
        # Closed quietly: Tortoise.close_connections() logs "Tortoise-ORM shutdown", which
        # would appear at every start, before the server says it is ready.
        await get_connections().close_all(discard=True)


async def migrate_database(database_url: str) -> None:
    """Apply every pending migration to ``database_url`` (creating a private SQLite file if
    needed, see :func:`prepare_sqlite_files`).

    Leaves no connection open.
    """
    prepare_sqlite_files(database_url)
    await _apply_migrations(database_url)


def shipped_migrations() -> list[str]:
    """The names of the migrations this code ships, in order (as Tortoise's loader finds
    them: the modules of the migrations package not starting with ``_`` or ``~``)."""
    package = importlib.import_module(MIGRATIONS_MODULE)
    return sorted(name for _, name, is_package in pkgutil.iter_modules(package.__path__)
                  if not is_package and name[0] not in "_~")


async def pending_migrations() -> list[str]:
    """The shipped migrations the connected database has not recorded as applied (all of
    them when it has no migration table yet), in order. Needs an open ORM connection."""
    recorder = MigrationRecorder(connections.get("default"))
    applied = {key.name for key in await recorder.applied_migrations() if key.app_label == APP_LABEL}
    return [name for name in shipped_migrations() if name not in applied]


@asynccontextmanager
async def open_database(settings: Settings, *, apply_migrations: bool = True) -> AsyncIterator[None]:
    """Connect the ORM to the configured database for the duration of the block.

    With ``apply_migrations`` (the default) pending migrations run first, so a fresh data
    directory becomes a working database. An SQLite database's files are made private first
    (:func:`prepare_sqlite_files`). Connections are visible to every task (the server
    runs requests and sync tasks on the same loop).
    """
    url = settings.effective_database_url
    prepare_sqlite_files(url)
    if apply_migrations:
        await _apply_migrations(url)
    await Tortoise.init(config=tortoise_config(url), _enable_global_fallback=True)
    try:
        yield
    finally:
        await Tortoise.close_connections()


def __getattr__(name: str) -> Any:
    # Computed lazily so that importing this module never reads the environment.
    if name == "TORTOISE_ORM":
        return tortoise_config(Settings.from_env().effective_database_url)
    raise AttributeError(name)
