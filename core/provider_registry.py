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

from .addresses import email_domain_lenient, normalise_email_lenient
from .errors import ErrorCode, SalesInboxError, invalid_input
from .plugins import get_plugin_manager
from .providers import (
    AuthFailureContext,
    AuthKind,
    FolderRole,
    LoginPlan,
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

    :param pm: a manager from :func:`salesinbox.core.plugins.get_plugin_manager`; when
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
                    f"ProviderSpec, got {type(declared).__name__}"
                )
            for spec in declared:
                self._check_spec(spec, plugin)
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
        return self.pm.hook.salesinbox_resolve_endpoints(
            provider=provider, email=normalise_email_lenient(email), options=resolved
        )

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
        return self.pm.hook.salesinbox_login_plan(
            provider=provider,
            email=normalise_email_lenient(email),
            auth_kind=kind,
            protocol=protocol,
        )

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
        return self.pm.hook.salesinbox_auth_failure_hint(context=context)
