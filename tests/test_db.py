"""The database layer: migrations match the models, both backends work, files are private."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from tortoise import Tortoise
from tortoise.migrations.autodetector import MigrationAutodetector

from salesinbox.core import db as db_module
from salesinbox.core.db import APP_LABEL, migrate_database, open_database, tortoise_config
from salesinbox.core.models import Organisation, User
from salesinbox.core.settings import Settings


async def test_migrations_match_the_models(db: Settings) -> None:
    apps_config = tortoise_config(db.effective_database_url)["apps"]
    changes = await MigrationAutodetector(Tortoise.apps, apps_config).changes()
    assert changes == [], "models changed without a migration: run `tortoise makemigrations`"


async def test_migrated_database_has_every_table(db: Settings) -> None:
    organisation = await Organisation.create(name="Acme")
    await User.create(organisation=organisation, email="a@acme.test", name="A")
    assert await User.filter(organisation=organisation).count() == 1
    models = list(Tortoise.apps[APP_LABEL].values())
    assert len(models) == 15
    for model in models:
        # A query on every model proves its table exists with the declared columns.
        assert await model.all().limit(1) is not None


async def test_fresh_sqlite_data_dir_is_created_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "new" / "data")
    async with open_database(settings):
        assert await User.all().count() == 0
    mode = stat.S_IMODE((tmp_path / "new" / "data").stat().st_mode)
    assert mode == 0o700


async def test_migrate_is_idempotent(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'x.sqlite3'}"
    await migrate_database(url)
    await migrate_database(url)  # nothing pending: must not fail or redo work


def test_tortoise_cli_config_comes_from_settings(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SALESINBOX_DATABASE_URL", "postgres://u@db.example:5432/crm")
    config = db_module.TORTOISE_ORM
    assert config["connections"]["default"] == "postgres://u@db.example:5432/crm"
    assert config["apps"][APP_LABEL]["migrations"] == "salesinbox.core.migrations"
