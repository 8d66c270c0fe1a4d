"""OAuth2 access tokens that refresh themselves, for accounts signed in with Google/Microsoft.

An account's :class:`~..db.models.OAuthGrant` holds its refresh and access tokens (encrypted).
:meth:`OAuthTokens.current_access_token` returns a valid access token, refreshing it at the
provider's token endpoint (Authlib's ``AsyncOAuth2Client``) when it expires within the
margin: 10 % of its lifetime, at most :data:`MAX_REFRESH_MARGIN` seconds.

One refresh per expiry, however many want a token at once:

* in the process, an ``asyncio.Lock`` per account; whoever gets it second re-reads the grant
  and finds it fresh;
* across processes on PostgreSQL, the grant's row is locked (``SELECT … FOR UPDATE``) for the
  refresh, inside a transaction; again the second holder re-reads a fresh grant. On SQLite
  one process is the deployment, and a transaction held over an HTTP request would stop
  every other writer, so the asyncio lock is the only lock there.

Providers rotate refresh tokens (each refresh answers a new one and the old one stops
working), so the token response is saved at once, in the transaction that holds the row
lock, before anything else is done with it; when the provider did not rotate, the old
refresh token is kept. The refresh runs as a task of its own that a cancelled caller does
not cancel, so a token response that arrived is always saved.

``invalid_grant`` (consent withdrawn, password changed) puts the account in
``NEEDS_REAUTH`` with a message asking to reconnect, and marks the grant invalid: no refresh
and no login is tried until a new consent replaces it (:func:`~.oauth_grants.store_grant`). A token
endpoint that is down, slow or answers 5xx is a retryable ``CONNECTION_FAILED``/``TIMEOUT``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import httpx2
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from tortoise import connections
from tortoise.transactions import in_transaction

from ..credentials import Secret, SecretBox
from ..db.models import MailAccount, OAuthGrant, SyncState
from ..errors import ErrorCode, SalesInboxError
from ..mail_accounts.stored_logins import AccountServers, stored_logins
from ..observability.metrics import TOKEN_REFRESHES
from ..plugin_host.provider_registry import ProviderRegistry
from ..plugin_host.providers import AuthKind
from ..settings import Settings
from ..transport.server_login import ConnectPolicy
from .oauth_clients import oauth_client_for_sign_in
from .oauth_grants import apply_token, check_endpoint_host, token_client

__all__ = [
    "account_logins",
    "MAX_REFRESH_MARGIN",
    "OAuthReconnectNeeded",
    "OAuthTokens",
    "TokenEndpointUnavailable",
    "reconnect_hint",
    "reconnect_message",
]

log = logging.getLogger(__name__)

#: refresh this many seconds before expiry at most (10 % of the lifetime when shorter)
MAX_REFRESH_MARGIN = 60.0


class OAuthReconnectNeeded(SalesInboxError):
    """The provider refused the account's grant: the user must sign in again."""

    def __init__(self, account_id: int, provider: str, message: str) -> None:
        super().__init__(ErrorCode.AUTHENTICATION_FAILED, message)
        self.account_id = account_id
        self.provider = provider


class TokenEndpointUnavailable(SalesInboxError):
    """The token endpoint could not give a token now (down, 5xx, timeout): retry later."""


def reconnect_message(provider_name: str, reconnect_hint: str | None = None) -> str:
    """What a user reads when the grant was refused. ``reconnect_hint`` says how to start the
    consent again (:func:`reconnect_hint`: the mutation ``startOAuthSignIn``)."""
    how = reconnect_hint or f'reconnect the account with "Sign in with {provider_name}"'
    return (
        f"{provider_name} no longer accepts this account's sign-in (the access was withdrawn "
        f"or the password changed): {how} to renew it."
    )


