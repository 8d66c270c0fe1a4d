"""The plugin host (core/plugin_host/plugins.py) and the provider registry (core/plugin_host/provider_registry.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import cast

import pluggy
import pytest

from salesinbox.core import (
    AuthFailureContext,
    AuthKind,
    FolderRole,
    LoginMechanism,
    OAuthServer,
    ProviderOption,
    ProviderSpec,
    Security,
    ServerEndpoint,
    UsernameFormat,
    hookimpl,
)
from salesinbox.core.errors import ErrorCode, SalesInboxError
from salesinbox.core.plugin_host.default_hooks import GENERIC_AUTH_FAILURE_HINT, CoreDefaults
from salesinbox.core.plugin_host.plugins import (
    CORE_DEFAULTS_NAME,
    DEFAULT_PLUGINS,
    ENTRYPOINT_GROUP,
    get_plugin_manager,
)
from salesinbox.core.plugin_host.provider_registry import ProviderDeclarationError, ProviderRegistry

BUILTIN_KEYS = ["zoho_mail", "gmail", "outlook", "office365", "yahoo", "custom_imap"]
THIRDPARTY_DIR = Path(__file__).parent / "thirdparty_provider"


@pytest.fixture
def pm() -> pluggy.PluginManager:
    return get_plugin_manager(load_entrypoints=False)


@pytest.fixture
def registry(pm: pluggy.PluginManager) -> ProviderRegistry:
    return ProviderRegistry(pm)


def spec(key: str = "extra", **changes: object) -> ProviderSpec:
    """A valid provider declaration, changed as the test needs."""
    fields: dict[str, object] = dict(
        key=key,
        display_name="Extra Mail",
        imap=ServerEndpoint("imap.extra.example", 993, Security.SSL),
        smtp=ServerEndpoint("smtp.extra.example", 465, Security.SSL),
        auth_kinds=(AuthKind.PASSWORD,),
    )
    fields.update(changes)
    return ProviderSpec(**fields)  # type: ignore[arg-type]


class Declares:
    """A plugin object that declares the given providers."""

    def __init__(self, *declared: object) -> None:
        self.declared = list(declared)

    @hookimpl
    def salesinbox_providers(self) -> list[object]:
        return self.declared


# -- the manager ----------------------------------------------------------------------------


def test_each_call_builds_a_fresh_manager() -> None:
    first, second = get_plugin_manager(load_entrypoints=False), get_plugin_manager(False)
    assert first is not second
    first.register(Declares(spec()), name="extra")
    assert "extra" in ProviderRegistry(first).providers()
    assert "extra" not in ProviderRegistry(second).providers()


def test_manager_registers_defaults_then_builtins_in_listing_order(
    pm: pluggy.PluginManager, registry: ProviderRegistry
) -> None:
    assert isinstance(pm.get_plugin(CORE_DEFAULTS_NAME), CoreDefaults)
    for module_name in DEFAULT_PLUGINS:
        assert pm.get_plugin(module_name) is sys.modules[module_name]
    assert list(registry.providers()) == BUILTIN_KEYS


def test_core_does_not_import_the_plugins_package_statically() -> None:
    script = textwrap.dedent(
        """
        import sys
        import salesinbox.core, salesinbox.core.plugin_host.plugins, salesinbox.core.plugin_host.provider_registry
        assert not any(m.startswith("salesinbox.plugins") for m in sys.modules), sorted(sys.modules)
        salesinbox.core.plugin_host.plugins.get_plugin_manager(load_entrypoints=False)
        assert "salesinbox.plugins.gmail" in sys.modules
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


# -- declarations ---------------------------------------------------------------------------


def test_two_plugins_declaring_one_key_is_an_error_naming_both(pm: pluggy.PluginManager) -> None:
    pm.register(Declares(spec("gmail")), name="copycat-plugin")
    with pytest.raises(ProviderDeclarationError, match="gmail") as raised:
        ProviderRegistry(pm).providers()
    assert "salesinbox.plugins.gmail" in str(raised.value)
    assert "copycat-plugin" in str(raised.value)


