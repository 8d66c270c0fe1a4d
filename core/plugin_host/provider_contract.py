"""The contract every provider plugin is held to, as checks shipped with the package.

``salesinbox check-plugins`` runs them against the installed plugins (a plugin author's way
to test a plugin against an installed SalesInbox, no checkout or pytest needed), and
``tests/test_provider_contract.py`` runs the same checks, one test per check and provider.

Each check takes the registry and one :class:`ProviderSpec` and raises
:class:`ContractViolation` naming what is wrong; checks never connect anywhere.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import cast

import pluggy

from ..oauth.oauth_urls import RESERVED_AUTHORIZATION_PARAMS, TENANT_PATTERN, fill_tenant
from .provider_registry import PROTOCOLS, PROVIDER_KEY_PATTERN, ProviderDeclarationError, ProviderRegistry
from .providers import (
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
    token_mechanism,
)

SSL_PORTS = frozenset({993, 465})  # IMAPS, SMTPS (RFC 8314 implicit TLS)
STARTTLS_PORTS = frozenset({143, 587})  # IMAP, submission
HOSTNAME = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}")
#: a secret planted in the server message given to the hint hook: the hint must not repeat it
PLANTED_SECRET = "hunter2-S3CR3T"
#: the address the checks resolve endpoints and login plans for
SAMPLE_EMAIL = "rep@customer-domain.example"


class ContractViolation(Exception):
    """A provider declaration or hook answer breaks the plugin contract (the message says how)."""


def _require(condition: object, message: str) -> None:
    # Not `assert`: these checks also run under `python -O`, where asserts are removed.
    if not condition:
        raise ContractViolation(message)


def option_combinations(spec: ProviderSpec) -> Iterator[dict[str, str]]:
    """Every combination of the provider's option values (one empty one without options)."""
    names = [option.name for option in spec.options]
    values = [[value for value, _label in option.choices] for option in spec.options]
    for combination in itertools.product(*values):
        yield dict(zip(names, combination, strict=True))


def _check_endpoint(endpoint: ServerEndpoint, what: str) -> None:
    _require(isinstance(endpoint, ServerEndpoint), f"{what} is not a ServerEndpoint: {endpoint!r}")
    _require(HOSTNAME.fullmatch(endpoint.host), f"{what}: not a lower-case host name: {endpoint.host!r}")
    _require(1 <= endpoint.port <= 65535, f"{what}: port {endpoint.port} out of range")
    _require(endpoint.security != Security.NONE, f"{what}: presets must use TLS")
    if endpoint.port in SSL_PORTS:
        _require(endpoint.security == Security.SSL, f"{what}: port {endpoint.port} is implicit TLS (SSL)")
    if endpoint.port in STARTTLS_PORTS:
        _require(endpoint.security == Security.STARTTLS, f"{what}: port {endpoint.port} is STARTTLS")


def _check_endpoints(endpoints: ProviderEndpoints | None, what: str) -> None:
    _require(isinstance(endpoints, ProviderEndpoints), f"{what}: no ProviderEndpoints but {endpoints!r}")
    assert isinstance(endpoints, ProviderEndpoints)  # for the type checker; checked just above
    _check_endpoint(endpoints.imap, f"{what}, IMAP")
    _check_endpoint(endpoints.smtp, f"{what}, SMTP")


def declaration_is_well_formed(registry: ProviderRegistry, spec: ProviderSpec) -> None:
    """Key, display name, auth kinds, domains and options are well formed."""
    _require(PROVIDER_KEY_PATTERN.fullmatch(spec.key), f"malformed key {spec.key!r}")
    _require(spec.display_name.strip(), "display_name is empty")
    _require(spec.auth_kinds, "declare at least one way to log in (auth_kinds)")
    _require(len(set(spec.auth_kinds)) == len(spec.auth_kinds), "auth_kinds repeats a kind")
    _require(all(isinstance(kind, AuthKind) for kind in spec.auth_kinds), "auth_kinds holds a non-AuthKind")
    for domain in spec.domains:
        _require(domain == domain.strip().lower() and "@" not in domain and "." in domain,
                 f"domain {domain!r} is not a lower-case domain name")
    names = [option.name for option in spec.options]
    _require(len(set(names)) == len(names), "two options share a name")
    for option in spec.options:
        values = [value for value, _label in option.choices]
        _require(values and len(set(values)) == len(values), f"option {option.name!r}: no or repeated choices")
        _require(option.default in values, f"option {option.name!r}: the default is not a choice")
        _require(option.label.strip(), f"option {option.name!r}: empty label")
    _require(isinstance(spec.stores_sent_mail, bool), "stores_sent_mail is not True or False")
    for role, declared in spec.folder_names.items():
        _require(role in set(FolderRole) and isinstance(declared, tuple) and declared,
                 f"folder_names[{role!r}]: declare a non-empty tuple for a FolderRole")
        _require(all(isinstance(n, str) and n and n == n.strip() for n in declared),
                 f"folder_names[{role!r}]: a blank or padded name")
        _require(len(set(declared)) == len(declared), f"folder_names[{role!r}]: repeated names")


