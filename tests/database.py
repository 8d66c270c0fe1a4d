"""Per-test databases, fast: migrate a template once per session, copy it for each test.

SQLite (the default): the template is a migrated file, copied per test.
PostgreSQL (``SALESINBOX_TEST_DATABASE_URL=postgres://…``): the template is a migrated
database, and each test gets ``CREATE DATABASE … TEMPLATE …``, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from salesinbox.core.db.connection import migrate_database

TEST_DATABASE_ENV = "SALESINBOX_TEST_DATABASE_URL"


def configured_backend() -> str:
    """``"postgres"`` when the tests run against PostgreSQL, else ``"sqlite"``."""
    url = os.environ.get(TEST_DATABASE_ENV, "")
    return "postgres" if url.startswith(("postgres://", "postgresql://")) else "sqlite"


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def _asyncpg_dsn(url: str) -> str:
    return url.replace("postgres://", "postgresql://", 1)


@dataclass
class TemplateDatabase:
    """A migrated template that :meth:`clone` copies for one test."""

    backend: str
    template: str  # SQLite: a file path. PostgreSQL: a database name.
    server_url: str = ""

    @classmethod
    async def create(cls, workdir: Path) -> TemplateDatabase:
        if configured_backend() == "sqlite":
            path = workdir / "template.sqlite3"
            await migrate_database(f"sqlite://{path}")
            return cls("sqlite", str(path))
        server_url = os.environ[TEST_DATABASE_ENV]
        name = f"salesinbox_tmpl_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        await _admin(server_url, f'CREATE DATABASE "{name}"')
        await migrate_database(_with_database(server_url, name))
        return cls("postgres", name, server_url)

    async def clone(self, workdir: Path) -> str:
        """Return the URL of a fresh copy of the template."""
        if self.backend == "sqlite":
            path = workdir / f"test-{uuid.uuid4().hex[:8]}.sqlite3"
            await asyncio.to_thread(shutil.copy, self.template, path)  # with its 0600 mode
            return f"sqlite://{path}"
        name = f"salesinbox_test_{uuid.uuid4().hex[:12]}"
        await _admin(self.server_url, f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"')
        return _with_database(self.server_url, name)

    async def drop_clone(self, url: str) -> None:
        """Drop a PostgreSQL clone (its connections must be closed first)."""
        if self.backend == "postgres":
            name = urlsplit(url).path.lstrip("/")
            await _admin(self.server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    async def destroy(self) -> None:
        if self.backend == "postgres":
            await _admin(self.server_url, f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')


async def _admin(server_url: str, statement: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(server_url), timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()