@pytest.mark.parametrize("key", ["Gmail", "1mail", "acme-mail", "", " acme", "a" * 41, "acme.mail"])
def test_a_malformed_key_is_an_error(pm: pluggy.PluginManager, key: str) -> None:
    pm.register(Declares(spec(key)), name="bad-key-plugin")
    with pytest.raises(ProviderDeclarationError, match="malformed provider key"):
        ProviderRegistry(pm).providers()


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ({"key": "dict_is_not_a_spec"}, "not a ProviderSpec"),
        (spec(auth_kinds=()), "no auth_kinds"),
        (spec(imap=None), "no preset servers"),
        (spec(domains=("localhost",)), "malformed email domain"),
        (spec(domains=("gmail.com",)), "claimed by providers 'gmail' and 'extra'"),
        (
            spec(options=(ProviderOption("dc", "Region", (("us", "US"),), default="eu"),)),
            "not one of its choices",
        ),
        (spec(folder_names={"OUTBOX": ("Out",)}), "folder_names has the unknown role 'OUTBOX'"),
        (spec(folder_names={FolderRole.SENT: "Sent"}), r"folder_names\[SENT\] must be a non-empty"),
        (spec(folder_names={FolderRole.SENT: ()}), r"folder_names\[SENT\] must be a non-empty"),
        (spec(folder_names={FolderRole.SENT: ("Sent", " ")}), "an empty name"),
        (spec(folder_names={FolderRole.SENT: ("Sent", 7)}), "not text"),
        (spec(folder_names={FolderRole.SENT: ("Sent", "Sent")}), "repeats a name"),
        (spec(folder_names=[(FolderRole.SENT, ("Sent",))]), "must map FolderRole to names"),
        (spec(stores_sent_mail="yes"), "stores_sent_mail must be True or False"),
    ],
)
def test_bad_declarations_are_errors(
    pm: pluggy.PluginManager, declared: object, message: str
) -> None:
    pm.register(Declares(declared), name="bad-plugin")
    with pytest.raises(ProviderDeclarationError, match=message):
        ProviderRegistry(pm).providers()


OAUTH = OAuthServer(
    authorization_url="https://auth.extra.example/authorize",
    token_url="https://auth.extra.example/token",
    scopes=("mail",),
)


def oauth(**changes: object) -> OAuthServer:
    """A valid OAuth declaration, changed as the test needs."""
    return OAuthServer(**{**{f: getattr(OAUTH, f) for f in OAuthServer.__slots__}, **changes})


def test_an_oauth_declaration_is_accepted(pm: pluggy.PluginManager) -> None:
    pm.register(Declares(spec(auth_kinds=(AuthKind.XOAUTH2,), oauth=OAUTH)), name="oauth-plugin")
    registry = ProviderRegistry(pm)
    assert registry.oauth_server("extra") == OAUTH
    with pytest.raises(SalesInboxError) as raised:
        registry.oauth_server("yahoo")
    assert (raised.value.code, raised.value.field) == (ErrorCode.INVALID_INPUT, "provider")
    assert "gmail, outlook, office365, extra" in raised.value.message


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        (oauth(), "auth_kinds lacks AuthKind.XOAUTH2"),
        ("https://auth.extra.example/token", "must be an OAuthServer"),
        (oauth(token_url="http://auth.extra.example/token"), "token_url: .* must use https://"),
        (oauth(authorization_url="auth.extra.example"), "authorization_url: .* not an absolute URL"),
        (oauth(revocation_url="https://u:p@auth.extra.example/r"), "revocation_url"),
        (oauth(token_url="https://auth.extra.example/{tenant}/token"), "default_tenant exactly when"),
        (oauth(default_tenant="common"), "default_tenant exactly when"),
        (
            oauth(token_url="https://a.example/{tenant}/t", default_tenant="a/b"),
            "malformed default_tenant",
        ),
        (oauth(scopes=()), "no scopes"),
        (oauth(scopes=("mail read",)), "scope .* with spaces"),
        (oauth(scopes=("mail", "mail")), "repeats a scope"),
        (oauth(mechanism="PLAIN"), "unknown SASL mechanism"),
        (oauth(authorization_params=(("prompt", "x"), ("prompt", "y"))), "repeated"),
        (oauth(authorization_params=(("redirect_uri", "https://evil.example"),)), "the core sets"),
        (oauth(authorization_params=(("prompt",),)), "pairs of strings"),
        (oauth(address_claims=()), "no address_claims"),
        (oauth(setup_url="http://console.extra.example"), "setup_url"),
    ],
)
def test_bad_oauth_declarations_are_errors(
    pm: pluggy.PluginManager, declared: object, message: str
) -> None:
    kinds = (AuthKind.PASSWORD,) if message.startswith("auth_kinds") else (AuthKind.XOAUTH2,)
    pm.register(Declares(spec(auth_kinds=kinds, oauth=declared)), name="bad-oauth-plugin")
    with pytest.raises(ProviderDeclarationError, match=f"'bad-oauth-plugin', provider 'extra'.*{message}"):
        ProviderRegistry(pm).providers()


