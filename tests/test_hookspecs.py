"""Every hook in core/hookspecs.py, called through pluggy as the core calls it.

Each hook has a test named ``test_<hookname>`` (enforced by ``test_every_hook_has_a_test``)
and a line in the README's plugin guide (``test_every_hook_is_documented``).
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import pluggy
import pytest

from salesinbox.core import (
    AuthFailureContext,
    AuthKind,
    FolderRole,
    LoginMechanism,
    LoginPlan,
    ProviderEndpoints,
    ProviderSpec,
    Security,
    ServerEndpoint,
    hookimpl,
    hookspecs,
)
from salesinbox.core.default_hooks import GENERIC_AUTH_FAILURE_HINT
from salesinbox.core.plugins import get_plugin_manager

REPO_ROOT = Path(__file__).resolve().parent.parent
EXTRA = ServerEndpoint("imap.extra.example", 993, Security.SSL)
EXTRA_SMTP = ServerEndpoint("smtp.extra.example", 587, Security.STARTTLS)


@pytest.fixture
def pm() -> pluggy.PluginManager:
    return get_plugin_manager(load_entrypoints=False)


class ExtraProvider:
    """A provider that implements nothing but its declaration: the defaults answer the rest."""

    @hookimpl
    def salesinbox_providers(self) -> list[ProviderSpec]:
        return [
            ProviderSpec(
                key="extra",
                display_name="Extra",
                imap=EXTRA,
                smtp=EXTRA_SMTP,
                auth_kinds=(AuthKind.PASSWORD, AuthKind.XOAUTH2),
            )
        ]


def hook_names() -> list[str]:
    """The hooks declared in core/hookspecs.py (functions carrying pluggy's spec marker)."""
    marker = f"{hookspecs.PROJECT_NAME}_spec"
    return sorted(
        name
        for name, obj in vars(hookspecs).items()
        if name.startswith("salesinbox_") and inspect.isfunction(obj) and hasattr(obj, marker)
    )


def test_salesinbox_providers(pm: pluggy.PluginManager) -> None:
    # Not firstresult: every plugin's list comes back; the core defaults declare nothing.
    results = pm.hook.salesinbox_providers()
    keys = [spec.key for specs in results for spec in specs]
    assert sorted(keys) == sorted(
        ["zoho_mail", "gmail", "outlook", "office365", "yahoo", "custom_imap"]
    )
    assert all(isinstance(spec, ProviderSpec) for specs in results for spec in specs)
    pm.register(ExtraProvider())
    assert "extra" in [spec.key for specs in pm.hook.salesinbox_providers() for spec in specs]


def test_salesinbox_resolve_endpoints(pm: pluggy.PluginManager) -> None:
    resolve = pm.hook.salesinbox_resolve_endpoints
    zoho = resolve(
        provider="zoho_mail",
        email="a@acme.example",
        options={"region": "eu", "account_type": "organisation"},
    )
    assert zoho == ProviderEndpoints(
        imap=ServerEndpoint("imappro.zoho.eu", 993, Security.SSL),
        smtp=ServerEndpoint("smtppro.zoho.eu", 465, Security.SSL),
    )
    # The Zoho plugin also copes with options the core did not fill in.
    zoho_default = resolve(provider="zoho_mail", email="a@zoho.com", options={})
    assert zoho_default.imap.host == "imap.zoho.com"
    # The core default answers from the spec's presets, or None when there are none.
    pm.register(ExtraProvider())
    assert resolve(provider="extra", email="a@extra.example", options={}) == ProviderEndpoints(
        imap=EXTRA, smtp=EXTRA_SMTP
    )
    assert resolve(provider="custom_imap", email="a@b.example", options={}) is None
    assert resolve(provider="not_declared", email="a@b.example", options={}) is None

    # firstresult: a plugin's non-None answer wins over the trylast default.
    class Override:
        @hookimpl
        def salesinbox_resolve_endpoints(self, provider: str) -> ProviderEndpoints | None:
            return ProviderEndpoints(imap=EXTRA, smtp=EXTRA_SMTP) if provider == "gmail" else None

    pm.register(Override())
    assert resolve(provider="gmail", email="a@gmail.com", options={}).imap == EXTRA
    yahoo = resolve(provider="yahoo", email="a@yahoo.com", options={})
    assert yahoo.imap.host == "imap.mail.yahoo.com"


def test_salesinbox_login_plan(pm: pluggy.PluginManager) -> None:
    plan = pm.hook.salesinbox_login_plan
    assert plan(
        provider="zoho_mail",
        email="rep@acme.example",
        auth_kind=AuthKind.APP_PASSWORD,
        protocol="imap",
    ) == LoginPlan(LoginMechanism.LOGIN, "rep@acme.example")
    assert plan(
        provider="gmail", email="rep@gmail.com", auth_kind=AuthKind.XOAUTH2, protocol="smtp"
    ) == LoginPlan(LoginMechanism.XOAUTH2, "rep@gmail.com")

    class ShortUsernames:
        @hookimpl
        def salesinbox_login_plan(self, provider: str, email: str) -> LoginPlan | None:
            if provider != "extra":
                return None
            return LoginPlan(LoginMechanism.LOGIN, email.partition("@")[0])

    pm.register(ExtraProvider())
    pm.register(ShortUsernames())
    assert plan(
        provider="extra", email="rep@extra.example", auth_kind=AuthKind.PASSWORD, protocol="imap"
    ) == LoginPlan(LoginMechanism.LOGIN, "rep")


def test_salesinbox_folder_names(pm: pluggy.PluginManager) -> None:
    names = pm.hook.salesinbox_folder_names
    gmail_sent = names(provider="gmail", role=FolderRole.SENT)
    assert gmail_sent == ["[Gmail]/Sent Mail", "[Google Mail]/Sent Mail"]
    assert names(provider="gmail", role=FolderRole.JUNK)[0] == "[Gmail]/Spam"
    assert names(provider="outlook", role=FolderRole.SENT)[0] == "Sent Items"
    assert names(provider="outlook", role=FolderRole.JUNK)[0] == "Junk Email"
    assert names(provider="yahoo", role=FolderRole.JUNK)[0] == "Bulk Mail"
    assert names(provider="zoho_mail", role=FolderRole.JUNK) == ["Spam"]
    # Roles a plugin leaves alone, and unknown providers, get the core's common names.
    assert names(provider="gmail", role=FolderRole.INBOX) == ["INBOX"]
    default_sent = names(provider="custom_imap", role=FolderRole.SENT)
    assert default_sent[:5] == ["Sent", "Sent Items", "Sent Messages", "Sent Mail", "INBOX.Sent"]
    default_junk = names(provider="custom_imap", role=FolderRole.JUNK)
    assert {"Junk", "Spam", "Junk E-mail"} <= set(default_junk)
    # A fresh list each call: callers may change it without changing the defaults.
    default_sent.clear()
    assert names(provider="custom_imap", role=FolderRole.SENT)[0] == "Sent"


def test_salesinbox_stores_sent_mail(pm: pluggy.PluginManager) -> None:
    stores = pm.hook.salesinbox_stores_sent_mail
    assert stores(provider="gmail") is True
    assert stores(provider="outlook") is True
    assert stores(provider="office365") is True
    assert stores(provider="yahoo") is False
    assert stores(provider="zoho_mail") is False
    assert stores(provider="custom_imap") is False
    assert stores(provider="not_declared") is False


def test_salesinbox_auth_failure_hint(pm: pluggy.PluginManager) -> None:
    def hint(provider: str, kind: AuthKind = AuthKind.APP_PASSWORD) -> str:
        return pm.hook.salesinbox_auth_failure_hint(
            context=AuthFailureContext(provider=provider, auth_kind=kind, protocol="imap")
        )

    assert hint("gmail") == (
        "Gmail needs an app password when 2-Step Verification is on: "
        "https://support.google.com/accounts/answer/185833"
    )
    assert "Google sign-in" in hint("gmail", AuthKind.XOAUTH2)
    microsoft = (
        "Office 365 and Outlook.com no longer accept passwords over IMAP: "
        "connect with Microsoft sign-in (OAuth2)."
    )
    assert hint("outlook", AuthKind.XOAUTH2) == microsoft
    assert hint("office365", AuthKind.XOAUTH2) == microsoft
    assert "https://help.yahoo.com/" in hint("yahoo")
    zoho = hint("zoho_mail", AuthKind.PASSWORD)
    assert "IMAP Access" in zoho and "app-specific password" in zoho
    assert hint("not_declared") == GENERIC_AUTH_FAILURE_HINT == (
        "The server refused the username or password: check them, and if the account uses "
        "two-factor authentication, use an app-specific password."
    )


# -- meta-tests -----------------------------------------------------------------------------


def test_every_hook_has_a_test() -> None:
    this_module = vars(sys.modules[__name__])
    assert hook_names(), "no hookspecs found"
    missing = [name for name in hook_names() if not callable(this_module.get(f"test_{name}"))]
    assert not missing, f"write a test named test_<hook> in tests/test_hookspecs.py for: {missing}"


def markdown_headings(lines: list[str]) -> list[tuple[int, int, str]]:
    """(line index, level, title) of each heading, skipping fenced code blocks."""
    headings, in_fence = [], False
    for index, line in enumerate(lines):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        elif not in_fence and (match := re.match(r"(#{1,6})\s+(.*)", line)):
            headings.append((index, len(match.group(1)), match.group(2)))
    return headings


def plugin_guide_section(markdown: str) -> str | None:
    """The text under the first heading that mentions plugins, up to a heading as high."""
    lines = markdown.splitlines()
    headings = markdown_headings(lines)
    for position, (start, level, title) in enumerate(headings):
        if "plugin" in title.lower():
            end = next(
                (index for index, lvl, _ in headings[position + 1 :] if lvl <= level), len(lines)
            )
            return "\n".join(lines[start:end])
    return None


def test_every_hook_is_documented() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = plugin_guide_section(readme)
    assert section is not None, (
        "README.md has no plugin guide section (a heading mentioning plugins)"
    )
    missing = [name for name in hook_names() if name not in section]
    assert not missing, f"README.md's plugin guide does not mention: {missing}"
