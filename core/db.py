"""Opening the database and applying migrations (SQLite by default, PostgreSQL to scale out).

Schema changes are made with Tortoise's built-in migrations::

    TORTOISE_ORM=salesinbox.core.db.TORTOISE_ORM tortoise makemigrations   # after editing models
    salesinbox migrate                                                       # apply them

``TORTOISE_ORM`` here is built from the same settings the server uses.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tortoise import Tortoise
from tortoise.migrations.api.migrate import migrate

from .settings import Settings

APP_LABEL = "salesinbox"
MODELS_MODULE = "salesinbox.core.models"
MIGRATIONS_MODULE = "salesinbox.core.migrations"

log = logging.getLogger(__name__)


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


def _ensure_sqlite_directory(database_url: str) -> None:
    if database_url.startswith("sqlite://") and ":memory:" not in database_url:
        # 0700: the database holds private mail.
        Path(database_url.removeprefix("sqlite://").split("?")[0]).parent.mkdir(
            mode=0o700, parents=True, exist_ok=True
        )


async def migrate_database(database_url: str) -> None:
    """Apply every pending migration to ``database_url`` (creating the SQLite file if needed).

    Leaves no connection open.
    """
    _ensure_sqlite_directory(database_url)
    try:
        await migrate(config=tortoise_config(database_url))
    finally:
        await Tortoise.close_connections()


@asynccontextmanager
async def open_database(settings: Settings, *, apply_migrations: bool = True) -> AsyncIterator[None]:
    """Connect the ORM to the configured database for the duration of the block.

    With ``apply_migrations`` (the default) pending migrations run first, so a fresh data
    directory becomes a working database. Connections are visible to every task (the server
    runs requests and sync tasks on the same loop).
    """
    url = settings.effective_database_url
    if apply_migrations:
        await migrate_database(url)
    _ensure_sqlite_directory(url)
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