def test_a_single_spec_instead_of_a_list_is_an_error(pm: pluggy.PluginManager) -> None:
    class ReturnsBareSpec:
        @hookimpl
        def salesinbox_providers(self) -> ProviderSpec:
            return spec()

    pm.register(ReturnsBareSpec(), name="bare-plugin")
    with pytest.raises(ProviderDeclarationError, match="'bare-plugin'.*list of ProviderSpec"):
        ProviderRegistry(pm).providers()


def test_get_unknown_provider_lists_the_known_keys(registry: ProviderRegistry) -> None:
    with pytest.raises(SalesInboxError) as raised:
        registry.get("hotmail")
    error = raised.value
    assert error.code == ErrorCode.UNKNOWN_PROVIDER
    assert error.field == "provider"
    assert "'hotmail'" in error.message
    for key in BUILTIN_KEYS:
        assert key in error.message


def test_get_known_provider(registry: ProviderRegistry) -> None:
    assert registry.get("gmail").display_name == "Gmail"


# -- detection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        ("alice@gmail.com", "gmail"),
        ("  Alice@GMAIL.COM ", "gmail"),
        ("alice@googlemail.com", "gmail"),
        ("alice@gmail.com.", "gmail"),
        ("bob@outlook.com", "outlook"),
        ("bob@hotmail.com", "outlook"),
        ("bob@Live.com", "outlook"),
        ("bob@msn.com", "outlook"),
        ("bob@hotmail.co.uk", "outlook"),
        ("carol@yahoo.com", "yahoo"),
        ("carol@yahoo.co.uk", "yahoo"),
        ("carol@yahoo.fr", "yahoo"),
        ("carol@ymail.com", "yahoo"),
        ("carol@rocketmail.com", "yahoo"),
        ("dan@zoho.com", "zoho_mail"),
        ("dan@zohomail.com", "zoho_mail"),
        ("dan@zohomail.eu", "zoho_mail"),
        ("erin@contoso.onmicrosoft.com", "office365"),
        ("frank@example.com", None),
        ("frank@notgmail.com", None),
        ("frank@yahoo.co.jp", None),  # Yahoo! JAPAN is another company with other servers
        ("frank@com", None),
        ("no-at-sign", None),
        ("@gmail.com", None),
        ("frank@", None),
        ("", None),
    ],
)
def test_detect_provider(registry: ProviderRegistry, email: str, expected: str | None) -> None:
    assert registry.detect_provider(email) == expected


def test_detect_prefers_the_most_specific_domain(pm: pluggy.PluginManager) -> None:
    pm.register(Declares(spec("tenant_mail", domains=("contoso.onmicrosoft.com",))), name="t")
    registry = ProviderRegistry(pm)
    assert registry.detect_provider("a@contoso.onmicrosoft.com") == "tenant_mail"
    assert registry.detect_provider("a@fabrikam.onmicrosoft.com") == "office365"


# -- options and endpoints ------------------------------------------------------------------


def test_options_default_when_absent_empty_or_none(registry: ProviderRegistry) -> None:
    expected = {"region": "com", "account_type": "personal"}
    assert registry.validate_options("zoho_mail", None) == expected
    assert registry.validate_options("zoho_mail", {"region": "", "account_type": None}) == expected
    assert registry.validate_options("zoho_mail", {"region": " eu "}) == {
        "region": "eu",
        "account_type": "personal",
    }
    assert registry.validate_options("gmail", {}) == {}


