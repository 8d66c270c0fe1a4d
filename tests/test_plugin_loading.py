"""Loading provider plugins: SALESINBOX_DISABLED_PLUGINS (a blocked plugin is not even
imported), the error that names a plugin which fails to load, and SALESINBOX_TRACE_HOOKS.

Third-party plugins are installed as pip would (a package and a ``.dist-info`` with its
entry points) in a directory put on ``sys.path``, so importlib.metadata finds them exactly as
it finds an installed wheel's.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pluggy
import pytest

from salesinbox.core import FolderRole, ProviderSpec, hookimpl
from salesinbox.core.plugin_host.plugins import (
    BLOCK_VARIABLE,
    DEFAULT_PLUGINS,
    ENTRYPOINT_GROUP,
    PluginLoadError,
    get_plugin_manager,
)
from salesinbox.core.plugin_host.provider_registry import ProviderDeclarationError, ProviderRegistry
from salesinbox.core.settings import Settings
from salesinbox.schema.asgi_app import build_services

from .served import free_port, serve

BUILTIN_KEYS = ["zoho_mail", "gmail", "outlook", "office365", "yahoo", "custom_imap"]

BETA_PLUGIN = '''
from salesinbox.core import AuthKind, ProviderSpec, Security, ServerEndpoint, hookimpl

@hookimpl
def salesinbox_providers():
    return [ProviderSpec(key="beta_mail", display_name="Beta Mail",
                         imap=ServerEndpoint("imap.beta-mail.example", 993, Security.SSL),
                         smtp=ServerEndpoint("smtp.beta-mail.example", 465, Security.SSL),
                         auth_kinds=(AuthKind.PASSWORD,))]
'''
#: a package whose import fails, as one built against another version of a dependency does
BROKEN_PLUGIN = "raise ImportError(\"cannot import name 'Client' from 'acme_sdk'\")\n"
PACKAGES = ("salesinbox_beta_mail", "salesinbox_broken_mail")


def install(site: Path, distribution: str, entry_point: str, package: str, source: str) -> None:
    """Install ``package`` (its ``__init__`` is ``source``) in ``site`` as the distribution
    ``distribution`` declaring ``entry_point = package`` in the providers' group."""
    (site / package).mkdir(parents=True)
    (site / package / "__init__.py").write_text(source)
    dist_info = site / f"{distribution}-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[{ENTRYPOINT_GROUP}]\n{entry_point} = {package}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A site directory on sys.path (and PYTHONPATH, for child processes) holding Beta Mail
    (entry point ``beta_mail``) and a broken plugin (entry point ``broken_mail``)."""
    site = tmp_path / "site"
    install(site, "salesinbox_beta_mail", "beta_mail", "salesinbox_beta_mail", BETA_PLUGIN)
    install(site, "salesinbox_broken_mail", "broken_mail", "salesinbox_broken_mail", BROKEN_PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    yield site
    for package in PACKAGES:
        sys.modules.pop(package, None)


def test_a_broken_plugin_stops_the_start_with_a_message_naming_it_and_the_way_out(site: Path) -> None:
    with pytest.raises(PluginLoadError) as raised:
        get_plugin_manager()
    message = str(raised.value)
    assert message.startswith(
        "Provider plugin broken_mail (entry point broken_mail = salesinbox_broken_mail of package "
        "salesinbox_broken_mail) failed to load: ImportError: cannot import name 'Client'")
    assert message.endswith(f"start without it: {BLOCK_VARIABLE}=broken_mail")
    assert isinstance(raised.value.__cause__, ImportError)
    # The names already blocked are kept in the suggestion.
    with pytest.raises(PluginLoadError, match=f"{BLOCK_VARIABLE}=beta_mail,broken_mail$"):
        get_plugin_manager(blocked=["beta_mail"])


@pytest.mark.parametrize("name", ["broken_mail", "salesinbox_broken_mail", " broken_mail "])
def test_a_blocked_plugin_is_not_imported(site: Path, name: str) -> None:
    registry = ProviderRegistry(get_plugin_manager(blocked=[name]))
    assert list(registry.providers()) == [*BUILTIN_KEYS, "beta_mail"]
    assert "salesinbox_broken_mail" not in sys.modules
    assert registry.pm.is_blocked("broken_mail")
    assert registry.pm.register(types.ModuleType("impostor"), name="broken_mail") is None


def test_blocking_a_working_plugin_or_a_builtin_leaves_its_providers_out(site: Path) -> None:
    pm = get_plugin_manager(blocked=["broken_mail", "beta_mail", "salesinbox.plugins.outlook"])
    assert list(ProviderRegistry(pm).providers()) == ["zoho_mail", "gmail", "office365", "yahoo", "custom_imap"]
    assert "salesinbox_beta_mail" not in sys.modules
    assert pm.get_plugin("salesinbox.plugins.outlook") is None


def test_a_block_naming_no_plugin_is_reported(site: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="salesinbox.plugins"):
        get_plugin_manager(blocked=["broken_mail", "brokn_mail", "gmail"])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{BLOCK_VARIABLE} names brokn_mail, gmail, which is no provider plugin")
    assert "salesinbox.plugins.gmail" in warnings[0] and "beta_mail" in warnings[0]
    assert any("broken_mail (entry point" in r.getMessage() and "not loaded" in r.getMessage()
               for r in caplog.records if r.levelno == logging.INFO)


def test_a_broken_builtin_is_named_too(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = "salesinbox.plugins.no_such_plugin"
    monkeypatch.setattr("salesinbox.core.plugin_host.plugins.DEFAULT_PLUGINS", (*DEFAULT_PLUGINS, missing))
    with pytest.raises(PluginLoadError, match=f"{missing} \\(built-in\\) failed to load: ModuleNotFoundError"):
        get_plugin_manager(load_entrypoints=False)
    assert missing not in ProviderRegistry(get_plugin_manager(False, blocked=[missing])).pm.list_name_plugin()


def test_a_misspelt_hook_is_refused_naming_the_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    typo = types.ModuleType("typo_plugin")

    @hookimpl
    def salesinbox_provider() -> list[ProviderSpec]:  # missing "s": no such hook
        return []

    typo.salesinbox_provider = salesinbox_provider  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "typo_plugin", typo)
    monkeypatch.setattr("salesinbox.core.plugin_host.plugins.DEFAULT_PLUGINS", (*DEFAULT_PLUGINS, "typo_plugin"))
    with pytest.raises(PluginLoadError, match="typo_plugin .*unknown hook 'salesinbox_provider'") as raised:
        get_plugin_manager(load_entrypoints=False)
    assert isinstance(raised.value.__cause__, pluggy.PluginValidationError)
    assert str(raised.value).endswith(f"{BLOCK_VARIABLE}=typo_plugin")


def test_a_bad_declaration_says_how_to_start_without_the_plugin(site: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad"
    install(bad, "salesinbox_bad_mail", "bad_mail", "salesinbox_bad_mail",
            BETA_PLUGIN.replace('"beta_mail"', '"Bad Mail"'))
    monkeypatch.syspath_prepend(str(bad))
    with pytest.raises(ProviderDeclarationError, match="plugin 'bad_mail' declared the malformed provider "
                       f"key 'Bad Mail'.*; start without it: {BLOCK_VARIABLE}=bad_mail$"):
        ProviderRegistry(get_plugin_manager(blocked=["broken_mail"])).providers()
    sys.modules.pop("salesinbox_bad_mail", None)
    registry = ProviderRegistry(get_plugin_manager(blocked=["broken_mail", "bad_mail"]))
    assert "beta_mail" in registry.providers()


def test_the_setting_reaches_the_server_start(site: Path) -> None:
    settings = Settings.from_env({"SALESINBOX_DISABLED_PLUGINS": "broken_mail,beta_mail",
                                  "SALESINBOX_SYNC_ENABLED": "false", "SALESINBOX_SECRET_KEY": ""})
    assert settings.disabled_plugins == ("broken_mail", "beta_mail")
    services = build_services(settings.with_overrides(secret_key=_key()))
    assert list(services.providers.providers()) == BUILTIN_KEYS
    with pytest.raises(PluginLoadError, match="broken_mail"):
        build_services(settings.with_overrides(disabled_plugins=(), secret_key=_key()))


def _key() -> str:
    from salesinbox.core.credentials import generate_key

    return generate_key()


# -- through `salesinbox serve` -------------------------------------------------------------


async def test_the_server_starts_without_a_blocked_broken_plugin(
    site: Path, settings: Settings, admin_token: str, tmp_path: Path
) -> None:
    # ...and a misspelt variable (SALESINBOX_TRACE_HOOK) is reported, not silently ignored.
    log = tmp_path / "serve.log"
    async with serve(settings, log, disabled_plugins="broken_mail", trace_hook="1") as served:
        async with httpx.AsyncClient(base_url=served.http_url) as http:
            response = await http.post("/graphql", json={"query": "{ providers { key } }"},
                                       headers={"Authorization": f"Bearer {admin_token}"})
    assert [p["key"] for p in response.json()["data"]["providers"]] == [*BUILTIN_KEYS, "beta_mail"]
    assert ("WARNING salesinbox.settings: SALESINBOX_TRACE_HOOK is not a SalesInbox setting and is "
            "ignored: did you mean SALESINBOX_TRACE_HOOKS?") in log.read_text()


def test_a_broken_plugin_stops_the_server_naming_the_way_out(site: Path, tmp_path: Path) -> None:
    env = {**os.environ, "SALESINBOX_DATA_DIR": str(tmp_path / "data"), "SALESINBOX_SYNC_ENABLED": "false"}
    env.pop("SALESINBOX_DATABASE_URL", None)
    completed = subprocess.run(
        [sys.executable, "-m", "salesinbox.schema.command_line", "serve", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode != 0
    assert "Provider plugin broken_mail" in completed.stderr
    assert f"start without it: {BLOCK_VARIABLE}=broken_mail" in completed.stderr


# -- tracing --------------------------------------------------------------------------------


def trace_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "salesinbox.plugins.trace"]


def test_tracing_names_the_plugin_behind_each_answer(caplog: pytest.LogCaptureFixture) -> None:
    registry = ProviderRegistry(get_plugin_manager(load_entrypoints=False, trace_hooks=True))
    caplog.set_level(logging.INFO, logger="salesinbox.plugins.trace")
    registry.resolve_endpoints("zoho_mail", "a@zoho.com", {"region": "eu"})
    assert trace_lines(caplog)[-1].startswith(
        "salesinbox_resolve_endpoints(provider='zoho_mail', email='a@zoho.com', "
        "options={'account_type': 'personal', 'region': 'eu'}) answered by plugin "
        "salesinbox.plugins.zoho_mail: ProviderEndpoints(imap=ServerEndpoint(host='imap.zoho.eu'")
    caplog.clear()
    assert registry.folder_names("gmail", FolderRole.SENT)[0] == "[Gmail]/Sent Mail"
    lines = trace_lines(caplog)
    # Gmail declares its folders as data: the core's default answers from its spec, after
    # asking every plugin for its declarations (each plugin's answer is logged).
    assert lines[-1] == ("salesinbox_folder_names(provider='gmail', role=<FolderRole.SENT: 'SENT'>) "
                         "answered by plugin salesinbox.core.plugin_host.default_hooks: "
                         "['[Gmail]/Sent Mail', '[Google Mail]/Sent Mail']")
    assert ("salesinbox_providers() answered by plugin salesinbox.plugins.office365: "
            "ProviderSpec office365") in lines
    caplog.clear()
    registry.resolve_endpoints("custom_imap", "a@b.example")
    assert trace_lines(caplog)[-1] == (
        "salesinbox_resolve_endpoints(provider='custom_imap', email='a@b.example', options={}): "
        "no plugin answered")


def test_tracing_logs_a_plugin_that_raises(caplog: pytest.LogCaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    faulty = types.ModuleType("faulty_plugin")

    @hookimpl
    def salesinbox_stores_sent_mail(provider: str) -> bool | None:
        raise KeyError(provider)

    faulty.salesinbox_stores_sent_mail = salesinbox_stores_sent_mail  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "faulty_plugin", faulty)
    monkeypatch.setattr("salesinbox.core.plugin_host.plugins.DEFAULT_PLUGINS", (*DEFAULT_PLUGINS, "faulty_plugin"))
    registry = ProviderRegistry(get_plugin_manager(load_entrypoints=False, trace_hooks=True))
    caplog.set_level(logging.INFO, logger="salesinbox.plugins.trace")
    with pytest.raises(KeyError):
        registry.stores_sent_mail("yahoo")
    assert trace_lines(caplog)[-1] == (
        "salesinbox_stores_sent_mail(provider='yahoo') raised in plugin faulty_plugin: KeyError('yahoo')")


def test_tracing_is_off_by_default_and_changes_no_answer(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="salesinbox.plugins.trace")
    plain = ProviderRegistry(get_plugin_manager(load_entrypoints=False))
    traced = ProviderRegistry(get_plugin_manager(load_entrypoints=False, trace_hooks=True))
    assert trace_lines(caplog) == []
    for registry in (plain, traced):
        assert registry.providers() == plain.providers()
        for key in BUILTIN_KEYS:
            assert registry.folder_names(key, FolderRole.JUNK) == plain.folder_names(key, FolderRole.JUNK)
            assert registry.stores_sent_mail(key) == plain.stores_sent_mail(key)
            assert registry.login_plan(key, "a@b.example", registry.get(key).auth_kinds[0], "smtp") == \
                plain.login_plan(key, "a@b.example", plain.get(key).auth_kinds[0], "smtp")
    assert len(trace_lines(caplog)) > 0
    assert Settings.from_env({"SALESINBOX_TRACE_HOOKS": "1"}).trace_hooks is True
