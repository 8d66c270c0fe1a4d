"""The database layer: migrations match the models, both backends work, files are private."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from tortoise import Tortoise, connections
from tortoise.migrations.autodetector import MigrationAutodetector
from tortoise.transactions import in_transaction

from salesinbox.core.credentials import SecretBox
from salesinbox.core.db import connection as db_module
from salesinbox.core.db.connection import APP_LABEL, migrate_database, open_database, tortoise_config
from salesinbox.core.db.models import Direction, Folder, MailAccount, Message, Organisation, User
from salesinbox.core.db.orm_values import column_values
from salesinbox.core.settings import Settings
from salesinbox.core.sharing import views

from .database import _asyncpg_dsn
from .test_linking import _account


async def test_migrations_match_the_models(db: Settings) -> None:
    apps_config = tortoise_config(db.effective_database_url)["apps"]
    changes = await MigrationAutodetector(Tortoise.apps, apps_config).changes()
    assert changes == [], "models changed without a migration: run `tortoise makemigrations`"


async def test_migrated_database_has_every_table(db: Settings) -> None:
    organisation = await Organisation.create(name="Acme")
    await User.create(organisation=organisation, email="a@acme.test", name="A")
    assert await User.filter(organisation=organisation).count() == 1
    models = list(Tortoise.apps[APP_LABEL].values())
    assert len(models) == 19  # with oauth_client (0007), oauth_grant (0008), oauth_sign_in (0009), thread_node (0011)
    for model in models:
        # A query on every model proves its table exists with the declared columns.
        assert await model.all().limit(1) is not None


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The common umask, which lets SQLite create world-readable files unless we prevent it."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask_022")
async def test_fresh_data_dir_and_database_files_are_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "new" / "data")
    data = settings.data_dir
    # As the server starts: the key is loaded (created) first, then the database is opened.
    SecretBox.from_settings(settings)
    async with open_database(settings):
        await Organisation.create(name="Acme")  # a write, so the WAL files exist
        names = {path.name for path in data.iterdir()}
        assert {"salesinbox.sqlite3-wal", "salesinbox.sqlite3-shm"} <= names
        assert _mode(data) == 0o700
        assert {path.name: _mode(path) for path in data.iterdir()} == dict.fromkeys(names, 0o600)


@pytest.mark.usefixtures("umask_022")
async def test_a_rollback_journal_is_private_too(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'db' / 'x.sqlite3'}?journal_mode=DELETE"
    await migrate_database(url)
    async with open_database(Settings(database_url=url), apply_migrations=False):
        async with in_transaction():
            await Organisation.create(name="Acme")
            journal = tmp_path / "db" / "x.sqlite3-journal"
            assert journal.exists() and _mode(journal) == 0o600


async def test_existing_files_are_tightened_and_an_open_directory_is_only_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Files of ours made by an older version are fixed; a directory the admin chose may be
    shared with other programs, so it is reported with the fix, not changed."""
    data = tmp_path / "shared"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    url = f"sqlite://{data / 'salesinbox.sqlite3'}"
    await migrate_database(url)
    for name in ("salesinbox.sqlite3", "salesinbox.sqlite3-wal", "salesinbox.sqlite3-shm"):
        path = data / name
        path.touch()
        path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="salesinbox.files"):
        async with open_database(Settings(data_dir=data)):
            assert await Organisation.all().count() == 0
    assert _mode(data) == 0o755
    assert f"chmod 700 {data}" in caplog.text
    assert all(_mode(path) == 0o600 for path in data.iterdir())
    assert caplog.text.count("set to 0600") == 3  # the database, its -wal and -shm


async def test_migrate_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'x.sqlite3'}"
    await migrate_database(url)
    await migrate_database(url)  # nothing pending: must not fail or redo work


def test_tortoise_cli_config_comes_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESINBOX_DATABASE_URL", "postgres://u@db.example:5432/crm")
    config = db_module.TORTOISE_ORM
    assert config["connections"]["default"] == "postgres://u@db.example:5432/crm"
    assert config["apps"][APP_LABEL]["migrations"] == "salesinbox.core.db.migrations"