def reconnect_hint(provider_name: str, provider: str, account_id: int) -> str:
    """How a user renews a refused grant: the consent flow (core/oauth/oauth_sign_in.py) started
    again for the same account."""
    return (
        f'reconnect it with "Sign in with {provider_name}" (the app\'s "Connect with '
        f'{provider_name}", i.e. the mutation startOAuthSignIn with provider "{provider}" and '
        f'accountId "{account_id}")'
    )


def _is_postgres() -> bool:
    return bool(connections.get("default").capabilities.dialect == "postgres")


async def account_logins(
    account: MailAccount, secrets: SecretBox, tokens: OAuthTokens | None
) -> AccountServers:
    """The account's logins (:func:`~..mail_accounts.stored_logins.stored_logins`) with a current access token as
    the secret when the account has an OAuth grant; unchanged otherwise (a password, or an
    access token pasted by the user, which nobody refreshes).

    :raises OAuthReconnectNeeded: see :meth:`OAuthTokens.current_access_token`.
    :raises TokenEndpointUnavailable: idem.
    """
    logins = stored_logins(account, secrets, tokens.registry if tokens is not None else None)
    if tokens is None or account.imap_auth_kind != AuthKind.XOAUTH2:
        return logins
    token = await tokens.current_access_token(account.id)
    if token is None:
        return logins
    return replace(logins, imap=replace(logins.imap, secret=token), smtp=replace(logins.smtp, secret=token))