def test_unknown_option_names_the_allowed_options(registry: ProviderRegistry) -> None:
    with pytest.raises(SalesInboxError) as raised:
        registry.resolve_endpoints("zoho_mail", "a@zoho.com", {"datacenter": "eu"})
    assert raised.value.code == ErrorCode.INVALID_INPUT
    assert "'datacenter'" in raised.value.message
    assert "region, account_type" in raised.value.message


def test_option_for_a_provider_without_options(registry: ProviderRegistry) -> None:
    with pytest.raises(SalesInboxError, match="Gmail has no option 'region'") as raised:
        registry.resolve_endpoints("gmail", "a@gmail.com", {"region": "eu"})
    assert raised.value.code == ErrorCode.INVALID_INPUT


def test_option_value_outside_the_choices_names_the_allowed_values(
    registry: ProviderRegistry,
) -> None:
    with pytest.raises(SalesInboxError) as raised:
        registry.resolve_endpoints("zoho_mail", "a@zoho.com", {"region": "uk"})
    error = raised.value
    assert error.code == ErrorCode.INVALID_INPUT
    assert error.field == "options.region"
    assert "'uk'" in error.message
    assert "com, eu, in, com.au, jp, ca" in error.message


def test_resolve_endpoints_of_unknown_provider(registry: ProviderRegistry) -> None:
    with pytest.raises(SalesInboxError) as raised:
        registry.resolve_endpoints("nope", "a@b.example")
    assert raised.value.code == ErrorCode.UNKNOWN_PROVIDER


@pytest.mark.parametrize(
    ("region", "account_type", "imap_host", "smtp_host"),
    [
        ("com", "personal", "imap.zoho.com", "smtp.zoho.com"),
        ("eu", "personal", "imap.zoho.eu", "smtp.zoho.eu"),
        ("in", "personal", "imap.zoho.in", "smtp.zoho.in"),
        ("com.au", "personal", "imap.zoho.com.au", "smtp.zoho.com.au"),
        ("jp", "personal", "imap.zoho.jp", "smtp.zoho.jp"),
        ("ca", "personal", "imap.zohocloud.ca", "smtp.zohocloud.ca"),
        ("com", "organisation", "imappro.zoho.com", "smtppro.zoho.com"),
        ("eu", "organisation", "imappro.zoho.eu", "smtppro.zoho.eu"),
        ("in", "organisation", "imappro.zoho.in", "smtppro.zoho.in"),
        ("com.au", "organisation", "imappro.zoho.com.au", "smtppro.zoho.com.au"),
        ("jp", "organisation", "imappro.zoho.jp", "smtppro.zoho.jp"),
        ("ca", "organisation", "imappro.zohocloud.ca", "smtppro.zohocloud.ca"),
    ],
)
def test_zoho_hosts(
    registry: ProviderRegistry, region: str, account_type: str, imap_host: str, smtp_host: str
) -> None:
    endpoints = registry.resolve_endpoints(
        "zoho_mail", "rep@acme.example", {"region": region, "account_type": account_type}
    )
    assert endpoints is not None
    assert endpoints.imap == ServerEndpoint(imap_host, 993, Security.SSL)
    assert endpoints.smtp == ServerEndpoint(smtp_host, 465, Security.SSL)


@pytest.mark.parametrize(
    ("key", "imap", "smtp"),
    [  # the providers' published settings (see each plugin's docstring)
        ("gmail", ("imap.gmail.com", 993, "SSL"), ("smtp.gmail.com", 465, "SSL")),
        (
            "outlook",
            ("outlook.office365.com", 993, "SSL"),
            ("smtp-mail.outlook.com", 587, "STARTTLS"),
        ),
        (
            "office365",
            ("outlook.office365.com", 993, "SSL"),
            ("smtp.office365.com", 587, "STARTTLS"),
        ),
        ("yahoo", ("imap.mail.yahoo.com", 993, "SSL"), ("smtp.mail.yahoo.com", 465, "SSL")),
        ("zoho_mail", ("imap.zoho.com", 993, "SSL"), ("smtp.zoho.com", 465, "SSL")),
    ],
)
def test_presets_match_the_measured_table(
    registry: ProviderRegistry, key: str, imap: tuple[str, int, str], smtp: tuple[str, int, str]
) -> None:
    endpoints = registry.resolve_endpoints(key, "someone@example.com")
    assert endpoints is not None
    assert endpoints.imap == ServerEndpoint(imap[0], imap[1], Security(imap[2]))
    assert endpoints.smtp == ServerEndpoint(smtp[0], smtp[1], Security(smtp[2]))


