"""The "Sign in with Google/Microsoft" consent: start it, and finish it at the callback.

:func:`start_sign_in` records an :class:`~..db.models.OAuthSignIn` (a random ``state`` bound to
the user, single use, 10 minutes; the PKCE verifier encrypted) and answers the provider's
consent URL: authorisation-code flow with PKCE S256, the declared scopes and parameters, the
organisation's client id and ``login_hint`` when the mailbox is known.

:func:`complete_sign_in` is the logic of ``GET /oauth/callback``: it checks the state, takes
the provider's refusal, exchanges the code (with the verifier), learns the mailbox address
(ID-token claims, else the userinfo endpoint), verifies IMAP and SMTP with the new access
token exactly like a password account (:func:`~..mail_accounts.accounts.connect_account` /
:func:`~..mail_accounts.accounts.update_credentials`), then stores the grant. Every outcome, failure
included, is saved on the row (``status``, ``error_code``, ``error_message``, ``account_id``)
so that a polling frontend sees it, and returned for the callback's page or redirect. No
token or secret is ever in an outcome or a log line.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import secrets as random
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
from authlib.integrations.httpx_client import OAuthError

from ..address_normalisation import normalise_email
from ..credentials import Secret, SecretBox
from ..db.models import MailAccount, OAuthSignIn, OAuthSignInStatus, SharingPermission, User
from ..errors import ErrorCode, SalesInboxError, invalid_input, not_found
from ..mail_accounts.accounts import ConnectAccountInput, ServerInput, connect_account, get_account, update_credentials
from ..plugin_host.provider_registry import ProviderRegistry
from ..plugin_host.providers import AuthKind, Security
from ..settings import Settings
from ..transport.server_login import ConnectPolicy
from .oauth_clients import OAuthClientSettings, oauth_client_for_sign_in
from .oauth_grants import check_endpoint_host, store_grant, token_client
from .oauth_launch import browser_matches, browser_mismatch, launch_url, new_ticket, start_again

log = logging.getLogger(__name__)

#: how long a started sign-in waits for the browser to come back
SIGN_IN_LIFETIME = timedelta(minutes=10)
#: how long a finished or expired sign-in stays for a frontend to poll, then it is deleted
SIGN_IN_RETENTION = timedelta(days=7)
_PROVIDER_ERROR = re.compile(r"[a-z_]{1,64}")


@dataclass(frozen=True)
class SignInRequest:
    """What a user asks for when starting a sign-in (what ``connect_account`` takes, minus
    the address and secret the provider will give). ``account_id``: reconnect that account;
    ``email``: the mailbox to suggest at the provider (``login_hint``)."""

    provider: str
    account_id: int | None = None
    email: str | None = None
    display_name: str = ""
    sharing: SharingPermission = SharingPermission.PRIVATE
    sync_days_limit: int | None = None
    options: dict[str, str] = field(default_factory=dict)
    incoming: ServerInput | None = None
    outgoing: ServerInput | None = None


@dataclass(frozen=True)
class StartedSignIn:
    """The link to open in the user's browser (this server's ``/oauth/start``, which
    binds the browser and redirects to the provider's consent), and the sign-in to poll."""

    sign_in: OAuthSignIn
    authorization_url: str


@dataclass(frozen=True)
class SignInOutcome:
    """How a callback ended, for its page or frontend redirect (no secret in it)."""

    status: OAuthSignInStatus
    message: str
    error_code: str | None = None
    account_id: int | None = None
    email: str | None = None
    frontend_redirect_url: str | None = None
    sign_in_id: int | None = None  # None when the state named no sign-in


def _now() -> datetime:
    return datetime.now(UTC)


def _server_dict(server: ServerInput | None) -> dict[str, Any] | None:
    if server is None:
        return None
    if server.secret is not None:
        raise invalid_input("A sign-in takes no password for the servers.", field="incoming")
    return {"host": server.host, "port": server.port, "security": server.security.value,
            "username": server.username}


def _server_input(saved: dict[str, Any] | None) -> ServerInput | None:
    if saved is None:
        return None
    return ServerInput(host=saved["host"], port=saved["port"], security=Security(saved["security"]),
                       username=saved.get("username"))