def presets_are_complete(registry: ProviderRegistry, spec: ProviderSpec) -> None:
    """Preset servers are complete and valid (SSL on 993/465, STARTTLS on 143/587), unless the
    user supplies the servers; the default options resolve to the declared presets."""
    resolved = registry.resolve_endpoints(spec.key, SAMPLE_EMAIL)
    if spec.user_supplies_servers:
        _require(spec.imap is None and spec.smtp is None, "user_supplies_servers, yet presets are declared")
        _require(resolved is None, "user_supplies_servers, yet endpoints resolve")
        return
    _require(spec.imap is not None and spec.smtp is not None, "imap and smtp presets are required")
    assert spec.imap is not None and spec.smtp is not None  # for the type checker
    _check_endpoint(spec.imap, "imap preset")
    _check_endpoint(spec.smtp, "smtp preset")
    _check_endpoints(resolved, "resolved endpoints")
    _require(resolved == ProviderEndpoints(imap=spec.imap, smtp=spec.smtp),
             "the default options must resolve to the declared presets (what a form pre-fills)")


def every_option_combination_resolves(registry: ProviderRegistry, spec: ProviderSpec) -> None:
    """Every combination of the provider's option values resolves to valid servers."""
    for options in option_combinations(spec):
        label = ",".join(f"{name}={value}" for name, value in options.items()) or "no options"
        endpoints = registry.resolve_endpoints(spec.key, SAMPLE_EMAIL, options)
        if spec.user_supplies_servers:
            _require(endpoints is None, f"{label}: endpoints resolve although the user supplies them")
        else:
            _check_endpoints(endpoints, label)


def help_links_use_https(registry: ProviderRegistry, spec: ProviderSpec) -> None:
    """Help links are https; a preset provider links its help page (and its app-password page)."""
    for url in (spec.help_url, spec.app_password_url):
        _require(url is None or url.startswith("https://"), f"not an https link: {url}")
    if not spec.user_supplies_servers:
        _require(spec.help_url, "a preset provider links to its own IMAP/SMTP help page (help_url)")
        if AuthKind.APP_PASSWORD in spec.auth_kinds:
            _require(spec.app_password_url, "say where to create the app password (app_password_url)")


def auth_failure_hint_repeats_no_secret(registry: ProviderRegistry, spec: ProviderSpec) -> None:
    """A refused login gets a hint for every auth kind and protocol, repeating no secret and
    not the server's message (the core shows that itself)."""
    for kind, protocol in itertools.product(spec.auth_kinds, PROTOCOLS):
        hint = registry.auth_failure_hint(AuthFailureContext(
            provider=spec.key, auth_kind=kind, protocol=protocol,
            server_message=f"[AUTHENTICATIONFAILED] Invalid credentials ({PLANTED_SECRET})",
        ))
        what = f"hint for {kind.value} over {protocol}"
        _require(isinstance(hint, str) and len(hint.strip()) >= 20, f"{what}: missing or too short")
        _require(PLANTED_SECRET not in hint, f"{what}: repeats the secret")
        _require("AUTHENTICATIONFAILED" not in hint, f"{what}: repeats the server's message")


def login_plan_for_every_auth_kind(registry: ProviderRegistry, spec: ProviderSpec) -> None:
    """Every accepted auth kind has a login plan on both protocols: a username, and the token
    mechanism the OAuth declaration names for tokens (LOGIN for passwords)."""
    declared = spec.oauth.mechanism if spec.oauth is not None else None
    for kind, protocol in itertools.product(spec.auth_kinds, PROTOCOLS):
        plan = registry.login_plan(spec.key, SAMPLE_EMAIL, kind, protocol)
        what = f"login plan for {kind.value} over {protocol}"
        _require(plan.username.strip(), f"{what}: empty username")
        expected = token_mechanism(declared) if kind == AuthKind.XOAUTH2 else LoginMechanism.LOGIN
        _require(plan.mechanism == expected, f"{what}: mechanism {plan.mechanism} instead of {expected}")


def folder_names_for_every_role(registry: ProviderRegistry, spec: ProviderSpec) -> None:
    """Candidate folder names for every role, without blanks or repeats, INBOX first for INBOX."""
    for role in FolderRole:
        names = registry.folder_names(spec.key, role)
        _require(names, f"no candidate folder names for {role}")
        _require(all(isinstance(name, str) and name.strip() for name in names), f"{role}: a blank name")
        _require(len(set(names)) == len(names), f"{role}: repeated names")
    _require(registry.folder_names(spec.key, FolderRole.INBOX)[0] == "INBOX", "INBOX must come first")


def stores_sent_mail_is_a_bool(registry: ProviderRegistry, spec: ProviderSpec) -> None:
    """Whether the SMTP server files sent mail itself is answered with a bool."""
    _require(isinstance(registry.stores_sent_mail(spec.key), bool), "stores_sent_mail is not a bool")


