"""Access tokens that refresh themselves (core/oauth/oauth_tokens.py) against the local OAuth server,
the token-introspecting Dovecot and SMTP server: one refresh per expiry, rotation saved at
once, invalid_grant -> NEEDS_REAUTH with nothing tried again, a down endpoint retried, and
the refresh token revoked on disconnection."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import httpx2
import pytest

from salesinbox.core.db.models import Folder, FromAddress, MailAccount, Message, OAuthGrant, SyncState, User
from salesinbox.core.errors import ErrorCode
from salesinbox.core.mail_accounts.accounts import disconnect_account
from salesinbox.core.oauth import oauth_tokens as oauth_tokens_module
from salesinbox.core.oauth.oauth_clients import OAuthClientInput, set_oauth_client
from salesinbox.core.oauth.oauth_grants import store_grant
from salesinbox.core.oauth.oauth_tokens import OAuthTokens, TokenEndpointUnavailable
from salesinbox.core.plugin_host.providers import AuthKind, FolderRole, Security
from salesinbox.core.sending.mailer import OutgoingEmail, send_email
from salesinbox.core.sending.outgoing import Draft, MailServices, reply
from salesinbox.core.settings import Settings
from salesinbox.core.sync.audit import audit_account
from salesinbox.core.sync.engine import SyncServices, sync_account
from salesinbox.core.sync.message_flags import set_message_flags
from salesinbox.core.sync.original_message import fetch_original

from .servers.messages import build_message

if TYPE_CHECKING:
    from .servers.fixtures import MailAccount as TestMailbox
    from .servers.oauth import OAuthServer

pytestmark = pytest.mark.dovecot


@pytest.fixture
def tokens(services: SyncServices, db: Settings) -> OAuthTokens:
    return OAuthTokens(secrets=services.secrets, registry=services.registry, settings=db,
                       policy=services.policy)


@pytest.fixture
def with_tokens(services: SyncServices, tokens: OAuthTokens) -> SyncServices:
    return replace(services, tokens=tokens)


async def signed_in(admin: User, rep: User, box: TestMailbox, server: OAuthServer,
                    services: SyncServices, db: Settings, provider: str = "gmail") -> MailAccount:
    """A ``provider`` account of ``rep`` whose admin pointed the provider's OAuth client at
    ``server``, with a grant as the consent flow will store it."""
    await set_oauth_client(admin, OAuthClientInput(
        provider=provider, client_id=server.client.client_id, client_secret=server.client.client_secret,
        authorization_url=server.url("/authorize"), token_url=server.url("/token"),
        revocation_url=server.url("/revoke"),
    ), registry=services.registry, secrets=services.secrets, settings=db)
    common = dict(security=Security.STARTTLS, username=box.username, auth=AuthKind.XOAUTH2)
    account = await MailAccount.create(
        user=rep, provider=provider, display_name="Rex", email=box.address,
        imap_host="localhost", imap_port=box.dovecot.port, imap_security=common["security"],
        imap_username=box.username, imap_auth_kind=AuthKind.XOAUTH2,
        imap_secret=services.secrets.encrypt("not-a-token"),
        smtp_host="localhost", smtp_port=box.smtp.port, smtp_security=Security.STARTTLS,
        smtp_username=box.username, smtp_auth_kind=AuthKind.XOAUTH2,
        smtp_secret=services.secrets.encrypt("not-a-token"), capabilities=["IDLE"],
    )
    await Folder.create(account=account, name="INBOX", role=FolderRole.INBOX)
    await store_grant(account.id, provider, server.issue_tokens(box.address), services.secrets)
    return account


async def stored_refresh_token(account_id: int, services: SyncServices) -> str:
    grant = await OAuthGrant.get(account_id=account_id)
    assert grant.refresh_token is not None
    return services.secrets.decrypt(grant.refresh_token).reveal()


def refresh_with(server: OAuthServer, refresh_token: str) -> httpx2.Response:
    return httpx2.post(server.url("/token"), data={
        "grant_type": "refresh_token", "refresh_token": refresh_token,
        "client_id": server.client.client_id, "client_secret": server.client.client_secret})


async def wait_until_expired(account_id: int) -> None:
    grant = await OAuthGrant.get(account_id=account_id)
    left = (grant.access_token_expires_at.timestamp() - time.time())
    await asyncio.sleep(max(left, 0) + 0.05)


@pytest.mark.parametrize("provider", ["gmail", "outlook", "office365"])
async def test_one_refresh_per_expiry_across_syncs_and_sends(
    admin: User, rep: User, oauth_account: TestMailbox, oauth_server: OAuthServer,
    with_tokens: SyncServices, db: Settings, provider: str,
) -> None:
    oauth_server.access_token_lifetime = 3
    account = await signed_in(admin, rep, oauth_account, oauth_server, with_tokens, db, provider)
    expiries = 5
    for round_ in range(expiries):
        await wait_until_expired(account.id)
        oauth_account.dovecot.append(oauth_account.user, "INBOX",
                                     build_message(subject=f"round {round_}"))
        for _pass in range(2):  # several passes within one token's life
            report = await sync_account(account.id, with_tokens)
            assert report.state != SyncState.NEEDS_REAUTH, report.error
        await send_email(account, OutgoingEmail(from_address=oauth_account.address,
                                                to=("lead@example.test",), subject=f"sent {round_}",
                                                text="hi"),
                         secrets=with_tokens.secrets, policy=with_tokens.policy, tokens=with_tokens.tokens)
    assert await Message.filter(account_id=account.id).count() == expiries
    assert len(oauth_account.smtp.messages) == expiries
    assert oauth_server.token_requests["refresh_token"] == expiries  # one per expiry crossed


async def test_audit_and_flag_changes_log_in_with_the_current_token(
    admin: User, rep: User, oauth_account: TestMailbox, oauth_server: OAuthServer,
    with_tokens: SyncServices, db: Settings,
) -> None:
    oauth_server.access_token_lifetime = 2
    account = await signed_in(admin, rep, oauth_account, oauth_server, with_tokens, db)
    oauth_account.dovecot.append(oauth_account.user, "INBOX", build_message(subject="audited"))
    assert (await sync_account(account.id, with_tokens)).state == SyncState.COMPLETE
    await wait_until_expired(account.id)  # the first access token is dead now
    (inbox,) = [a for a in await audit_account(account.id, with_tokens) if a.folder == "INBOX"]
    assert (inbox.on_server, inbox.stored, inbox.missing_count) == (1, 1, 0)
    await wait_until_expired(account.id)
    message = await Message.get(account_id=account.id)
    changed = await set_message_flags(rep, message.id, seen=True, flagged=True, secrets=with_tokens.secrets,
                                      policy=with_tokens.policy, tokens=with_tokens.tokens)
    assert changed.seen and changed.flagged
    with oauth_account.dovecot.imap_client(oauth_account.user) as client:
        client.select_folder("INBOX", readonly=True)
        (flags,) = [f[b"FLAGS"] for f in client.fetch([message.uid], ["FLAGS"]).values()]
    assert {b"\\Seen", b"\\Flagged"} <= set(flags)
    assert oauth_server.token_requests["refresh_token"] == 2  # one per expiry crossed
    # A reply sets \\Answered on the original with a current token too (SMTP, then IMAP).
    await FromAddress.create(account=account, address=oauth_account.address, is_default=True)
    await wait_until_expired(account.id)
    mail = MailServices(secrets=with_tokens.secrets, registry=with_tokens.registry,
                        policy=with_tokens.policy, tokens=with_tokens.tokens)
    await reply(rep, message.id, Draft(text="Thanks"), mail)
    assert len(oauth_account.smtp.wait_for_messages(1)) == 1
    with oauth_account.dovecot.imap_client(oauth_account.user) as client:
        client.select_folder("INBOX", readonly=True)
        (flags,) = [f[b"FLAGS"] for f in client.fetch([message.uid], ["FLAGS"]).values()]
    assert b"\\Answered" in set(flags) and (await Message.get(id=message.id)).answered
    assert oauth_server.token_requests["refresh_token"] == 3
    # The original's download logs in with a current token as well.
    await wait_until_expired(account.id)
    raw = await fetch_original(message, secrets=with_tokens.secrets, policy=with_tokens.policy,
                               tokens=with_tokens.tokens)
    assert b"Subject: audited" in raw and raw.endswith(b"\r\n")
    assert oauth_server.token_requests["refresh_token"] == 4


async def test_concurrent_callers_share_one_refresh_and_rotation_is_saved(
    admin: User, rep: User, oauth_account: TestMailbox, oauth_server: OAuthServer,
    with_tokens: SyncServices, db: Settings,
) -> None:
    oauth_server.access_token_lifetime = 2
    account = await signed_in(admin, rep, oauth_account, oauth_server, with_tokens, db)
    first = await stored_refresh_token(account.id, with_tokens)
    await wait_until_expired(account.id)
    got = await asyncio.gather(*(with_tokens.tokens.current_access_token(account.id) for _ in range(10)))
    assert len({t.reveal() for t in got}) == 1
    assert oauth_server.token_requests["refresh_token"] == 1
    second = await stored_refresh_token(account.id, with_tokens)
    assert second != first
    assert refresh_with(oauth_server, first).json()["error"] == "invalid_grant"  # rotated out


async def test_a_failure_right_after_the_token_response_loses_no_refresh_token(
    admin: User, rep: User, oauth_account: TestMailbox, oauth_server: OAuthServer,
    with_tokens: SyncServices, db: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    oauth_server.access_token_lifetime = 2
    account = await signed_in(admin, rep, oauth_account, oauth_server, with_tokens, db)
    first = await stored_refresh_token(account.id, with_tokens)

    async def crash(*args: object) -> None:
        raise RuntimeError("the process died here")

    monkeypatch.setattr(oauth_tokens_module, "_after_refresh", crash)
    await wait_until_expired(account.id)
    with pytest.raises(RuntimeError):
        await with_tokens.tokens.current_access_token(account.id)
    saved = await stored_refresh_token(account.id, with_tokens)
    assert saved != first
    monkeypatch.undo()
    await wait_until_expired(account.id)
    assert await with_tokens.tokens.current_access_token(account.id) is not None  # the saved one works
    assert oauth_server.token_requests["refresh_token"] == 2


async def test_revoked_consent_needs_reauth_and_nothing_is_tried_again(
    admin: User, rep: User, oauth_account: TestMailbox, oauth_server: OAuthServer,
    with_tokens: SyncServices, db: Settings,
) -> None:
    oauth_server.access_token_lifetime = 2
    account = await signed_in(admin, rep, oauth_account, oauth_server, with_tokens, db)
    assert (await sync_account(account.id, with_tokens)).state != SyncState.NEEDS_REAUTH
    oauth_server.revoke_grants(oauth_account.address)
    await wait_until_expired(account.id)
    report = await sync_account(account.id, with_tokens)
    assert report.state == SyncState.NEEDS_REAUTH
    assert "Sign in with Gmail" in report.error and "reconnect" in report.error
    requests, introspections = sum(oauth_server.token_requests.values()), oauth_server.introspections
    for _ in range(3):
        await sync_account(account.id, with_tokens)
    with pytest.raises(oauth_tokens_module.OAuthReconnectNeeded):
        await with_tokens.tokens.current_access_token(account.id)
    assert sum(oauth_server.token_requests.values()) == requests  # no refresh tried again
    assert oauth_server.introspections == introspections  # and no IMAP login
    await account.refresh_from_db()
    assert account.sync_state == SyncState.NEEDS_REAUTH
    # a new consent renews the grant and the account syncs again
    await store_grant(account.id, "gmail", oauth_server.issue_tokens(oauth_account.address), with_tokens.secrets)
    assert (await sync_account(account.id, with_tokens)).state != SyncState.NEEDS_REAUTH


async def test_a_down_token_endpoint_is_retried_not_reauth(
    admin: User, rep: User, oauth_account: TestMailbox, oauth_server: OAuthServer,
    with_tokens: SyncServices, db: Settings,
) -> None:
    oauth_server.access_token_lifetime = 2
    account = await signed_in(admin, rep, oauth_account, oauth_server, with_tokens, db)
    await wait_until_expired(account.id)
    oauth_server.token_endpoint_down = True
    with pytest.raises(TokenEndpointUnavailable) as raised:
        await sync_account(account.id, with_tokens)
    assert raised.value.code == ErrorCode.CONNECTION_FAILED
    await account.refresh_from_db()
    assert account.sync_state != SyncState.NEEDS_REAUTH
    oauth_server.token_endpoint_down = False
    report = await sync_account(account.id, with_tokens)
    assert report.state == SyncState.COMPLETE


async def test_disconnecting_revokes_the_grant(
    admin: User, rep: User, oauth_account: TestMailbox, oauth_server: OAuthServer,
    with_tokens: SyncServices, db: Settings,
) -> None:
    account = await signed_in(admin, rep, oauth_account, oauth_server, with_tokens, db)
    refresh_token = await stored_refresh_token(account.id, with_tokens)
    await disconnect_account(rep, account.id, confirm_email=oauth_account.address, tokens=with_tokens.tokens)
    assert not await MailAccount.exists(id=account.id)
    assert refresh_with(oauth_server, refresh_token).json()["error"] == "invalid_grant"
    assert all(t.revoked for t in oauth_server.tokens_of(oauth_account.address))


@pytest.mark.postgres_only  # the row lock is PostgreSQL's; on SQLite one process is the deployment
async def test_two_processes_refresh_once_on_postgresql(
    admin: User, rep: User, oauth_account: TestMailbox, oauth_server: OAuthServer,
    with_tokens: SyncServices, db: Settings,
) -> None:
    oauth_server.access_token_lifetime = 2
    account = await signed_in(admin, rep, oauth_account, oauth_server, with_tokens, db)
    # Two instances: two sets of asyncio locks, as in two server processes; only the row
    # lock (SELECT ... FOR UPDATE on separate pool connections) keeps them apart.
    other = OAuthTokens(secrets=with_tokens.secrets, registry=with_tokens.registry, settings=db,
                        policy=with_tokens.policy)
    await wait_until_expired(account.id)
    got = await asyncio.gather(*(t.current_access_token(account.id)
                                 for t in [with_tokens.tokens, other] * 3))
    assert len({t.reveal() for t in got}) == 1
    assert oauth_server.token_requests["refresh_token"] == 1