async def _search_index_exists(url: str) -> bool:
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        return bool(await connection.fetchval(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'message_search_trgm_idx'"))
    finally:
        await connection.close()


async def _search_plan(url: str) -> str:
    """The plan of the search condition as core/sharing/views.py sends it (seq scans off: the test
    table is empty, and the question is whether the index can serve the expression)."""
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        async with connection.transaction():
            await connection.execute("SET LOCAL enable_seqscan = off")
            sql = Message.filter(views.text_search("rare text")).sql(params_inline=True)
            rows = await connection.fetch("EXPLAIN " + sql)
        return "\n".join(row[0] for row in rows)
    finally:
        await connection.close()


async def test_postgresql_gets_a_trigram_index_for_search(db: Settings) -> None:
    url = db.effective_database_url
    connection = connections.get("default")
    if not url.startswith("postgres"):
        _, rows = await connection.execute_query("SELECT name FROM sqlite_master WHERE type = 'index'")
        assert "message_search_trgm_idx" not in {row[0] for row in rows}
        return
    assert await _search_index_exists(url)
    plan = await _search_plan(url)
    assert plan.count("Bitmap Index Scan on message_search_trgm_idx") == 3, plan  # subject, name, address


async def test_without_the_right_to_install_pg_trgm_the_migration_still_succeeds(
    db: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    if not db.effective_database_url.startswith("postgres"):
        return  # the index exists on PostgreSQL only
    server = urlsplit(db.effective_database_url)
    suffix = uuid.uuid4().hex[:8]
    role, name = f"salesinbox_plain_{suffix}", f"salesinbox_plain_{suffix}"
    admin = await asyncpg.connect(urlunsplit(server._replace(scheme="postgresql", path="/postgres")))
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        await admin.execute(f'CREATE DATABASE "{name}"')  # owned by the admin: the role may not CREATE EXTENSION
        inside = await asyncpg.connect(urlunsplit(server._replace(scheme="postgresql", path=f"/{name}")))
        try:
            await inside.execute(f'GRANT CREATE, USAGE ON SCHEMA public TO "{role}"')
        finally:
            await inside.close()
        url = urlunsplit(server._replace(netloc=f"{role}@{server.hostname}:{server.port or 5432}", path=f"/{name}"))
        with caplog.at_level(logging.WARNING, logger="salesinbox.db"):
            await migrate_database(url)
        assert "CREATE EXTENSION pg_trgm" in caplog.text
        assert not await _search_index_exists(url)
        async with open_database(db.with_overrides(database_url=url), apply_migrations=False):
            assert await Organisation.all().count() == 0  # migrated all the same
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


async def test_migration_0006_recounts_folders_and_reopens_those_missing_mail(rep: User) -> None:
    """Folders counted by older versions get the store's count; one that says done while it
    holds fewer messages than the server had goes back through its initial sync."""
    migration = import_module("salesinbox.core.db.migrations.0006_folder_counts_from_store")
    account: MailAccount = await _account(rep)
    # INBOX was re-synced under UIDVALIDITY 7 and interrupted: 2 rows of 5, yet "done 5/5".
    short = await Folder.create(account=account, name="INBOX", uidvalidity=7, initial_sync_done=True,
                                messages_total=5, messages_synced=5)
    whole = await Folder.create(account=account, name="Sent", uidvalidity=3, initial_sync_done=True,
                                messages_total=1, messages_synced=0)
    for folder, uidvalidity, uid in ((short, 7, 1), (short, 7, 2), (short, 6, 9), (whole, 3, 4)):
        await Message.create(account=account, folder=folder, uidvalidity=uidvalidity, uid=uid,
                             direction=Direction.RECEIVED, date=datetime.now(UTC))
    connection = connections.get("default")
    await connection.execute_script(migration._RECOUNT)
    await connection.execute_script(migration._REOPEN)
    short, whole = await Folder.get(id=short.id), await Folder.get(id=whole.id)
    assert (short.messages_synced, short.initial_sync_done) == (2, False)
    assert (whole.messages_synced, whole.initial_sync_done) == (1, True)


async def test_a_transaction_cancelled_while_it_begins_wedges_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: a task cancelled while its transaction begins (a stopping scheduler, a
    WebSocket operation ended by its client) used to keep Tortoise's connection lock, and
    every later query of the process waited forever."""
    from tortoise.backends.sqlite.client import SqliteTransactionWrapper

    url = f"sqlite://{tmp_path / 'cancel.sqlite3'}"
    await migrate_database(url)
    beginning = asyncio.Event()
    real_begin = SqliteTransactionWrapper.begin

    async def observed_begin(self: SqliteTransactionWrapper) -> None:
        beginning.set()
        await real_begin(self)

    monkeypatch.setattr(SqliteTransactionWrapper, "begin", observed_begin)
    async with open_database(Settings(database_url=url), apply_migrations=False):

        async def write() -> None:
            async with in_transaction():
                await Organisation.create(name="never")

        for _ in range(3):
            beginning.clear()
            task = asyncio.ensure_future(write())
            await beginning.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Not wedged, and not left inside a transaction nobody owns.
            await asyncio.wait_for(Organisation.create(name="after"), timeout=5)
        async with in_transaction():
            await Organisation.create(name="in a transaction")
        connection = connections.get("default")._connection
        assert not connection.in_transaction
    # Committed for real: another connection sees them; the cancelled ones left nothing.
    async with open_database(Settings(database_url=url), apply_migrations=False):
        names = sorted(await column_values(Organisation.all(), "name"))
    assert names.count("after") == 3 and "in a transaction" in names and "never" not in names


async def test_message_bodies_are_compressed_with_lz4_on_postgresql(db: Settings) -> None:
    url = db.effective_database_url
    if not url.startswith("postgres"):
        return  # SQLite does not compress: migration 0014 does nothing there
    connection = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        rows = await connection.fetch(
            "SELECT attname, attcompression::text AS attcompression FROM pg_attribute "
            "WHERE attrelid = 'message_body'::regclass AND attname IN ('text', 'html', 'headers')")
    finally:
        await connection.close()
    assert {row["attname"]: row["attcompression"] for row in rows} == dict.fromkeys(
        ("text", "html", "headers"), "l")
