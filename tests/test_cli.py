"""The salesinbox command: create-admin, issue-token, generate-key, migrate, export-schema."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from salesinbox.core.db import open_database
from salesinbox.core.models import Profile, User
from salesinbox.core.settings import Settings
from salesinbox.core.tokens import authenticate
from salesinbox.schema.api import export_sdl
from salesinbox.cli import main


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SALESINBOX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("SALESINBOX_DATABASE_URL", raising=False)
    return tmp_path / "data"


def _last_line(capsys: pytest.CaptureFixture[str]) -> str:
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("sit_")][-1]


async def _user_for(data_dir: Path, token: str) -> User:
    async with open_database(Settings(data_dir=data_dir)):
        return await authenticate(f"Bearer {token}")


def test_create_admin_then_issue_token(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["create-admin", "--email", "Boss@Acme.test", "--name", "Boss"]) == 0
    token = _last_line(capsys)
    user = asyncio.run(_user_for(data_dir, token))
    assert user.email == "boss@acme.test" and user.profile == Profile.ADMIN
    assert main(["issue-token", "--email", "boss@acme.test"]) == 0
    assert asyncio.run(_user_for(data_dir, _last_line(capsys))).id == user.id


def test_errors_are_one_clear_line(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["create-admin", "--email", "not-an-email"]) == 2
    assert "not a valid email address" in capsys.readouterr().err
    main(["create-admin", "--email", "a@acme.test"])
    assert main(["create-admin", "--email", "a@acme.test"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["issue-token", "--email", "nobody@acme.test"]) == 2


def test_generate_key_and_migrate(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate-key"]) == 0
    assert len(capsys.readouterr().out.strip()) == 44
    assert main(["migrate"]) == 0
    assert (data_dir / "salesinbox.sqlite3").exists()


def test_migrate_creates_private_files_whatever_the_umask(data_dir: Path) -> None:
    previous = os.umask(0o022)
    try:
        assert main(["migrate"]) == 0
        assert main(["create-admin", "--email", "boss@acme.test"]) == 0  # a write, after migrate
    finally:
        os.umask(previous)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in data_dir.iterdir()}
    assert "salesinbox.sqlite3" in modes and set(modes.values()) == {0o600}, modes


def test_export_schema(tmp_path: Path) -> None:
    target = tmp_path / "schema.graphql"
    assert main(["export-schema", "--output", str(target)]) == 0
    assert target.read_text() == export_sdl()


@pytest.mark.dovecot
def test_sync_and_audit_commands(data_dir: Path, capsys: pytest.CaptureFixture[str], mail_account, server_certs,  # noqa: ANN001
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from salesinbox.core.accounts import ConnectAccountInput, ServerInput, connect_account
    from salesinbox.core.credentials import Secret, SecretBox
    from salesinbox.core.mailserver import ConnectPolicy
    from salesinbox.core.plugins import get_plugin_manager
    from salesinbox.core.provider_registry import ProviderRegistry
    from salesinbox.core.providers import Security
    from salesinbox.core.users import create_user

    from .servers.messages import build_message

    monkeypatch.setenv("SALESINBOX_ALLOW_PRIVATE_HOSTS", "true")
    monkeypatch.setenv("SALESINBOX_EXTRA_CA_FILE", str(server_certs.ca_cert))
    box = mail_account
    box.dovecot.append(box.user, "INBOX", build_message(to=box.address))
    settings = Settings.from_env()

    async def setup() -> int:
        async with open_database(settings):
            user = await create_user(None, email="rex@acme.test", name="Rex")
            account = await connect_account(
                user, ConnectAccountInput(provider="custom_imap", email=box.address, secret=Secret(box.password),
                                          incoming=ServerInput("localhost", box.dovecot.ssl_port, Security.SSL),
                                          outgoing=ServerInput("localhost", box.smtp.ssl_port, Security.SSL)),
                registry=ProviderRegistry(get_plugin_manager()), secrets=SecretBox.from_settings(settings),
                policy=ConnectPolicy.from_settings(settings))
            return account.id

    account_id = asyncio.run(setup())
    assert main(["sync", "--account", str(account_id)]) == 0
    out = capsys.readouterr().out
    assert "INBOX: 1 messages (1 new" in out and "COMPLETE" in out
    assert main(["audit", "--account", str(account_id)]) == 0
    assert "INBOX: 1/1 stored (100.00%)" in capsys.readouterr().out
