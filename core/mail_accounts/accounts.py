"""Mail accounts: connect (verified before save), view server details, update credentials,
disconnect (docs/accounts.md).

Nothing is saved unless both the IMAP and the SMTP server accepted the credentials; the
secrets are stored encrypted and never returned. The excluded domains and extra From
addresses given when connecting are saved with the account, in one transaction, before its
first sync can start. A user manages their own accounts; an admin may manage anyone's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from ..address_normalisation import normalise_domain, normalise_email
from ..credentials import Secret, SecretBox
from ..crm.organisation import get_organisation
from ..db.models import (
    AccountExcludedDomain,
    Folder,
    FromAddress,
    MailAccount,
    Profile,
    SharingPermission,
    SyncState,
    User,
)
from ..errors import ErrorCode, SalesInboxError, invalid_input, not_found
from ..plugin_host.provider_registry import ProviderRegistry
from ..plugin_host.providers import (
    AuthKind,
    FolderRole,
    Security,
    ServerEndpoint,
    UsernameFormat,
)
from ..transport.server_login import ConnectPolicy, ServerLogin
from .account_verification import VerifiedServers, verify_servers
from .stored_logins import AccountServers, declared_mechanism, login_mechanism, stored_logins

if TYPE_CHECKING:  # oauth_tokens imports this module
    from ..oauth.oauth_tokens import OAuthTokens

#: the most From addresses an account may have, its own included
MAX_FROM_ADDRESSES = 50
#: the most excluded domains one connection may list (more can be added one by one)
MAX_EXCLUDED_DOMAINS_AT_CONNECT = 100


@dataclass(frozen=True)
class ServerInput:
    """Server details typed by the user (custom IMAP), or overrides of a preset."""

    host: str
    port: int
    security: Security
    username: str | None = None  # default: the account's email address
    secret: Secret | None = None  # default: the account's password (same credentials)


@dataclass(frozen=True)
class FromAddressInput:
    """An extra address the account may send as (an alias), given when connecting."""

    address: str
    name: str = ""


@dataclass(frozen=True)
class ConnectAccountInput:
    """What a user gives to connect a mailbox."""

    provider: str
    email: str
    secret: Secret  # password, app-specific password, or OAuth2 access token
    display_name: str = ""
    auth_kind: AuthKind | None = None  # default: the provider's preferred kind
    options: dict[str, str] = field(default_factory=dict)
    incoming: ServerInput | None = None
    outgoing: ServerInput | None = None
    sharing: SharingPermission = SharingPermission.PRIVATE
    sync_days_limit: int | None = None
    owner_id: int | None = None  # admins may connect on behalf of another user
    #: domains whose mail in this account is never shared (saved with the account)
    excluded_domains: tuple[str, ...] = ()
    #: extra From addresses (aliases), besides the account's own address
    from_addresses: tuple[FromAddressInput, ...] = ()


async def _owner(actor: User, owner_id: int | None) -> User:
    if owner_id is None or owner_id == actor.id:
        return actor
    if actor.profile != Profile.ADMIN:
        raise SalesInboxError(
            ErrorCode.FORBIDDEN, "Only an admin can connect an account for another user.",
            field="ownerId",
        )
    owner = await User.get_or_none(id=owner_id, organisation_id=actor.organisation_id)
    if owner is None:
        raise invalid_input(f"There is no user with id {owner_id}.", field="ownerId")
    return owner


async def get_account(actor: User, account_id: int) -> MailAccount:
    """An account the actor may manage (their own, or any when admin), else ``NOT_FOUND``."""
    account = await MailAccount.get_or_none(id=account_id).select_related("user")
    if account is None or account.user.organisation_id != actor.organisation_id:
        raise not_found("mail account")
    if account.user_id != actor.id and actor.profile != Profile.ADMIN:
        raise not_found("mail account")
    return account


async def list_accounts(actor: User, user_id: int | None = None) -> list[MailAccount]:
    """The accounts of ``user_id`` (default: the actor); admins may list anyone's."""
    target = actor.id if user_id is None else user_id
    if target != actor.id and actor.profile != Profile.ADMIN:
        raise SalesInboxError(ErrorCode.FORBIDDEN, "Only an admin can see other users' accounts.")
    return await MailAccount.filter(user_id=target).order_by("id")