async def start_sign_in(
    actor: User, request: SignInRequest, *, registry: ProviderRegistry, secrets: SecretBox,
    settings: Settings, policy: ConnectPolicy,
) -> StartedSignIn:
    """Record a sign-in for ``actor``, build the provider's consent URL and answer the
    single-use link that opens it in a browser (core/oauth/oauth_launch.py). Sign-ins that ended
    more than :data:`SIGN_IN_RETENTION` ago are deleted on the way.

    :raises SalesInboxError: ``UNKNOWN_PROVIDER``; ``INVALID_INPUT`` for a provider without
        OAuth, a reconnect of an account of another provider, a bad address or day limit;
        ``NOT_FOUND`` when no admin configured the provider's client (names
        ``setOAuthClient``) or for an account the actor may not manage.
    """
    config, client_secret = await oauth_client_for_sign_in(
        actor.organisation_id, request.provider, registry=registry, secrets=secrets, settings=settings
    )
    hint = normalise_email(request.email) if request.email else None
    if request.account_id is not None:
        target = await get_account(actor, request.account_id)
        if target.provider != request.provider:
            raise invalid_input(
                f"Account {target.email} is a {target.provider} account: reconnect it with "
                f'provider "{target.provider}".', field="provider",
            )
        hint = target.email
    if request.sync_days_limit is not None and not 1 <= request.sync_days_limit <= 36500:
        raise invalid_input("syncDaysLimit must be between 1 and 36500 days.", field="syncDaysLimit")
    saved = asdict(request)
    saved.update(incoming=_server_dict(request.incoming), outgoing=_server_dict(request.outgoing),
                 sharing=request.sharing.value, email=hint)
    verifier, state = random.token_urlsafe(64), random.token_urlsafe(32)
    server = config.server
    params = dict(server.authorization_params)
    if hint:
        params["login_hint"] = hint
    async with token_client(config.client_id, client_secret, policy, redirect_uri=config.redirect_url,
                            scope=" ".join(server.scopes), code_challenge_method="S256") as client:
        url, _ = client.create_authorization_url(
            config.authorization_url, state=state, code_verifier=verifier, **params
        )
    ticket, ticket_digest = new_ticket()
    link = launch_url(settings, ticket)
    await OAuthSignIn.filter(expires_at__lt=_now() - SIGN_IN_RETENTION).delete()
    row = await OAuthSignIn.create(
        user=actor, provider=request.provider, state=state, code_verifier=secrets.encrypt(verifier),
        launch_ticket=ticket_digest, authorization_url=url,
        request=saved, target_account_id=request.account_id, expires_at=_now() + SIGN_IN_LIFETIME,
    )
    log.info("OAuth sign-in %s started by user %s for provider %s", row.id, actor.id, request.provider)
    return StartedSignIn(row, link)


async def get_sign_in(actor: User, sign_in_id: int) -> OAuthSignIn:
    """One of ``actor``'s sign-ins, else ``NOT_FOUND``."""
    row = await OAuthSignIn.get_or_none(id=sign_in_id, user_id=actor.id)
    if row is None:
        raise not_found("sign-in")
    return row


class _Failed(Exception):
    def __init__(self, error: SalesInboxError) -> None:
        self.error = error


async def complete_sign_in(
    query: Mapping[str, str], cookies: Mapping[str, str], *, registry: ProviderRegistry,
    secrets: SecretBox, settings: Settings, policy: ConnectPolicy, request_sync: Callable[[int], None],
) -> SignInOutcome:
    """Finish the sign-in the callback's ``query`` (``state`` with ``code`` or ``error``)
    belongs to, in the browser whose ``cookies`` hold the sign-in's binding (else
    ``OAUTH_BROWSER_MISMATCH``); never raises a :class:`SalesInboxError`: a failure is the
    outcome (saved on the sign-in when the state was known and unused)."""
    state = query.get("state") or ""
    row = await OAuthSignIn.get_or_none(state=state).select_related("user") if state else None
    if row is None:
        return SignInOutcome(OAuthSignInStatus.FAILED, start_again(
            "This sign-in is unknown to the server (an old or altered link)."),
            ErrorCode.OAUTH_STATE_INVALID.value)
    frontend = await _frontend_url(row, registry, secrets, settings)
    claimed = await OAuthSignIn.filter(id=row.id, used_at=None).update(used_at=_now())
    if not claimed:
        return SignInOutcome(OAuthSignInStatus.FAILED, start_again(
            "This sign-in was already used (a reloaded page or a repeated link)."),
            ErrorCode.OAUTH_STATE_INVALID.value, frontend_redirect_url=frontend, sign_in_id=row.id)
    try:
        account = await _complete(row, query, cookies, registry=registry, secrets=secrets, settings=settings,
                                  policy=policy)
    except _Failed as failed:
        return await _finish_failed(row, failed.error, frontend)
    except SalesInboxError as error:
        return await _finish_failed(row, error, frontend)
    row.status, row.account_id = OAuthSignInStatus.CONNECTED, account.id
    await row.save(update_fields=["status", "account_id"])
    request_sync(account.id)
    log.info("OAuth sign-in %s connected account %s", row.id, account.id)
    return SignInOutcome(OAuthSignInStatus.CONNECTED,
                         f"{account.email} is connected: its mail is being synced into the CRM. "
                         "You can close this page.", account_id=account.id, email=account.email,
                         frontend_redirect_url=frontend, sign_in_id=row.id)