def test_custom_imap_has_no_endpoints(registry: ProviderRegistry) -> None:
    assert registry.resolve_endpoints("custom_imap", "a@b.example") is None


def test_hooks_receive_a_normalised_email(pm: pluggy.PluginManager) -> None:
    seen: list[str] = []

    class Spy:
        @hookimpl(tryfirst=True)
        def salesinbox_resolve_endpoints(self, provider: str, email: str) -> None:
            seen.append(email)

    pm.register(Spy())
    ProviderRegistry(pm).resolve_endpoints("gmail", "  Alice.Smith@GMail.COM ")
    assert seen == ["Alice.Smith@gmail.com"]


# -- login, folders, sent copies, hints -----------------------------------------------------


def test_login_plan_refuses_an_auth_kind_the_provider_does_not_accept(
    registry: ProviderRegistry,
) -> None:
    with pytest.raises(SalesInboxError) as raised:
        registry.login_plan("outlook", "bob@outlook.com", AuthKind.APP_PASSWORD, "imap")
    assert raised.value.code == ErrorCode.INVALID_INPUT
    assert raised.value.field == "auth_kind"
    assert "XOAUTH2" in raised.value.message


def test_login_plan_accepts_the_auth_kind_as_text(registry: ProviderRegistry) -> None:
    plan = registry.login_plan("gmail", "alice@gmail.com", "XOAUTH2", "smtp")
    assert plan.mechanism == LoginMechanism.XOAUTH2
    assert plan.username == "alice@gmail.com"
    with pytest.raises(SalesInboxError, match="does not accept"):
        registry.login_plan("gmail", "alice@gmail.com", "KERBEROS", "smtp")


def test_login_plan_rejects_an_unknown_protocol(registry: ProviderRegistry) -> None:
    with pytest.raises(ValueError, match="pop3"):
        registry.login_plan("gmail", "alice@gmail.com", AuthKind.APP_PASSWORD, "pop3")


def test_default_login_plan_honours_local_part_usernames(pm: pluggy.PluginManager) -> None:
    pm.register(Declares(spec(username_format=UsernameFormat.LOCAL_PART)), name="local")
    plan = ProviderRegistry(pm).login_plan("extra", "rep@extra.example", AuthKind.PASSWORD, "imap")
    assert (plan.mechanism, plan.username) == (LoginMechanism.LOGIN, "rep")


def test_registry_folder_names_and_sent_copies(registry: ProviderRegistry) -> None:
    assert registry.folder_names("gmail", FolderRole.SENT)[0] == "[Gmail]/Sent Mail"
    assert registry.folder_names("custom_imap", FolderRole.SENT)[0] == "Sent"
    assert registry.stores_sent_mail("gmail") is True
    assert registry.stores_sent_mail("custom_imap") is False
    with pytest.raises(SalesInboxError):
        registry.folder_names("nope", FolderRole.SENT)
    with pytest.raises(SalesInboxError):
        registry.stores_sent_mail("nope")


def test_outlook_and_office365_share_one_exchange_online_declaration(
    pm: pluggy.PluginManager, registry: ProviderRegistry
) -> None:
    """Both run on Exchange Online: the same IMAP server, folders, Sent copies, hints and
    sign-in, one definition of each in plugins/exchange_online.py (they differ in SMTP host,
    domains and tenant), declared by two plugins that can be blocked one at a time."""
    outlook, office365 = registry.get("outlook"), registry.get("office365")
    assert outlook.imap == office365.imap
    assert outlook.smtp != office365.smtp
    assert outlook.folder_names == office365.folder_names
    assert outlook.folder_names[FolderRole.SENT][0] == "Sent Items"
    assert outlook.stores_sent_mail is office365.stores_sent_mail is True
    assert outlook.oauth is not None and office365.oauth is not None
    assert (outlook.oauth.default_tenant, office365.oauth.default_tenant) == (
        "consumers", "organizations")
    assert dataclasses.replace(outlook.oauth, default_tenant="organizations") == office365.oauth
    for kind, fix in ((AuthKind.XOAUTH2, "Set-CASMailbox"), (AuthKind.PASSWORD, "no longer accept passwords")):
        hints = {
            registry.auth_failure_hint(AuthFailureContext(key, kind, protocol))
            for key in ("outlook", "office365") for protocol in ("imap", "smtp")
        }
        assert len(hints) == 1 and fix in hints.pop()
    declared_by = {
        spec.key: impl.plugin_name
        for impl in pm.hook.salesinbox_providers.get_hookimpls()
        for spec in cast(list[ProviderSpec], impl.function())
    }
    assert (declared_by["outlook"], declared_by["office365"]) == (
        "salesinbox.plugins.outlook", "salesinbox.plugins.office365")


