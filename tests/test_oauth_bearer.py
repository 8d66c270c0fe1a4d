"""OAUTHBEARER (RFC 7628) for a provider whose OAuth declaration names it: the sync, the
IDLE-free paths (audit), sending and the login check use it on the token-introspecting
Dovecot and SMTP server, a refused token is answered as RFC 7628 asks (no hang), and the
built-in providers keep XOAUTH2."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pytest
from imapclient import IMAPClient

from salesinbox.core.credentials import Secret
from salesinbox.core.db.models import Message, SyncState, User
from salesinbox.core.errors import ErrorCode
from salesinbox.core.mail_accounts.stored_logins import stored_logins
from salesinbox.core.oauth.oauth_tokens import OAuthTokens, account_logins
from salesinbox.core.plugin_host.plugins import get_plugin_manager
from salesinbox.core.plugin_host.provider_registry import ProviderRegistry
from salesinbox.core.plugin_host.providers import (
    AuthKind,
    LoginMechanism,
    OAuthMechanism,
    OAuthServer,
    ProviderSpec,
    Security,
    ServerEndpoint,
)
from salesinbox.core.sending.mailer import OutgoingEmail, send_email
from salesinbox.core.settings import Settings
from salesinbox.core.sync.engine import SyncServices, sync_account
from salesinbox.core.transport.imap import open_imap
from salesinbox.core.transport.server_errors import MailServerError
from salesinbox.core.transport.smtp import send_smtp

from .servers.messages import build_message
from .test_oauth_tokens import signed_in
from .test_plugins import Declares

if TYPE_CHECKING:
    from .servers.fixtures import MailAccount as TestMailbox
    from .servers.oauth import OAuthServer as TestIdP

pytestmark = pytest.mark.dovecot

BEARER = ProviderSpec(
    key="bearer_mail", display_name="Bearer Mail",
    imap=ServerEndpoint("imap.bearer.example", 993, Security.SSL),
    smtp=ServerEndpoint("smtp.bearer.example", 465, Security.SSL),
    auth_kinds=(AuthKind.XOAUTH2,),
    oauth=OAuthServer(
        authorization_url="https://auth.bearer.example/authorize",
        token_url="https://auth.bearer.example/token",
        scopes=("mail", "openid", "email"), mechanism=OAuthMechanism.OAUTHBEARER,
    ),
)


@pytest.fixture
def bearer_services(services: SyncServices, db: Settings) -> SyncServices:
    """Services whose registry also holds a provider that declares OAUTHBEARER."""
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(Declares(BEARER), name="bearer-plugin")
    registry = ProviderRegistry(pm)
    tokens = OAuthTokens(secrets=services.secrets, registry=registry, settings=db, policy=services.policy)
    return replace(services, registry=registry, tokens=tokens)


@pytest.fixture
def sasl_mechanisms(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SASL mechanisms IMAP logins use, in order (the server accepts both)."""
    used: list[str] = []
    real = IMAPClient.sasl_login

    def spy(self: IMAPClient, mech_name: str, mech_callable: object) -> object:
        used.append(mech_name)
        return real(self, mech_name, mech_callable)

    monkeypatch.setattr(IMAPClient, "sasl_login", spy)
    return used


async def test_a_provider_declaring_oauthbearer_logs_in_with_it(
    admin: User, rep: User, oauth_account: TestMailbox, oauth_server: TestIdP,
    bearer_services: SyncServices, db: Settings, sasl_mechanisms: list[str],
) -> None:
    services = bearer_services
    oauth_server.access_token_lifetime = 2
    account = await signed_in(admin, rep, oauth_account, oauth_server, services, db, "bearer_mail")
    plan = services.registry.login_plan("bearer_mail", oauth_account.address, AuthKind.XOAUTH2, "imap")
    assert plan.mechanism == LoginMechanism.OAUTHBEARER  # what connecting an account verifies with
    assert stored_logins(account, services.secrets, services.registry).smtp.mechanism == LoginMechanism.OAUTHBEARER
    oauth_account.dovecot.append(oauth_account.user, "INBOX", build_message(subject="bearer"))
    assert (await sync_account(account.id, services)).state == SyncState.COMPLETE
    assert await Message.filter(account_id=account.id, subject="bearer").exists()
    await send_email(account, OutgoingEmail(from_address=oauth_account.address, to=("lead@example.test",),
                                            subject="via bearer", text="hi"),
                     secrets=services.secrets, policy=services.policy, tokens=services.tokens)
    (sent,) = oauth_account.smtp.messages
    assert (sent.login, sent.mechanism) == (oauth_account.address, "OAUTHBEARER")
    assert sasl_mechanisms and set(sasl_mechanisms) == {"OAUTHBEARER"}


async def test_a_refused_oauthbearer_token_is_a_typed_error_not_a_hang(
    admin: User, rep: User, oauth_account: TestMailbox, oauth_server: TestIdP,
    bearer_services: SyncServices, db: Settings,
) -> None:
    services = bearer_services
    account = await signed_in(admin, rep, oauth_account, oauth_server, services, db, "bearer_mail")
    logins = await account_logins(account, services.secrets, services.tokens)
    policy = replace(services.policy, timeout=5.0)
    with pytest.raises(MailServerError) as imap_refusal:
        open_imap(replace(logins.imap, secret=Secret("not-a-valid-token")), policy)
    with pytest.raises(MailServerError) as smtp_refusal:
        send_smtp(replace(logins.smtp, secret=Secret("not-a-valid-token")), policy,
                  envelope_from=oauth_account.address, recipients=["lead@example.test"],
                  message=build_message(subject="refused"))
    for refusal in (imap_refusal.value, smtp_refusal.value):
        assert refusal.code == ErrorCode.AUTHENTICATION_FAILED, refusal.message
        assert "not-a-valid-token" not in refusal.message


async def test_builtin_providers_keep_xoauth2(
    admin: User, rep: User, oauth_account: TestMailbox, oauth_server: TestIdP,
    bearer_services: SyncServices, db: Settings, sasl_mechanisms: list[str],
) -> None:
    account = await signed_in(admin, rep, oauth_account, oauth_server, bearer_services, db, "gmail")
    assert (await sync_account(account.id, bearer_services)).state == SyncState.COMPLETE
    assert set(sasl_mechanisms) == {"XOAUTH2"}