async def _frontend_url(row: OAuthSignIn, registry: ProviderRegistry, secrets: SecretBox,
                        settings: Settings) -> str | None:
    try:
        config, _ = await oauth_client_for_sign_in(row.user.organisation_id, row.provider,
                                                   registry=registry, secrets=secrets, settings=settings)
    except SalesInboxError:
        return None
    return config.frontend_redirect_url


async def _finish_failed(row: OAuthSignIn, error: SalesInboxError, frontend: str | None) -> SignInOutcome:
    row.status, row.error_code, row.error_message = OAuthSignInStatus.FAILED, error.code.value, error.message
    await row.save(update_fields=["status", "error_code", "error_message"])
    log.info("OAuth sign-in %s failed: %s", row.id, error.code.value)
    return SignInOutcome(OAuthSignInStatus.FAILED, error.message, error.code.value,
                         account_id=row.target_account_id, frontend_redirect_url=frontend,
                         sign_in_id=row.id)


async def _complete(row: OAuthSignIn, query: Mapping[str, str], cookies: Mapping[str, str], *,
                    registry: ProviderRegistry, secrets: SecretBox, settings: Settings,
                    policy: ConnectPolicy) -> MailAccount:
    if row.expires_at <= _now():
        raise _Failed(SalesInboxError(ErrorCode.OAUTH_STATE_EXPIRED, start_again(
            f"The sign-in waited more than {int(SIGN_IN_LIFETIME.total_seconds() // 60)} minutes.")))
    if not browser_matches(row, dict(cookies)):
        raise _Failed(browser_mismatch())
    if query.get("error"):
        raise _Failed(_provider_refusal(query["error"], registry.get(row.provider).display_name))
    code = query.get("code")
    if not code:
        raise _Failed(SalesInboxError(ErrorCode.OAUTH_STATE_INVALID, start_again(
            "The provider sent the browser back without an authorisation code.")))
    user: User = row.user
    config, client_secret = await oauth_client_for_sign_in(
        user.organisation_id, row.provider, registry=registry, secrets=secrets, settings=settings)
    name = registry.get(row.provider).display_name
    token = await _exchange(config, client_secret, code, secrets.decrypt(row.code_verifier), policy, name)
    access = Secret(str(token["access_token"]))
    address = await _mailbox_address(token, access, config, policy, name)
    saved = row.request
    target = await MailAccount.get_or_none(id=row.target_account_id) if row.target_account_id else None
    if row.target_account_id is not None and target is None:
        raise not_found("mail account")
    if target is not None and target.email != address:
        raise SalesInboxError(ErrorCode.WRONG_MAILBOX, (
            f"You signed in to {name} as {address}, but this reconnects {target.email}: sign in "
            f"again and choose {target.email} at {name}."), field="accountId")
    declared = saved.get("email")
    if target is None and declared and declared != address:
        raise SalesInboxError(ErrorCode.WRONG_MAILBOX, (
            f"You signed in to {name} as {address}, but asked to connect {declared}: sign in "
            f"again and choose {declared} at {name}, or start without an address."), field="email")
    existing = target or await MailAccount.get_or_none(user_id=user.id, email=address)
    if existing is not None:  # renewed; an account that used a password now signs in with OAuth
        account = await update_credentials(user, existing.id, secret=access, smtp_secret=None,
                                           secrets=secrets, registry=registry, policy=policy,
                                           auth_kind=AuthKind.XOAUTH2)
    else:
        account = await connect_account(user, ConnectAccountInput(
            provider=row.provider, email=address, secret=access, display_name=saved.get("display_name") or "",
            auth_kind=AuthKind.XOAUTH2, options=saved.get("options") or {},
            incoming=_server_input(saved.get("incoming")), outgoing=_server_input(saved.get("outgoing")),
            sharing=SharingPermission(saved.get("sharing") or SharingPermission.PRIVATE),
            sync_days_limit=saved.get("sync_days_limit"),
        ), registry=registry, secrets=secrets, policy=policy)
    await store_grant(account.id, row.provider, token, secrets)
    return account


