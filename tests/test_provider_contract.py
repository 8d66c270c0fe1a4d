"""One contract, checked for every registered provider plugin (built-in or installed).

The checks live in ``salesinbox.core.plugin_host.provider_contract`` (shipped with the package, run by
``salesinbox check-plugins``); here each check runs once per provider, as its own test. A
new provider plugin gets all of them for free: presets complete, ports and TLS consistent,
auth kinds declared, hints present and free of secrets, help links on https, folder names
for every role, and every combination of its options resolving.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from salesinbox.core import OAuthMechanism, ProviderSpec
from salesinbox.core.plugin_host.plugins import get_plugin_manager
from salesinbox.core.plugin_host.provider_contract import (
    CHECKS,
    Check,
    ContractViolation,
    help_links_use_https,
    run_check,
)
from salesinbox.core.plugin_host.provider_registry import ProviderRegistry

# Built at collection time so each provider gets its own test ids; entry points are loaded
# so that third-party plugins installed in this environment are held to the contract too.
REGISTRY = ProviderRegistry(get_plugin_manager(load_entrypoints=True))
SPECS = REGISTRY.providers()


def test_there_are_providers_to_check() -> None:
    assert {"zoho_mail", "gmail", "outlook", "office365", "yahoo", "custom_imap"} <= set(SPECS)
    assert {"gmail", "outlook", "office365"} <= {key for key, spec in SPECS.items() if spec.oauth}


@pytest.mark.parametrize("spec", [pytest.param(spec, id=key) for key, spec in SPECS.items()])
@pytest.mark.parametrize("check", [pytest.param(check, id=check.__name__) for check in CHECKS])
def test_provider_keeps_the_contract(check: Check, spec: ProviderSpec) -> None:
    problem = run_check(check, REGISTRY, spec)
    assert problem is None, f"{spec.key}: {check.__name__}: {problem}"


def test_a_check_fails_on_a_broken_declaration() -> None:
    """The checks can fail: an http help link is reported, saying what is wrong."""
    broken = replace(SPECS["gmail"], help_url="http://support.google.com/mail")
    problem = run_check(help_links_use_https, REGISTRY, broken)
    assert problem == "not an https link: http://support.google.com/mail"
    with pytest.raises(ContractViolation, match="https"):
        help_links_use_https(REGISTRY, broken)


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