def _username(provider_format: UsernameFormat, email: str, typed: str | None) -> str:
    if typed and typed.strip():
        return typed.strip()
    if provider_format == UsernameFormat.LOCAL_PART:
        return email.partition("@")[0]
    return email


def plan_servers(registry: ProviderRegistry, data: ConnectAccountInput, email: str) -> AccountServers:
    """Work out both logins from the provider's presets or the user's custom servers.

    Raises ``INVALID_INPUT`` for missing or contradictory server details.
    """
    spec = registry.get(data.provider)
    auth_kind = data.auth_kind or spec.auth_kinds[0]
    preset: set[str] = set()
    if spec.user_supplies_servers:
        if data.incoming is None or data.outgoing is None:
            raise invalid_input(
                "A custom IMAP account needs both the incoming and the outgoing server.",
                field="incoming" if data.incoming is None else "outgoing",
            )
        incoming, outgoing = data.incoming, data.outgoing
    else:
        endpoints = registry.resolve_endpoints(data.provider, email, data.options)
        if endpoints is None:  # a plugin without presets that did not ask for servers
            raise invalid_input(f"{spec.display_name} needs the server details.", field="incoming")
        incoming = data.incoming or _from_endpoint(endpoints.imap)
        outgoing = data.outgoing or _from_endpoint(endpoints.smtp)
        preset = {protocol for protocol, typed in (("imap", data.incoming), ("smtp", data.outgoing))
                  if typed is None}

    logins = []
    for protocol, server in (("imap", incoming), ("smtp", outgoing)):
        plan = registry.login_plan(data.provider, email, auth_kind, protocol)
        username = server.username if spec.user_supplies_servers else None
        logins.append(
            ServerLogin(
                host=server.host.strip().lower(),
                port=server.port,
                security=server.security,
                username=_username(spec.username_format, plan.username, username),
                secret=server.secret or data.secret,
                mechanism=plan.mechanism,
            )
        )
    imap, smtp = logins
    same = smtp.username == imap.username and smtp.secret == imap.secret
    return AccountServers(imap=imap, smtp=smtp, auth_kind=auth_kind, smtp_same_credentials=same,
                          preset=frozenset(preset))


def _from_endpoint(endpoint: ServerEndpoint) -> ServerInput:
    return ServerInput(host=endpoint.host, port=endpoint.port, security=endpoint.security)


async def _check_provider_allowed(registry: ProviderRegistry, provider: str) -> None:
    spec = registry.get(provider)
    organisation = await get_organisation()
    if provider in organisation.disabled_providers:
        raise SalesInboxError(
            ErrorCode.PROVIDER_DISABLED,
            f"Your administrator has turned off {spec.display_name} accounts: ask them, or "
            "connect another provider.",
            field="provider",
        )


def _validate_days(days: int | None) -> None:
    if days is not None and not 1 <= days <= 36500:
        raise invalid_input("syncDaysLimit must be between 1 and 36500 days.", field="syncDaysLimit")


def _excluded_domains(data: ConnectAccountInput) -> list[str]:
    """The excluded domains given when connecting, normalised, each once; ``INVALID_INPUT``
    (field ``excludedDomains``) for a malformed one or too many."""
    if len(data.excluded_domains) > MAX_EXCLUDED_DOMAINS_AT_CONNECT:
        raise invalid_input(
            f"At most {MAX_EXCLUDED_DOMAINS_AT_CONNECT} excluded domains can be given when connecting; "
            "add more afterwards with addAccountExcludedDomain.", field="excludedDomains",
        )
    domains = [normalise_domain(domain, field="excludedDomains") for domain in data.excluded_domains]
    return list(dict.fromkeys(domains))