def _provider_refusal(error: str, name: str) -> SalesInboxError:
    if error == "access_denied":
        return SalesInboxError(ErrorCode.OAUTH_DENIED, (
            f"The access to the mailbox was not granted at {name}: nothing was connected. To "
            "connect it, start again and approve the access."))
    shown = error if _PROVIDER_ERROR.fullmatch(error) else "an unknown error"
    return SalesInboxError(ErrorCode.AUTHENTICATION_FAILED, (
        f"{name} refused the sign-in ({shown}): start again; if it persists, an admin must check "
        "the organisation's OAuth client (setOAuthClient)."))


async def _exchange(config: OAuthClientSettings, client_secret: Secret, code: str, verifier: Secret,
                    policy: ConnectPolicy, name: str) -> Mapping[str, Any]:
    """The token response for ``code`` (PKCE verifier sent), or a typed error."""
    await check_endpoint_host(config.token_url, policy)
    try:
        async with token_client(config.client_id, client_secret, policy,
                                redirect_uri=config.redirect_url) as client:
            token: Mapping[str, Any] = await client.fetch_token(config.token_url, grant_type="authorization_code",
                                             code=code, code_verifier=verifier.reveal())
    except OAuthError as error:
        if error.error in {"invalid_grant", "invalid_request"}:
            raise SalesInboxError(ErrorCode.AUTHENTICATION_FAILED, start_again(
                f"{name} did not accept the sign-in's code (it expired or was already used).")) from None
        if error.error in {"invalid_client", "unauthorized_client"}:
            raise SalesInboxError(ErrorCode.AUTHENTICATION_FAILED, (
                f"{name} refused the organisation's OAuth client: an admin must check its client "
                "id and secret (setOAuthClient).")) from None
        raise _unavailable(ErrorCode.CONNECTION_FAILED, name) from None
    except httpx2.TimeoutException:
        raise _unavailable(ErrorCode.TIMEOUT, name) from None
    except (httpx2.HTTPError, ValueError) as error:
        log.warning("OAuth code exchange failed: %s", type(error).__name__)
        raise _unavailable(ErrorCode.CONNECTION_FAILED, name) from None
    if not token.get("access_token"):
        raise SalesInboxError(ErrorCode.AUTHENTICATION_FAILED, start_again(f"{name} gave no access token."))
    return token


def _unavailable(code: ErrorCode, name: str) -> SalesInboxError:
    return SalesInboxError(code, (
        f"The sign-in server of {name} cannot be reached or failed: nothing was connected; try "
        "again in a few minutes (start the sign-in again)."))


def _id_token_claims(token: Mapping[str, Any]) -> dict[str, Any]:
    """The ID token's claims, unverified: it came straight from the token endpoint over the
    connection we opened, which OpenID Connect Core §3.1.3.7 accepts in place of a signature
    check; it only names the mailbox, which IMAP and SMTP then verify."""
    raw = token.get("id_token")
    if not isinstance(raw, str) or raw.count(".") != 2:
        return {}
    payload = raw.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return {}
    return claims if isinstance(claims, dict) else {}


async def _mailbox_address(token: Mapping[str, Any], access: Secret, config: OAuthClientSettings,
                           policy: ConnectPolicy, name: str) -> str:
    """The address of the signed-in mailbox: the declaration's claims, in the ID token then
    at the userinfo endpoint, first present wins."""
    claims_names = config.server.address_claims
    sources = [_id_token_claims(token)]
    if config.userinfo_url and not any(sources[0].get(c) for c in claims_names):
        await check_endpoint_host(config.userinfo_url, policy)
        try:
            async with httpx2.AsyncClient(timeout=policy.timeout, follow_redirects=False) as http:
                answer = await http.get(config.userinfo_url,
                                        headers={"Authorization": f"Bearer {access.reveal()}"})
            answer.raise_for_status()
            sources.append(answer.json())
        except httpx2.TimeoutException:
            raise _unavailable(ErrorCode.TIMEOUT, name) from None
        except (httpx2.HTTPError, ValueError) as error:
            log.warning("OAuth userinfo request failed: %s", type(error).__name__)
            raise _unavailable(ErrorCode.CONNECTION_FAILED, name) from None
    for source in sources:
        for claim in claims_names:
            value = source.get(claim) if isinstance(source, dict) else None
            if isinstance(value, str) and "@" in value:
                return normalise_email(value)
    raise SalesInboxError(ErrorCode.AUTHENTICATION_FAILED, (
        f"{name} did not tell which mailbox you signed in to: an admin must check that the "
        "OAuth client may read the e-mail address (scopes openid and email)."))
