"""One contract, checked for every registered provider plugin (built-in or installed).

A new provider plugin gets all of these checks for free: presets complete, ports and TLS
consistent, auth kinds declared, hints present and free of secrets, help links on https,
folder names for every role, and every combination of its options resolving.
"""

from __future__ import annotations

import itertools
import re

import pytest

from salesinbox.core import (
    AuthFailureContext,
    AuthKind,
    FolderRole,
    LoginMechanism,
    OAuthMechanism,
    OAuthServer,
    ProviderEndpoints,
    ProviderSpec,
    Security,
    ServerEndpoint,
)
from salesinbox.core.oauth_urls import RESERVED_AUTHORIZATION_PARAMS, TENANT_PATTERN, fill_tenant
from salesinbox.core.plugins import get_plugin_manager
from salesinbox.core.provider_registry import PROVIDER_KEY_PATTERN, ProviderRegistry

# Built at collection time so each provider gets its own test ids; entry points are loaded
# so that third-party plugins installed in this environment are held to the contract too.
REGISTRY = ProviderRegistry(get_plugin_manager(load_entrypoints=True))
SPECS = REGISTRY.providers()
PROVIDERS = [pytest.param(spec, id=key) for key, spec in SPECS.items()]

SSL_PORTS = {993, 465}  # IMAPS, SMTPS (RFC 8314 implicit TLS)
STARTTLS_PORTS = {143, 587}  # IMAP, submission
HOSTNAME = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
SECRET = "hunter2-S3CR3T"
EMAIL = "rep@customer-domain.example"


def option_combinations() -> list[pytest.ParameterSet]:
    """Every combination of every provider's option values (one empty one without options)."""
    params = []
    for key, spec in SPECS.items():
        names = [option.name for option in spec.options]
        values = [[value for value, _label in option.choices] for option in spec.options]
        for combination in itertools.product(*values):
            options = dict(zip(names, combination, strict=True))
            label = ",".join(f"{n}={v}" for n, v in options.items()) or "no-options"
            params.append(pytest.param(spec, options, id=f"{key}-{label}"))
    return params


def assert_endpoint_valid(endpoint: ServerEndpoint) -> None:
    assert HOSTNAME.fullmatch(endpoint.host), f"not a lower-case host name: {endpoint.host!r}"
    assert 1 <= endpoint.port <= 65535
    assert endpoint.security != Security.NONE, "presets must use TLS"
    if endpoint.port in SSL_PORTS:
        assert endpoint.security == Security.SSL, f"port {endpoint.port} is implicit TLS"
    if endpoint.port in STARTTLS_PORTS:
        assert endpoint.security == Security.STARTTLS, f"port {endpoint.port} is STARTTLS"


def assert_endpoints_valid(endpoints: ProviderEndpoints | None) -> None:
    assert isinstance(endpoints, ProviderEndpoints)
    assert_endpoint_valid(endpoints.imap)
    assert_endpoint_valid(endpoints.smtp)


def test_there_are_providers_to_check() -> None:
    assert {"zoho_mail", "gmail", "outlook", "office365", "yahoo", "custom_imap"} <= set(SPECS)
    assert {"gmail", "outlook", "office365"} <= {key for key, spec in SPECS.items() if spec.oauth}


@pytest.mark.parametrize("spec", PROVIDERS)
def test_declaration_is_well_formed(spec: ProviderSpec) -> None:
    assert PROVIDER_KEY_PATTERN.fullmatch(spec.key)
    assert spec.display_name.strip()
    assert spec.auth_kinds, "declare at least one way to log in"
    assert len(set(spec.auth_kinds)) == len(spec.auth_kinds)
    assert all(isinstance(kind, AuthKind) for kind in spec.auth_kinds)
    for domain in spec.domains:
        assert domain == domain.strip().lower() and "@" not in domain and "." in domain
    option_names = [option.name for option in spec.options]
    assert len(set(option_names)) == len(option_names)
    for option in spec.options:
        values = [value for value, _label in option.choices]
        assert values and len(set(values)) == len(values)
        assert option.default in values
        assert option.label.strip()


@pytest.mark.parametrize("spec", PROVIDERS)
def test_presets_are_complete_unless_the_user_supplies_servers(spec: ProviderSpec) -> None:
    default_endpoints = REGISTRY.resolve_endpoints(spec.key, EMAIL)
    if spec.user_supplies_servers:
        assert spec.imap is None and spec.smtp is None
        assert default_endpoints is None
        return
    assert spec.imap is not None and spec.smtp is not None
    assert_endpoint_valid(spec.imap)
    assert_endpoint_valid(spec.smtp)
    assert_endpoints_valid(default_endpoints)
    # The declared presets are what the default options resolve to (what a form pre-fills).
    assert default_endpoints == ProviderEndpoints(imap=spec.imap, smtp=spec.smtp)


@pytest.mark.parametrize(("spec", "options"), option_combinations())
def test_every_option_combination_resolves(spec: ProviderSpec, options: dict[str, str]) -> None:
    endpoints = REGISTRY.resolve_endpoints(spec.key, EMAIL, options)
    if spec.user_supplies_servers:
        assert endpoints is None
    else:
        assert_endpoints_valid(endpoints)


