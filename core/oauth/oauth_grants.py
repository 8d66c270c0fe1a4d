"""An account's OAuth grant as stored, and the HTTP client both the consent flow and the
token refresh use.

:func:`store_grant` saves a consent's token response (encrypted with the secret key, like
passwords); :func:`apply_token` puts any token response into a grant, keeping the stored
refresh token when the provider did not rotate it. :func:`token_client` is Authlib's client
for the organisation's OAuth client, and :func:`check_endpoint_host` the SSRF guard on an
OAuth endpoint, as for mail servers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from authlib.integrations.httpx_client import AsyncOAuth2Client
from tortoise.transactions import in_transaction

from ..credentials import Secret, SecretBox
from ..db.models import MailAccount, OAuthGrant, SyncState
from ..errors import ErrorCode, SalesInboxError
from ..transport.netguard import resolve_mail_host
from ..transport.server_login import ConnectPolicy

#: the lifetime assumed when a token response has no ``expires_in`` (Google's and Microsoft's)
DEFAULT_LIFETIME = 3600


def token_client(client_id: str, client_secret: Secret, policy: ConnectPolicy, **kwargs: Any) -> AsyncOAuth2Client:
    """An Authlib client of the organisation's OAuth client (``client_secret_post``, the
    mail timeout, no redirects followed); use it as an async context manager."""
    return AsyncOAuth2Client(
        client_id=client_id, client_secret=client_secret.reveal(),
        token_endpoint_auth_method="client_secret_post", timeout=policy.timeout,
        follow_redirects=False, **kwargs,
    )


async def check_endpoint_host(url: str, policy: ConnectPolicy) -> None:
    """The SSRF guard on an OAuth endpoint's host (``HOST_NOT_ALLOWED`` for a private
    address unless ``SALESINBOX_ALLOW_PRIVATE_HOSTS``)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    await asyncio.to_thread(resolve_mail_host, parts.hostname or "", port, policy)


def _now() -> datetime:
    return datetime.now(UTC)


def apply_token(grant: OAuthGrant, token: Mapping[str, Any], secrets: SecretBox, now: datetime) -> None:
    """Put a token response into ``grant`` (not saved). A response without a refresh token
    keeps the stored one: the provider did not rotate it."""
    grant.access_token = secrets.encrypt(str(token["access_token"]))
    if token.get("refresh_token"):
        grant.refresh_token = secrets.encrypt(str(token["refresh_token"]))
    lifetime = token.get("expires_in")
    try:
        seconds = float(lifetime) if lifetime is not None else float(DEFAULT_LIFETIME)
    except (TypeError, ValueError):
        seconds = float(DEFAULT_LIFETIME)
    grant.access_token_issued_at = now
    grant.access_token_expires_at = now + timedelta(seconds=max(seconds, 0.0))
    if token.get("scope"):
        grant.scopes = str(token["scope"])
    grant.serial = (grant.serial or 0) + 1
    grant.invalid_at = None


async def store_grant(
    account_id: int, provider: str, token: Mapping[str, Any], secrets: SecretBox
) -> OAuthGrant:
    """Save a fresh token response (a consent's code exchange) as ``account_id``'s grant,
    replacing any previous one; an account waiting in ``NEEDS_REAUTH`` is ready to sync again.

    This is what the consent flow's callback calls. ``token`` is the provider's JSON answer
    (``access_token``, ``refresh_token``, ``expires_in``, ``scope``).
    """
    if not token.get("access_token"):
        raise SalesInboxError(
            ErrorCode.AUTHENTICATION_FAILED,
            "The provider's answer held no access token: sign in again.",
        )
    async with in_transaction():
        account = await MailAccount.get(id=account_id)
        grant = await OAuthGrant.get_or_none(account_id=account_id)
        if grant is None:
            grant = OAuthGrant(account_id=account_id, provider=provider, serial=0)
        elif not token.get("refresh_token"):
            grant.refresh_token = None  # a new consent without one: the old grant is gone
        grant.provider = provider
        apply_token(grant, token, secrets, _now())
        await grant.save()
        if account.sync_state == SyncState.NEEDS_REAUTH:
            account.sync_state = (
                SyncState.NEW if account.initial_sync_completed_at is None else SyncState.COMPLETE
            )
            account.sync_error = None
            await account.save(update_fields=["sync_state", "sync_error"])
    return grant