def _from_aliases(data: ConnectAccountInput, email: str) -> list[tuple[str, str]]:
    """The extra From addresses given when connecting, as ``(address, name)``; ``INVALID_INPUT``
    (field ``fromAddresses``) for a malformed or repeated address, the account's own address
    (always a From address already) or too many."""
    if 1 + len(data.from_addresses) > MAX_FROM_ADDRESSES:
        raise invalid_input(f"An account can have at most {MAX_FROM_ADDRESSES} From addresses.",
                            field="fromAddresses")
    aliases: dict[str, str] = {}
    for alias in data.from_addresses:
        address = normalise_email(alias.address, field="fromAddresses")
        if address == email:
            raise invalid_input(f"{address} is the account's own address, always a From address: "
                                "list only the other addresses it may send as.", field="fromAddresses")
        if address in aliases:
            raise invalid_input(f"{address} is listed twice.", field="fromAddresses")
        aliases[address] = " ".join(alias.name.split())[:200]
    return list(aliases.items())


async def connect_account(
    actor: User,
    data: ConnectAccountInput,
    *,
    registry: ProviderRegistry,
    secrets: SecretBox,
    policy: ConnectPolicy,
) -> MailAccount:
    """Verify both servers, then save the account with its folders, its default From address
    and the excluded domains and From aliases given, all in one transaction (so the first
    sync, requested by the caller afterwards, already shares by them).

    The input is validated before any server is contacted. Raises ``INVALID_INPUT``, then
    the verification error (``AUTHENTICATION_FAILED`` with the provider's hint,
    ``CONNECTION_FAILED``, ``TLS_FAILED``, ``TIMEOUT``, ``IMAP_DISABLED``,
    ``HOST_NOT_ALLOWED``) or ``ALREADY_EXISTS``; nothing is saved then.
    """
    owner = await _owner(actor, data.owner_id)
    email = normalise_email(data.email)
    _validate_days(data.sync_days_limit)
    if not data.secret:
        raise invalid_input("The password (or access token) is required.", field="password")
    excluded_domains = _excluded_domains(data)
    aliases = _from_aliases(data, email)
    await _check_provider_allowed(registry, data.provider)
    servers = plan_servers(registry, data, email)
    if await MailAccount.exists(user_id=owner.id, email=email):
        raise _duplicate(email)
    verified = await verify_servers(registry, data.provider, servers.auth_kind, servers, policy)
    display_name = " ".join(data.display_name.split()) or owner.name
    try:
        async with in_transaction():
            account = await MailAccount.create(
                user=owner,
                provider=data.provider,
                provider_options=registry.validate_options(data.provider, data.options),
                display_name=display_name[:200],
                email=email,
                sharing=data.sharing,
                sync_days_limit=data.sync_days_limit,
                **_server_columns(servers, secrets),
                capabilities=verified.capabilities,
                sync_state=SyncState.NEW,
            )
            await FromAddress.create(account=account, address=email, name=display_name, is_default=True)
            for address, name in aliases:
                await FromAddress.create(account=account, address=address, name=name, is_default=False)
            for domain in excluded_domains:
                await AccountExcludedDomain.create(account=account, domain=domain)
            await _create_folders(account, verified)
    except IntegrityError:
        raise _duplicate(email) from None
    return account


def _duplicate(email: str) -> SalesInboxError:
    return SalesInboxError(
        ErrorCode.ALREADY_EXISTS,
        f"{email} is already connected for this user: update its credentials instead.",
        field="email",
    )


