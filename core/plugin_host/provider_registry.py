"""The provider questions the rest of the core asks, answered through the plugin hooks.

:class:`ProviderRegistry` wraps a plugin manager: it checks what plugins declare (unique,
well-formed keys), validates user input (provider key, options, auth kind) into typed
:class:`SalesInboxError` failures, and always returns an answer for the ``firstresult`` hooks
thanks to the core defaults.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import pluggy

from ..address_normalisation import email_domain_lenient, normalise_email_lenient
from ..errors import ErrorCode, SalesInboxError, invalid_input
from ..oauth.oauth_urls import RESERVED_AUTHORIZATION_PARAMS, TENANT_PATTERN, declared_url_problem
from .plugins import get_plugin_manager, start_without
from .providers import (
    AuthFailureContext,
    AuthKind,
    FolderRole,
    LoginPlan,
    OAuthMechanism,
    OAuthServer,
    ProviderEndpoints,
    ProviderSpec,
)

#: lower-case letter first, then lower-case letters, digits and underscores; at most 40 long
PROVIDER_KEY_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")
PROTOCOLS = ("imap", "smtp")


class ProviderDeclarationError(RuntimeError):
    """A plugin declared providers wrongly (duplicate or malformed key, bad option…).

    This is a bug in a plugin or in the deployment, not a user error, so it is not a
    :class:`SalesInboxError`; the message names the plugin(s) at fault.
    """


class ProviderRegistry:
    """Typed access to the providers the loaded plugins declare.

    :param pm: a manager from :func:`salesinbox.core.plugin_host.plugins.get_plugin_manager`; when
        omitted, a new one is built with entry points loaded.
    """

    def __init__(self, pm: pluggy.PluginManager | None = None) -> None:
        self.pm = pm if pm is not None else get_plugin_manager()

    # -- declarations -------------------------------------------------------------------

    def providers(self) -> dict[str, ProviderSpec]:
        """Every declared provider by key, built-ins first in their listing order.

        :raises ProviderDeclarationError: when a plugin returns something other than a list
            of :class:`ProviderSpec`, a key is malformed or declared twice, an option's
            default is not one of its choices, or two providers claim the same domain.
        """
        specs: dict[str, ProviderSpec] = {}
        declared_by: dict[str, str] = {}
        domain_owner: dict[str, str] = {}
        # Each implementation is called on its own (pluggy would merge the lists) so that an
        # error can name the plugin at fault. get_hookimpls() is in registration order.
        for impl in self.pm.hook.salesinbox_providers.get_hookimpls():
            if impl.hookwrapper or impl.wrapper:
                continue
            plugin = impl.plugin_name
            declared = impl.function()
            if declared is None:
                continue
            if isinstance(declared, ProviderSpec) or not isinstance(declared, (list, tuple)):
                raise ProviderDeclarationError(
                    f"plugin {plugin!r}: salesinbox_providers must return a list of "
                    f"ProviderSpec, got {type(declared).__name__}; {start_without([plugin])}"
                )
            for spec in declared:
                try:
                    self._check_spec(spec, plugin)
                except ProviderDeclarationError as error:
                    raise ProviderDeclarationError(f"{error}; {start_without([plugin])}") from None
                if spec.key in specs:
                    raise ProviderDeclarationError(
                        f"provider key {spec.key!r} is declared twice: by plugin "
                        f"{declared_by[spec.key]!r} and by plugin {plugin!r}; uninstall one"
                    )
                for domain in spec.domains:
                    domain = domain.strip().lower()
                    if domain in domain_owner:
                        raise ProviderDeclarationError(
                            f"email domain {domain!r} is claimed by providers "
                            f"{domain_owner[domain]!r} and {spec.key!r} (plugin {plugin!r})"
                        )
                    domain_owner[domain] = spec.key
                specs[spec.key] = spec
                declared_by[spec.key] = plugin
        return specs

    @staticmethod
    def _check_spec(spec: object, plugin: str) -> None:
        """Raise :class:`ProviderDeclarationError` when ``spec`` is not a usable declaration."""
        if not isinstance(spec, ProviderSpec):
            raise ProviderDeclarationError(
                f"plugin {plugin!r} declared {spec!r}, which is not a ProviderSpec"
            )
        if not isinstance(spec.key, str) or not PROVIDER_KEY_PATTERN.fullmatch(spec.key):
            raise ProviderDeclarationError(
                f"plugin {plugin!r} declared the malformed provider key {spec.key!r}: use "
                "1-40 lower-case letters, digits and underscores, starting with a letter"
            )
        if not spec.auth_kinds:
            raise ProviderDeclarationError(f"provider {spec.key!r} declares no auth_kinds")
        if not spec.user_supplies_servers and (spec.imap is None or spec.smtp is None):
            raise ProviderDeclarationError(
                f"provider {spec.key!r} has no preset servers: give imap and smtp, or set "
                "user_supplies_servers=True"
            )
        for domain in spec.domains:
            if "." not in domain.strip(".") or "@" in domain:
                raise ProviderDeclarationError(
                    f"provider {spec.key!r} declares the malformed email domain {domain!r}"
                )
        for option in spec.options:
            if option.default not in {value for value, _label in option.choices}:
                raise ProviderDeclarationError(
                    f"provider {spec.key!r}: the default {option.default!r} of option "
                    f"{option.name!r} is not one of its choices"
                )
        problem = _folder_names_problem(spec)
        if problem:
            raise ProviderDeclarationError(f"plugin {plugin!r}, provider {spec.key!r}: {problem}")
        if spec.oauth is not None:
            problem = _oauth_problem(spec)
            if problem:
                raise ProviderDeclarationError(
                    f"plugin {plugin!r}, provider {spec.key!r}: its OAuth server {problem}"
                )

    def oauth_server(self, key: str) -> OAuthServer:
        """The OAuth2 server provider ``key`` declares.

        :raises SalesInboxError: ``UNKNOWN_PROVIDER``, or ``INVALID_INPUT`` (field
            ``provider``) when the provider offers no OAuth sign-in, naming those that do.
        """
        spec = self.get(key)
        if spec.oauth is None:
            offering = ", ".join(k for k, s in self.providers().items() if s.oauth) or "none"
            raise invalid_input(
                f"{spec.display_name} offers no OAuth sign-in through SalesInbox. Providers "
                f"that do: {offering}.",
                field="provider",
            )
        return spec.oauth

    def get(self, key: str) -> ProviderSpec:
        """The spec of provider ``key``.

        :raises SalesInboxError: ``UNKNOWN_PROVIDER`` naming the known keys.
        """
        specs = self.providers()
        try:
            return specs[key]
        except (KeyError, TypeError):
            known = ", ".join(sorted(specs))
            raise SalesInboxError(
                ErrorCode.UNKNOWN_PROVIDER,
                f"Unknown mail provider {key!r}. Known providers: {known}.",
                field="provider",
            ) from None

    def detect_provider(self, email: str) -> str | None:
        """Suggest a provider key from the domain of ``email``, or ``None`` if none serves it.

        Matching is case-insensitive and ignores surrounding spaces. A declared domain also
        matches its subdomains (``contoso.onmicrosoft.com`` matches ``onmicrosoft.com``);
        the most specific declared domain wins.
        """
        domain = email_domain_lenient(email)
        if domain is None:
            return None
        owners = {
            declared.strip().lower(): spec.key
            for spec in self.providers().values()
            for declared in spec.domains
        }
        labels = domain.split(".")
        for start in range(len(labels) - 1):  # never match a bare top-level domain
            key = owners.get(".".join(labels[start:]))
            if key is not None:
                return key
        return None

    # -- per-account answers ------------------------------------------------------------

    def validate_options(
        self, provider: str, options: Mapping[str, str | None] | None
    ) -> dict[str, str]:
        """Check ``options`` against the provider's questions and fill in the defaults.

        Values are trimmed; a missing, ``None`` or empty value takes the option's default.

        :return: a value for every option the provider declares, and nothing else.
        :raises SalesInboxError: ``UNKNOWN_PROVIDER``, or ``INVALID_INPUT`` for an option
            the provider does not ask or a value that is not one of its choices (the message
            lists the allowed names or values).
        """
        spec = self.get(provider)
        declared = {option.name: option for option in spec.options}
        given = dict(options or {})
        unknown = sorted(set(given) - set(declared))
        if unknown:
            allowed = ", ".join(declared) if declared else "none"
            raise invalid_input(
                f"{spec.display_name} has no option {unknown[0]!r}. Its options are: {allowed}.",
                field="options",
            )
        resolved: dict[str, str] = {}
        for name, option in declared.items():
            value = given.get(name)
            value = value.strip() if isinstance(value, str) else value
            if value is None or value == "":
                resolved[name] = option.default
                continue
            allowed_values = [choice for choice, _label in option.choices]
            if value not in allowed_values:
                raise invalid_input(
                    f"{value!r} is not a valid {option.label.lower()} for "
                    f"{spec.display_name}. Choose one of: {', '.join(allowed_values)}.",
                    field=f"options.{name}",
                )
            resolved[name] = value
        return resolved

    def resolve_endpoints(
        self, provider: str, email: str, options: Mapping[str, str | None] | None = None
    ) -> ProviderEndpoints | None:
        """The incoming and outgoing servers for an account of ``provider``.

        :return: the endpoints, or ``None`` when the provider has no presets and the user
            gives the servers (``ProviderSpec.user_supplies_servers``).
        :raises SalesInboxError: as :meth:`validate_options`.
        """
        resolved = self.validate_options(provider, options)
        endpoints: ProviderEndpoints | None = self.pm.hook.salesinbox_resolve_endpoints(
            provider=provider, email=normalise_email_lenient(email), options=resolved
        )
        return endpoints

    def login_plan(
        self, provider: str, email: str, auth_kind: AuthKind | str, protocol: str
    ) -> LoginPlan:
        """How to log in to ``provider``'s IMAP or SMTP server with ``auth_kind``.

        :raises SalesInboxError: ``UNKNOWN_PROVIDER``, or ``INVALID_INPUT`` when the provider
            does not accept ``auth_kind`` (the message names the kinds it accepts).
        :raises ValueError: when ``protocol`` is not ``"imap"`` or ``"smtp"`` (a bug).
        """
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
        spec = self.get(provider)
        try:
            kind = AuthKind(auth_kind)
        except ValueError:
            kind = None
        if kind not in spec.auth_kinds:
            accepted = ", ".join(k.value for k in spec.auth_kinds)
            raise invalid_input(
                f"{spec.display_name} does not accept {auth_kind!s} sign-in. "
                f"It accepts: {accepted}.",
                field="auth_kind",
            )
        plan: LoginPlan = self.pm.hook.salesinbox_login_plan(
            provider=provider,
            email=normalise_email_lenient(email),
            auth_kind=kind,
            protocol=protocol,
        )
        return plan

    def folder_names(self, provider: str, role: FolderRole) -> list[str]:
        """Candidate names of the folder holding ``role`` on ``provider``, most likely first.

        :raises SalesInboxError: ``UNKNOWN_PROVIDER``.
        """
        self.get(provider)
        names = self.pm.hook.salesinbox_folder_names(provider=provider, role=FolderRole(role))
        return list(names or ())

    def stores_sent_mail(self, provider: str) -> bool:
        """Whether ``provider``'s SMTP server files a Sent copy itself (then the core won't).

        :raises SalesInboxError: ``UNKNOWN_PROVIDER``.
        """
        self.get(provider)
        return bool(self.pm.hook.salesinbox_stores_sent_mail(provider=provider))

    def auth_failure_hint(self, context: AuthFailureContext) -> str:
        """The sentence telling the user how to fix a refused login.

        Never raises for an unknown provider (an account may outlive its plugin): the core's
        generic hint answers then.
        """
        hint: str = self.pm.hook.salesinbox_auth_failure_hint(context=context)
        return hint


def _folder_names_problem(spec: ProviderSpec) -> str | None:
    """What is wrong with ``spec.folder_names`` and ``spec.stores_sent_mail``, or ``None``."""
    if not isinstance(spec.stores_sent_mail, bool):
        return f"stores_sent_mail must be True or False, not {spec.stores_sent_mail!r}"
    if not isinstance(spec.folder_names, Mapping):
        return f"folder_names must map FolderRole to names, not {type(spec.folder_names).__name__}"
    for role, names in spec.folder_names.items():
        if role not in set(FolderRole):
            return f"folder_names has the unknown role {role!r} (one of {', '.join(FolderRole)})"
        if isinstance(names, str) or not isinstance(names, (tuple, list)) or not names:
            return f"folder_names[{role}] must be a non-empty tuple of names, not {names!r}"
        if not all(isinstance(name, str) and name.strip() for name in names):
            return f"folder_names[{role}] holds an empty name or one that is not text: {names!r}"
        if len(set(names)) != len(names):
            return f"folder_names[{role}] repeats a name: {names!r}"
    return None


def _oauth_problem(spec: ProviderSpec) -> str | None:
    """What is wrong with ``spec.oauth`` (completing "its OAuth server …"), or ``None``."""
    oauth = spec.oauth
    if not isinstance(oauth, OAuthServer):
        return f"must be an OAuthServer, not {type(oauth).__name__}"
    if AuthKind.XOAUTH2 not in spec.auth_kinds:
        return "is declared but auth_kinds lacks AuthKind.XOAUTH2 (the kind tokens are stored as)"
    for name, url in oauth.urls().items():
        if url is None and name in ("authorization_url", "token_url"):
            return f"has no {name}"
        problem = url is not None and declared_url_problem(url)
        if problem:
            return f"{name}: {problem}"
    if oauth.setup_url is not None and declared_url_problem(oauth.setup_url):
        return f"setup_url {oauth.setup_url!r} must be an https:// URL"
    if oauth.has_tenant != (oauth.default_tenant is not None):
        return "must give default_tenant exactly when a URL holds {tenant}"
    if oauth.default_tenant is not None and not TENANT_PATTERN.fullmatch(oauth.default_tenant):
        return f"has the malformed default_tenant {oauth.default_tenant!r}"
    if not isinstance(oauth.scopes, tuple) or not oauth.scopes:
        return "declares no scopes (a tuple of strings)"
    if any(not isinstance(s, str) or not s or any(c.isspace() for c in s) for s in oauth.scopes):
        return f"has an empty scope or one with spaces: {oauth.scopes!r}"
    if len(set(oauth.scopes)) != len(oauth.scopes):
        return f"repeats a scope: {oauth.scopes!r}"
    if oauth.mechanism not in set(OAuthMechanism):
        return f"has the unknown SASL mechanism {oauth.mechanism!r} (XOAUTH2 or OAUTHBEARER)"
    pairs = oauth.authorization_params
    if not all(isinstance(p, tuple) and len(p) == 2 and all(isinstance(x, str) for x in p) for p in pairs):
        return f"authorization_params must be (name, value) pairs of strings: {pairs!r}"
    names = [name for name, _value in pairs]
    if len(set(names)) != len(names) or not all(names):
        return f"has empty or repeated authorization_params: {names!r}"
    reserved = sorted(RESERVED_AUTHORIZATION_PARAMS.intersection(names))
    if reserved:
        return f"sets {reserved}, which the core sets itself"
    if not oauth.address_claims or not all(isinstance(c, str) and c for c in oauth.address_claims):
        return "names no address_claims (the ID-token claims holding the mailbox address)"
    return None