class OAuthTokens:
    """Access tokens of the accounts that have an :class:`OAuthGrant`, refreshed as needed.

    One instance per process (its locks serialise the process's refreshes per account).
    """

    def __init__(
        self, *, secrets: SecretBox, registry: ProviderRegistry, settings: Settings,
        policy: ConnectPolicy | None = None,
    ) -> None:
        self.secrets = secrets
        self.registry = registry
        self.settings = settings
        self.policy = policy or ConnectPolicy.from_settings(settings)
        self._locks: dict[int, asyncio.Lock] = {}

    # ---------------------------------------------------------------- tokens

    async def current_access_token(self, account_id: int) -> Secret | None:
        """A valid access token of ``account_id``, refreshed when it expires within the
        margin; ``None`` when the account has no grant (a pasted token, or a password).

        :raises OAuthReconnectNeeded: the grant was refused (now or earlier): the account
            is in ``NEEDS_REAUTH``; nothing was sent to the provider if it was earlier.
        :raises TokenEndpointUnavailable: ``CONNECTION_FAILED``/``TIMEOUT``, retry later.
        :raises SalesInboxError: ``NOT_FOUND`` when no admin set up the provider's client,
            ``HOST_NOT_ALLOWED`` for a token endpoint on a private address.
        """
        grant = await OAuthGrant.get_or_none(account_id=account_id)
        if grant is None:
            return None
        if grant.invalid_at is not None:
            raise self._reconnect(grant)
        if self._fresh(grant, _now()):
            return self.secrets.decrypt(grant.access_token)
        # A task of its own: a caller cancelled mid-refresh must not abandon a token
        # response between its arrival and its save (the old refresh token is dead by then).
        task = asyncio.ensure_future(self._refresh(account_id))
        task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def has_grant(self, account_id: int) -> bool:
        """Whether ``account_id`` signs in with an OAuth grant."""
        return await OAuthGrant.exists(account_id=account_id)

    def _fresh(self, grant: OAuthGrant, now: datetime) -> bool:
        expires = grant.access_token_expires_at
        if expires is None:
            return True
        lifetime = max((expires - grant.access_token_issued_at).total_seconds(), 0.0)
        margin = min(MAX_REFRESH_MARGIN, lifetime / 10)
        return (expires - now).total_seconds() > margin

    def _lock(self, account_id: int) -> asyncio.Lock:
        return self._locks.setdefault(account_id, asyncio.Lock())

    async def _refresh(self, account_id: int) -> Secret | None:
        async with self._lock(account_id):
            if _is_postgres():
                async with in_transaction() as conn:
                    grant = await OAuthGrant.filter(account_id=account_id).select_for_update().using_db(conn).first()
                    outcome = await self._refresh_grant(grant, conn)
                # committed: the new tokens are saved before anything below can fail
            else:
                grant = await OAuthGrant.get_or_none(account_id=account_id)
                outcome = await self._refresh_grant(grant, None)
        if isinstance(outcome, Exception):
            raise outcome
        if outcome is not None and grant is not None:
            await _after_refresh(account_id, grant)
        return outcome

    async def _refresh_grant(self, grant: OAuthGrant | None, conn: Any) -> Secret | Exception | None:
        """Refresh ``grant`` (already locked) unless another holder did; save at once.
        Returns the token, or the exception to raise once the transaction is over (raising
        inside it would roll back the grant's invalidation)."""
        if grant is None:
            return None  # disconnected meanwhile
        if grant.invalid_at is not None:
            return self._reconnect(grant)
        if self._fresh(grant, _now()):
            return self.secrets.decrypt(grant.access_token)  # another holder refreshed
        if grant.refresh_token is None:
            return await self._invalidate(grant, conn)
        try:
            token = await self._request_refresh(grant)
        except OAuthError as error:
            if error.error == "invalid_grant":
                TOKEN_REFRESHES.labels("refused").inc()
                return await self._invalidate(grant, conn)
            TOKEN_REFRESHES.labels("failed").inc()
            return _endpoint_error(grant.provider, error)
        except SalesInboxError as error:
            TOKEN_REFRESHES.labels("failed").inc()
            return error
        # Saved before anything else: the provider may have just retired the old refresh
        # token, so this row is the only place the valid one exists (same transaction as the
        # row lock on PostgreSQL, committed as soon as the caller leaves it).
        apply_token(grant, token, self.secrets, _now())
        await grant.save(using_db=conn)
        TOKEN_REFRESHES.labels("refreshed").inc()
        return Secret(str(token["access_token"]))

    async def _request_refresh(self, grant: OAuthGrant) -> Mapping[str, Any]:
        organisation_id = await _organisation_of(grant.account_id)
        config, client_secret = await oauth_client_for_sign_in(
            organisation_id, grant.provider, registry=self.registry, secrets=self.secrets,
            settings=self.settings,
        )
        await self._check_host(config.token_url)
        assert grant.refresh_token is not None  # the caller returned early without one
        refresh_token = self.secrets.decrypt(grant.refresh_token)
        try:
            async with self._client(config.client_id, client_secret) as client:
                token: Mapping[str, Any] = await client.refresh_token(
                    config.token_url, refresh_token=refresh_token.reveal()
                )
                return token
        except OAuthError:
            raise
        except httpx2.TimeoutException:
            raise TokenEndpointUnavailable(
                ErrorCode.TIMEOUT,
                f"The sign-in server of {self._name(grant.provider)} did not answer in time: "
                "retrying later.",
            ) from None
        except (httpx2.HTTPError, ValueError) as error:  # network failure, or a non-JSON answer
            log.warning("Token refresh of account %s failed: %s", grant.account_id, type(error).__name__)
            raise TokenEndpointUnavailable(
                ErrorCode.CONNECTION_FAILED,
                f"The sign-in server of {self._name(grant.provider)} cannot be reached or "
                "failed: retrying later.",
            ) from None

    def _client(self, client_id: str, client_secret: Secret) -> AsyncOAuth2Client:
        return token_client(client_id, client_secret, self.policy)

    async def _check_host(self, url: str) -> None:
        await check_endpoint_host(url, self.policy)

    async def _invalidate(self, grant: OAuthGrant, conn: Any) -> OAuthReconnectNeeded:
        error = self._reconnect(grant)
        grant.invalid_at = _now()
        await grant.save(using_db=conn, update_fields=["invalid_at"])
        await MailAccount.filter(id=grant.account_id).using_db(conn).update(
            sync_state=SyncState.NEEDS_REAUTH, sync_error=error.message
        )
        log.info("OAuth grant of account %s refused by the provider: the account needs reconnecting",
                 grant.account_id)
        return error

    def _reconnect(self, grant: OAuthGrant) -> OAuthReconnectNeeded:
        name = self._name(grant.provider)
        return OAuthReconnectNeeded(
            grant.account_id,
            grant.provider,
            reconnect_message(name, reconnect_hint(name, grant.provider, grant.account_id)),
        )

    def _name(self, provider: str) -> str:
        try:
            return self.registry.get(provider).display_name
        except SalesInboxError:
            return provider

    # ------------------------------------------------------------ revocation

    async def prepare_revocation(self, account_id: int) -> Callable[[], Awaitable[bool]] | None:
        """What revokes ``account_id``'s refresh token at the provider (RFC 7009), read now so
        that it still works once the account (and its grant) is deleted; ``None`` when there
        is nothing to revoke or nowhere to (no grant, no revocation endpoint, no client).
        Never raises: revocation is best effort."""
        try:
            grant = await OAuthGrant.get_or_none(account_id=account_id)
            if grant is None or grant.refresh_token is None or grant.invalid_at is not None:
                return None
            organisation_id = await _organisation_of(account_id)
            config, client_secret = await oauth_client_for_sign_in(
                organisation_id, grant.provider, registry=self.registry, secrets=self.secrets,
                settings=self.settings,
            )
            refresh_token = self.secrets.decrypt(grant.refresh_token)
        except Exception as error:  # noqa: BLE001 - best effort: never blocks a disconnection
            log.warning("Cannot revoke the OAuth grant of account %s: %s", account_id, type(error).__name__)
            return None
        url = config.revocation_url
        if not url:
            return None
        return partial(self.revoke_token, url, config.client_id, client_secret, refresh_token, account_id)

    async def revoke_token(self, url: str, client_id: str, client_secret: Secret,
                           refresh_token: Secret, account_id: int) -> bool:
        """POST ``refresh_token`` to the revocation endpoint ``url``; logs the outcome, never
        raises. Returns whether the provider accepted it."""
        try:
            await self._check_host(url)
            async with self._client(client_id, client_secret) as client:
                response = await client.revoke_token(
                    url, token=refresh_token.reveal(), token_type_hint="refresh_token"
                )
            accepted: bool = response.status_code == 200
        except Exception as error:  # noqa: BLE001 - best effort
            log.warning("Could not revoke the OAuth grant of account %s: %s", account_id,
                        type(error).__name__)
            return False
        log.log(logging.INFO if accepted else logging.WARNING,
                "Revocation of the OAuth grant of account %s: HTTP %s", account_id, response.status_code)
        return accepted


async def _after_refresh(account_id: int, grant: OAuthGrant) -> None:
    """What follows a saved refresh (only logging): a failure here loses nothing."""
    log.debug("Access token of account %s refreshed (grant serial %s)", account_id, grant.serial)


async def _organisation_of(account_id: int) -> int:
    account = await MailAccount.get(id=account_id).select_related("user")
    return account.user.organisation_id


def _endpoint_error(provider: str, error: OAuthError) -> TokenEndpointUnavailable:
    """Any refusal but ``invalid_grant``: a client misconfigured by the admin, or the server's
    ``temporarily_unavailable``; retried, never ``NEEDS_REAUTH`` (the user can fix nothing)."""
    if error.error in {"invalid_client", "unauthorized_client"}:
        message = (
            f"The sign-in server of {provider} refused the organisation's OAuth client: an "
            "admin must check its client id and secret (setOAuthClient)."
        )
    else:
        message = f"The sign-in server of {provider} could not refresh the token ({error.error}): retrying later."
    return TokenEndpointUnavailable(ErrorCode.CONNECTION_FAILED, message)


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: an orphaned refresh's failure is not "never retrieved"


def _now() -> datetime:
    return datetime.now(UTC)