def test_hint_for_an_unknown_provider_is_the_generic_one(registry: ProviderRegistry) -> None:
    context = AuthFailureContext("uninstalled_plugin", AuthKind.PASSWORD, "imap")
    assert registry.auth_failure_hint(context) == GENERIC_AUTH_FAILURE_HINT


def test_registry_builds_its_own_manager_when_given_none() -> None:
    assert set(BUILTIN_KEYS) <= set(ProviderRegistry().providers())


# -- third-party plugins through the real entry-point mechanism -----------------------------


def install_thirdparty_plugin(target: Path) -> None:
    """Lay out tests/thirdparty_provider in ``target`` as ``pip install --target`` would.

    The ``.dist-info`` (METADATA + entry_points.txt) is written from the package's own
    pyproject.toml, so importlib.metadata discovers the entry point exactly as it would for
    an installed wheel, without needing network access for a build backend.
    """
    project = tomllib.loads((THIRDPARTY_DIR / "pyproject.toml").read_text())["project"]
    for package in ("salesinbox_acme_mail",):
        shutil.copytree(
            THIRDPARTY_DIR / package,
            target / package,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    dist_info = target / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    sections = []
    for group, entry_points in project["entry-points"].items():
        lines = [f"{name} = {target_ref}" for name, target_ref in entry_points.items()]
        sections.append(f"[{group}]\n" + "\n".join(lines) + "\n")
    (dist_info / "entry_points.txt").write_text("\n".join(sections))


LIST_PROVIDERS_SCRIPT = textwrap.dedent(
    """
    import json
    from salesinbox.core.plugin_host.plugins import get_plugin_manager
    from salesinbox.core.plugin_host.provider_registry import ProviderRegistry

    with_eps = ProviderRegistry(get_plugin_manager())
    without_eps = ProviderRegistry(get_plugin_manager(load_entrypoints=False))
    print(json.dumps({
        "with_entrypoints": list(with_eps.providers()),
        "without_entrypoints": list(without_eps.providers()),
        "detected": with_eps.detect_provider("wile@acme-mail.example"),
        "sent_folders": with_eps.folder_names("acme_mail", "SENT"),
        "imap_host": with_eps.resolve_endpoints("acme_mail", "wile@acme-mail.example").imap.host,
        "oauth_token_url": with_eps.oauth_server("acme_mail").token_url,
        "oauth_scopes": list(with_eps.oauth_server("acme_mail").scopes),
    }))
    """
)


def test_thirdparty_plugin_declares_the_entry_point_group() -> None:
    project = tomllib.loads((THIRDPARTY_DIR / "pyproject.toml").read_text())["project"]
    assert project["entry-points"][ENTRYPOINT_GROUP] == {"acme_mail": "salesinbox_acme_mail"}


def test_installed_thirdparty_plugin_appears_alongside_the_builtins(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    install_thirdparty_plugin(site)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    completed = subprocess.run(
        [sys.executable, "-c", LIST_PROVIDERS_SCRIPT],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    result = json.loads(completed.stdout)
    assert result["with_entrypoints"] == [*BUILTIN_KEYS, "acme_mail"]
    assert result["without_entrypoints"] == BUILTIN_KEYS
    assert result["detected"] == "acme_mail"
    assert result["sent_folders"] == ["Outbox Archive"]
    assert result["imap_host"] == "imap.acme-mail.example"
    # Its OAuth server is declared with no change to the core.
    assert result["oauth_token_url"] == "https://auth.acme-mail.example/oauth2/token"
    assert result["oauth_scopes"] == ["mail.imap", "mail.smtp", "offline"]