def oauth_server_is_well_formed(registry: ProviderRegistry, spec: ProviderSpec) -> None:
    """An OAuth declaration (when there is one) has https endpoints on plain host names, a
    tenant exactly when a URL needs one, scopes without spaces or repeats, no parameters the
    core sets itself, and a way to learn the address (ID token or userinfo)."""
    oauth = spec.oauth
    if oauth is None:
        return
    _require(isinstance(oauth, OAuthServer), "oauth is not an OAuthServer")
    _require(AuthKind.XOAUTH2 in spec.auth_kinds, "OAuth tokens are stored as AuthKind.XOAUTH2: list it")
    _require(isinstance(oauth.mechanism, OAuthMechanism), "mechanism is not an OAuthMechanism")
    tenant = oauth.default_tenant
    _require(oauth.has_tenant == (tenant is not None), "default_tenant is needed exactly when a URL holds {tenant}")
    if tenant is not None:
        _require(TENANT_PATTERN.fullmatch(tenant), f"malformed default_tenant {tenant!r}")
    for name, url in oauth.urls().items():
        if name in ("authorization_url", "token_url"):
            _require(url, f"{name} is required")
        if url is None:
            continue
        filled = fill_tenant(url, tenant)
        _require(filled is not None and filled.startswith("https://"), f"{name} must use https: {url}")
        assert filled is not None  # for the type checker; checked just above
        _require(HOSTNAME.fullmatch(filled.split("/", 3)[2]), f"{name} has no plain host name: {url}")
        _require("#" not in filled and "{" not in filled, f"{name} holds a fragment or a placeholder: {url}")
    _require(oauth.setup_url is None or oauth.setup_url.startswith("https://"), "setup_url must use https")
    _require(oauth.scopes and all(s and s == s.strip() and " " not in s for s in oauth.scopes),
             "scopes must be non-empty, without spaces")
    _require(len(set(oauth.scopes)) == len(oauth.scopes), "scopes repeat")
    names = [name for name, _value in oauth.authorization_params]
    _require(len(set(names)) == len(names), "authorization_params repeat a name")
    reserved = RESERVED_AUTHORIZATION_PARAMS.intersection(names)
    _require(not reserved, f"authorization_params may not set {sorted(reserved)}: the core sets them")
    _require(oauth.address_claims and all(claim.strip() for claim in oauth.address_claims),
             "address_claims must name at least one claim")
    if "openid" not in oauth.scopes:
        _require(oauth.userinfo_url, "without an ID token (scope openid) the address must come from userinfo_url")


Check = Callable[[ProviderRegistry, ProviderSpec], None]

#: every check, in the order they are reported
CHECKS: tuple[Check, ...] = (
    declaration_is_well_formed,
    presets_are_complete,
    every_option_combination_resolves,
    help_links_use_https,
    auth_failure_hint_repeats_no_secret,
    login_plan_for_every_auth_kind,
    folder_names_for_every_role,
    stores_sent_mail_is_a_bool,
    oauth_server_is_well_formed,
)


def run_check(check: Check, registry: ProviderRegistry, spec: ProviderSpec) -> str | None:
    """Run one check: ``None`` when it passes, else what is wrong. A hook that raises
    counts as a failure (with the exception's type and message), not as a crash."""
    try:
        check(registry, spec)
    except ContractViolation as violation:
        return str(violation)
    except Exception as error:  # noqa: BLE001 - a plugin's bug is this check's finding
        return f"raised {type(error).__name__}: {error}"
    return None


@dataclass
class PluginReport:
    """The outcome of the checks for one plugin: its providers and what failed."""

    plugin: str
    providers: list[str] = field(default_factory=list)
    #: ``(provider key, check name, what is wrong)``
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    checks_run: int = 0

    @property
    def passed(self) -> bool:
        return not self.failures


def declared_by(pm: pluggy.PluginManager) -> dict[str, list[str]]:
    """The provider keys each plugin declares, by plugin name, in registration order."""
    declared: dict[str, list[str]] = {}
    for impl in pm.hook.salesinbox_providers.get_hookimpls():
        if impl.hookwrapper or impl.wrapper:
            continue
        specs = cast("Iterable[object]", impl.function() or [])
        declared[impl.plugin_name] = [spec.key for spec in specs if isinstance(spec, ProviderSpec)]
    return declared


def check_plugins(pm: pluggy.PluginManager) -> list[PluginReport]:
    """Run every check against every provider of every plugin loaded in ``pm``.

    :raises ProviderDeclarationError: when the declarations themselves are unusable (a
        duplicate key, a malformed spec…): the message names the plugin at fault.
    """
    registry = ProviderRegistry(pm)
    specs = registry.providers()  # raises ProviderDeclarationError first, naming the plugin
    reports = []
    for plugin, keys in declared_by(pm).items():
        report = PluginReport(plugin, providers=keys)
        for key in keys:
            for check in CHECKS:
                report.checks_run += 1
                problem = run_check(check, registry, specs[key])
                if problem is not None:
                    report.failures.append((key, check.__name__, problem))
        reports.append(report)
    return reports


__all__ = [
    "CHECKS",
    "Check",
    "ContractViolation",
    "PluginReport",
    "ProviderDeclarationError",
    "check_plugins",
    "declared_by",
    "option_combinations",
    "run_check",
]