def _server_columns(servers: AccountServers, secrets: SecretBox) -> dict[str, Any]:
    return {
        "imap_host": servers.imap.host,
        "imap_port": servers.imap.port,
        "imap_security": servers.imap.security,
        "imap_username": servers.imap.username,
        "imap_auth_kind": servers.auth_kind,
        "imap_secret": secrets.encrypt(servers.imap.secret),
        "smtp_host": servers.smtp.host,
        "smtp_port": servers.smtp.port,
        "smtp_security": servers.smtp.security,
        "smtp_username": servers.smtp.username,
        "smtp_auth_kind": servers.auth_kind,
        "smtp_secret": secrets.encrypt(servers.smtp.secret),
        "smtp_same_credentials": servers.smtp_same_credentials,
    }


async def _create_folders(account: MailAccount, verified: VerifiedServers) -> None:
    await Folder.get_or_create(account=account, name="INBOX", defaults={"role": FolderRole.INBOX})
    if verified.sent_folder:
        await Folder.get_or_create(
            account=account, name=verified.sent_folder, defaults={"role": FolderRole.SENT}
        )


async def update_credentials(
    actor: User,
    account_id: int,
    *,
    secret: Secret,
    smtp_secret: Secret | None,
    secrets: SecretBox,
    registry: ProviderRegistry,
    policy: ConnectPolicy,
    auth_kind: AuthKind | None = None,
) -> MailAccount:
    """Replace the stored password/token after verifying it on both servers.

    ``smtp_secret`` is for accounts whose outgoing server has its own credentials; when
    ``None`` the new secret is used for both (if they shared it) or only for IMAP. An
    account waiting in ``NEEDS_REAUTH`` becomes ready to sync again. ``auth_kind`` switches
    how the account logs in (a password account signed in with OAuth: ``XOAUTH2``, the
    secret then used on both servers).
    """
    if not secret:
        raise invalid_input("The new password (or access token) is required.", field="password")
    account = await get_account(actor, account_id)
    current = stored_logins(account, secrets, registry)
    kind = auth_kind or account.imap_auth_kind
    if kind != account.imap_auth_kind or kind != account.smtp_auth_kind:
        mechanism = login_mechanism(kind, declared_mechanism(registry, account.provider))
        current = replace(current, imap=replace(current.imap, mechanism=mechanism),
                          smtp=replace(current.smtp, mechanism=mechanism), auth_kind=kind,
                          smtp_same_credentials=True)
    same = current.smtp_same_credentials
    new_smtp_secret = smtp_secret or (secret if same else current.smtp.secret)
    servers = replace(
        current,
        imap=replace(current.imap, secret=secret),
        smtp=replace(current.smtp, secret=new_smtp_secret),
    )
    verified = await verify_servers(registry, account.provider, kind, servers, policy)
    account.imap_auth_kind = account.smtp_auth_kind = kind
    account.smtp_same_credentials = same
    account.imap_secret = secrets.encrypt(secret)
    account.smtp_secret = secrets.encrypt(new_smtp_secret)
    account.capabilities = verified.capabilities
    if account.sync_state == SyncState.NEEDS_REAUTH:
        account.sync_state = SyncState.NEW if account.initial_sync_completed_at is None else SyncState.COMPLETE
        account.sync_error = None
    await account.save()
    return account


async def disconnect_account(
    actor: User, account_id: int, *, confirm_email: str, tokens: OAuthTokens | None = None
) -> None:
    """Remove an account with all its synced mail. ``confirm_email`` must repeat its address.

    An account signed in with OAuth has its refresh token revoked at the provider (with
    ``tokens``), after the deletion and best effort: a failed revocation is only logged.
    """
    account = await get_account(actor, account_id)
    try:
        confirmed = normalise_email(confirm_email, field="confirmEmail")
    except SalesInboxError:
        confirmed = None
    if confirmed != account.email:
        raise invalid_input(
            f"To disconnect, confirm by typing the account's address ({account.email}): its "
            "synced mail will be deleted from the CRM (not from the mail server).",
            field="confirmEmail",
        )
    revoke = await tokens.prepare_revocation(account.id) if tokens is not None else None
    await account.delete()
    if revoke is not None:
        await revoke()