@pytest.mark.parametrize("spec", PROVIDERS)
def test_help_links_use_https(spec: ProviderSpec) -> None:
    for url in (spec.help_url, spec.app_password_url):
        assert url is None or url.startswith("https://"), url
    if not spec.user_supplies_servers:
        assert spec.help_url, "a preset provider links to its own IMAP/SMTP help page"
        if AuthKind.APP_PASSWORD in spec.auth_kinds:
            assert spec.app_password_url, "say where to create the app password"


@pytest.mark.parametrize("spec", PROVIDERS)
@pytest.mark.parametrize("protocol", ["imap", "smtp"])
def test_auth_failure_hint_is_present_and_repeats_no_secret(
    spec: ProviderSpec, protocol: str
) -> None:
    for kind in spec.auth_kinds:
        context = AuthFailureContext(
            provider=spec.key,
            auth_kind=kind,
            protocol=protocol,
            server_message=f"[AUTHENTICATIONFAILED] Invalid credentials ({SECRET})",
        )
        hint = REGISTRY.auth_failure_hint(context)
        assert isinstance(hint, str) and len(hint.strip()) >= 20
        assert SECRET not in hint
        assert "AUTHENTICATIONFAILED" not in hint, "the core shows the server's text itself"


@pytest.mark.parametrize("spec", PROVIDERS)
@pytest.mark.parametrize("protocol", ["imap", "smtp"])
def test_login_plan_for_every_accepted_auth_kind(spec: ProviderSpec, protocol: str) -> None:
    for kind in spec.auth_kinds:
        plan = REGISTRY.login_plan(spec.key, EMAIL, kind, protocol)
        assert plan.username.strip()
        expected = LoginMechanism.XOAUTH2 if kind == AuthKind.XOAUTH2 else LoginMechanism.LOGIN
        assert plan.mechanism == expected


@pytest.mark.parametrize("spec", PROVIDERS)
def test_folder_names_for_every_role(spec: ProviderSpec) -> None:
    for role in FolderRole:
        names = REGISTRY.folder_names(spec.key, role)
        assert names, f"no candidate folder names for {role}"
        assert all(isinstance(name, str) and name.strip() for name in names)
        assert len(set(names)) == len(names)
    assert REGISTRY.folder_names(spec.key, FolderRole.INBOX)[0] == "INBOX"


@pytest.mark.parametrize("spec", PROVIDERS)
def test_stores_sent_mail_is_a_bool(spec: ProviderSpec) -> None:
    assert isinstance(REGISTRY.stores_sent_mail(spec.key), bool)


OAUTH_PROVIDERS = [pytest.param(spec, id=key) for key, spec in SPECS.items() if spec.oauth]


@pytest.mark.parametrize("spec", OAUTH_PROVIDERS)
def test_oauth_server_is_well_formed(spec: ProviderSpec) -> None:
    oauth = spec.oauth
    assert isinstance(oauth, OAuthServer)
    assert AuthKind.XOAUTH2 in spec.auth_kinds, "OAuth tokens are stored as AuthKind.XOAUTH2"
    assert isinstance(oauth.mechanism, OAuthMechanism)
    tenant = oauth.default_tenant
    assert oauth.has_tenant == (tenant is not None)
    if tenant is not None:
        assert TENANT_PATTERN.fullmatch(tenant)
    for name, url in oauth.urls().items():
        if name in ("authorization_url", "token_url"):
            assert url, f"{name} is required"
        if url is None:
            continue
        filled = fill_tenant(url, tenant)
        assert filled is not None and filled.startswith("https://"), f"{name} must use https: {url}"
        host = filled.split("/", 3)[2]
        assert HOSTNAME.fullmatch(host), f"{name} has no plain host name: {url}"
        assert "#" not in filled and "{" not in filled
    assert oauth.setup_url is None or oauth.setup_url.startswith("https://")
    assert oauth.scopes and all(scope and scope == scope.strip() and " " not in scope for scope in oauth.scopes)
    assert len(set(oauth.scopes)) == len(oauth.scopes)
    names = [name for name, _value in oauth.authorization_params]
    assert len(set(names)) == len(names)
    assert not RESERVED_AUTHORIZATION_PARAMS.intersection(names), "the core sets these itself"
    assert oauth.address_claims and all(claim.strip() for claim in oauth.address_claims)
    if "openid" not in oauth.scopes:
        assert oauth.userinfo_url, "without an ID token the address must come from userinfo"


@pytest.mark.parametrize(
    ("key", "tenant", "token_url", "scopes"),
    [  # the providers' published endpoints and scopes (see each plugin's docstring)
        ("gmail", None, "https://oauth2.googleapis.com/token", ("https://mail.google.com/", "openid", "email")),
        (
            "outlook",
            "consumers",
            "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
            (
                "https://outlook.office.com/IMAP.AccessAsUser.All",
                "https://outlook.office.com/SMTP.Send",
                "offline_access",
                "openid",
                "email",
            ),
        ),
        (
            "office365",
            "organizations",
            "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
            (
                "https://outlook.office.com/IMAP.AccessAsUser.All",
                "https://outlook.office.com/SMTP.Send",
                "offline_access",
                "openid",
                "email",
            ),
        ),
    ],
)
def test_builtin_oauth_servers_match_the_published_ones(
    key: str, tenant: str | None, token_url: str, scopes: tuple[str, ...]
) -> None:
    oauth = SPECS[key].oauth
    assert oauth is not None
    assert (oauth.default_tenant, oauth.token_url, oauth.scopes) == (tenant, token_url, scopes)
    assert oauth.mechanism == OAuthMechanism.XOAUTH2
