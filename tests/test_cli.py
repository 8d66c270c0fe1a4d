"""The salesinbox command: create-admin, issue-token, generate-key, migrate, export-schema,
check-plugins, worker (its refusals: it runs in tests/test_scale_out_processes.py); its help,
and what it says about the database it uses."""

from __future__ import annotations

import asyncio
import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from salesinbox.core import AuthKind, ProviderSpec, Security, ServerEndpoint, hookimpl
from salesinbox.core.crm.api_tokens import authenticate
from salesinbox.core.db.connection import open_database
from salesinbox.core.db.models import Profile, User
from salesinbox.core.plugin_host.plugins import get_plugin_manager
from salesinbox.core.settings import Settings
from salesinbox.schema.command_line import main
from salesinbox.schema.command_line.plugin_check import check_installed_plugins
from salesinbox.schema.graphql_schema import export_sdl


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


def test_a_worker_refuses_sqlite_and_a_server_that_syncs_itself(
        data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESINBOX_SYNC_RUNNER", "workers")
    assert main(["worker", "--port", "0"]) == 2
    assert "needs PostgreSQL" in capsys.readouterr().err
    monkeypatch.setenv("SALESINBOX_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
    monkeypatch.delenv("SALESINBOX_SYNC_RUNNER")
    assert main(["worker", "--port", "0"]) == 2
    error = capsys.readouterr().err
    assert "SALESINBOX_SYNC_RUNNER=workers" in error and error.splitlines()[-1].startswith("error: ")


def test_a_server_refuses_workers_on_sqlite(data_dir: Path) -> None:
    from salesinbox.core.errors import SalesInboxError
    from salesinbox.schema.asgi_app import build_services

    with pytest.raises(SalesInboxError) as refused:
        build_services(Settings(data_dir=data_dir, sync_runner="workers"))
    assert "needs PostgreSQL" in refused.value.message and "SALESINBOX_SYNC_RUNNER=in-process" in refused.value.message


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
def test_sync_and_audit_commands(data_dir: Path, capsys: pytest.CaptureFixture[str], mail_account, server_certs,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from salesinbox.core.credentials import Secret, SecretBox
    from salesinbox.core.crm.users import create_user
    from salesinbox.core.mail_accounts.accounts import ConnectAccountInput, ServerInput, connect_account
    from salesinbox.core.plugin_host.plugins import get_plugin_manager
    from salesinbox.core.plugin_host.provider_registry import ProviderRegistry
    from salesinbox.core.plugin_host.providers import Security
    from salesinbox.core.transport.server_login import ConnectPolicy

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


def test_help_is_plain_text_listing_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":func:" not in out and ":mod:" not in out
    for command in ("serve", "migrate", "create-admin", "issue-token", "sync", "audit", "generate-key",
                    "export-schema", "check-plugins"):
        assert f"\n    {command} " in out, command  # one line each: name, then its help
    assert "SALESINBOX_DATA_DIR" in out


def test_database_commands_say_which_database(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    database = data_dir / "salesinbox.sqlite3"
    assert main(["create-admin", "--email", "boss@acme.test"]) == 0
    err = capsys.readouterr().err
    assert f"NEW database {database} (from SALESINBOX_DATA_DIR={data_dir})" in err
    assert "If your server runs with another SALESINBOX_DATA_DIR" in err
    assert main(["issue-token", "--email", "boss@acme.test"]) == 0
    captured = capsys.readouterr()
    assert captured.err == f"salesinbox: database {database} (from SALESINBOX_DATA_DIR={data_dir})\n"
    assert captured.out.startswith("sit_") and len(captured.out.splitlines()) == 1  # stdout: the token only
    assert main(["generate-key"]) == 0
    assert capsys.readouterr().err == ""  # no database involved, none named


def test_a_command_logs_no_orm_shutdown(data_dir: Path) -> None:
    env = {**os.environ, "SALESINBOX_DATA_DIR": str(data_dir)}
    command = [sys.executable, "-m", "salesinbox.schema.command_line", "create-admin", "--email", "boss@acme.test"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=True)
    assert "sit_" in done.stdout
    assert "Tortoise-ORM" not in done.stderr, done.stderr
    assert done.stderr.startswith("salesinbox: NEW database")


def test_check_plugins_passes_the_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-plugins"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "PASS  salesinbox.plugins.gmail (built in): gmail; 9/9 checks passed" in lines
    assert lines[-1] == "6 of 6 plugins keep the contract (9 checks per provider)."


class SloppyPlugin:
    """Breaks the contract in two ways the registry accepts: an http help link, STARTTLS on 993."""

    @hookimpl
    def salesinbox_providers(self) -> list[ProviderSpec]:
        return [ProviderSpec(
            key="sloppy_mail", display_name="Sloppy Mail",
            imap=ServerEndpoint("imap.sloppy.example", 993, Security.STARTTLS),
            smtp=ServerEndpoint("smtp.sloppy.example", 465, Security.SSL),
            auth_kinds=(AuthKind.PASSWORD,), help_url="http://help.sloppy.example/imap",
        )]


def test_check_plugins_names_what_a_plugin_gets_wrong() -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(SloppyPlugin(), name="sloppy")
    out = io.StringIO()
    assert check_installed_plugins(out, pm) == 1
    lines = out.getvalue().splitlines()
    assert "PASS  salesinbox.plugins.gmail (built in): gmail; 9/9 checks passed" in lines
    assert "FAIL  sloppy: sloppy_mail; 6/9 checks passed" in lines
    assert "      sloppy_mail: presets_are_complete: imap preset: port 993 is implicit TLS (SSL)" in lines
    assert "      sloppy_mail: help_links_use_https: not an https link: http://help.sloppy.example/imap" in lines
    assert lines[-1] == "6 of 7 plugins keep the contract (9 checks per provider)."


def test_check_plugins_reports_declarations_that_cannot_load() -> None:
    class Duplicate:
        @hookimpl
        def salesinbox_providers(self) -> list[ProviderSpec]:
            return [ProviderSpec(key="gmail", display_name="Not Gmail", imap=None, smtp=None,
                                 auth_kinds=(AuthKind.PASSWORD,), user_supplies_servers=True)]

    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(Duplicate(), name="impostor")
    out = io.StringIO()
    assert check_installed_plugins(out, pm) == 1
    assert out.getvalue().startswith("FAIL  the plugins cannot be loaded: ProviderDeclarationError: ")
    assert "'impostor'" in out.getvalue()


def test_check_plugins_checks_an_installed_thirdparty_plugin(tmp_path: Path) -> None:
    from .test_plugins import install_thirdparty_plugin

    install_thirdparty_plugin(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path / "site"),
                                                                       os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([Path(sys.executable).with_name("salesinbox"), "check-plugins"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PASS  acme_mail (salesinbox-acme-mail 0.1.0): acme_mail; 9/9 checks passed" in done.stdout
    assert "7 of 7 plugins keep the contract" in done.stdout
