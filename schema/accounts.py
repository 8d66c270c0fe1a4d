"""Mail accounts: connect (verified first), server details, credentials, From addresses."""

from __future__ import annotations

from datetime import datetime

import strawberry

from salesinbox.core.credentials import Secret
from salesinbox.core.db.models import Folder, FromAddress, MailAccount, SharingPermission, SyncState
from salesinbox.core.mail_accounts import accounts, from_addresses
from salesinbox.core.sharing.sharing_settings import account_excluded_domains

from .context import Info
from .ids import parse_id, to_id
from .providers import AuthKindEnum, ProviderOptionValue, SecurityEnum
from .scalars import BigInt

SharingEnum = strawberry.enum(
    SharingPermission, name="SharingPermission", description="Who else may see an account's mail."
)
SyncStateEnum = strawberry.enum(SyncState, name="SyncState", description="Where an account's sync is.")


@strawberry.type(description="One server of an account, as stored (never the password).")
class ServerDetails:
    host: str
    port: int
    security: SecurityEnum  # type: ignore[valid-type]
    username: str


@strawberry.type(description="What the IMAP server announced when the account was verified.")
class MailCapabilities:
    idle: bool
    condstore: bool
    qresync: bool
    special_use: bool
    auth_mechanisms: list[str]
    all: list[str]

    @classmethod
    def from_list(cls, capabilities: list[str]) -> MailCapabilities:
        upper = {c.upper() for c in capabilities}
        return cls(
            idle="IDLE" in upper,
            condstore="CONDSTORE" in upper,
            qresync="QRESYNC" in upper,
            special_use="SPECIAL-USE" in upper,
            auth_mechanisms=sorted(c[5:] for c in upper if c.startswith("AUTH=")),
            all=sorted(upper),
        )


@strawberry.type(description="An address the account may send as.")
class FromAddressType:
    address: str
    name: str
    is_default: bool

    @classmethod
    def from_model(cls, row: FromAddress) -> FromAddressType:
        return cls(address=row.address, name=row.name, is_default=row.is_default)


@strawberry.type(name="FolderSync", description="Sync state of one folder.")
class FolderSyncType:
    name: str
    role: str | None
    messages_total: int
    messages_synced: int
    initial_sync_done: bool
    uidvalidity: BigInt | None
    highest_modseq: BigInt | None
    last_synced_at: datetime | None
    last_error: str | None
    retry_at: datetime | None

    @classmethod
    def from_model(cls, row: Folder) -> FolderSyncType:
        return cls(
            name=row.name, role=row.role, messages_total=row.messages_total,
            messages_synced=row.messages_synced, initial_sync_done=row.initial_sync_done,
            uidvalidity=row.uidvalidity, highest_modseq=row.highestmodseq,
            last_synced_at=row.last_synced_at, last_error=row.last_error, retry_at=row.retry_at,
        )


@strawberry.type(name="MailAccount", description="A connected mailbox. Passwords are never returned.")
class MailAccountType:
    id: strawberry.ID
    owner_id: strawberry.ID
    provider: str
    display_name: str
    email: str
    sharing: SharingEnum  # type: ignore[valid-type]
    incoming: ServerDetails
    outgoing: ServerDetails
    outgoing_same_credentials: bool
    auth_kind: AuthKindEnum  # type: ignore[valid-type]
    capabilities: MailCapabilities
    sync_state: SyncStateEnum  # type: ignore[valid-type]
    sync_error: str | None
    sync_days_limit: int | None
    last_synced_at: datetime | None
    initial_sync_completed_at: datetime | None
    created_at: datetime

    @strawberry.field(description="Addresses this account may send as, default first.")
    async def from_addresses(self) -> list[FromAddressType]:
        rows = await from_addresses.list_from_addresses(int(self.id))
        return [FromAddressType.from_model(r) for r in rows]

    @strawberry.field(description="Domains whose mail in this account is never shared.")
    async def excluded_domains(self) -> list[str]:
        return await account_excluded_domains(int(self.id))

    @strawberry.field(description="Per-folder sync progress, errors and next retry.")
    async def folders(self) -> list[FolderSyncType]:
        rows = await Folder.filter(account_id=int(self.id)).order_by("id")
        return [FolderSyncType.from_model(r) for r in rows]

    @classmethod
    def from_model(cls, row: MailAccount) -> MailAccountType:
        return cls(
            id=to_id(row.id), owner_id=to_id(row.user_id), provider=row.provider,
            display_name=row.display_name, email=row.email, sharing=row.sharing,
            incoming=ServerDetails(host=row.imap_host, port=row.imap_port,
                                   security=row.imap_security, username=row.imap_username),
            outgoing=ServerDetails(host=row.smtp_host, port=row.smtp_port,
                                   security=row.smtp_security, username=row.smtp_username),
            outgoing_same_credentials=row.smtp_same_credentials, auth_kind=row.imap_auth_kind,
            capabilities=MailCapabilities.from_list(row.capabilities),
            sync_state=row.sync_state, sync_error=row.sync_error,
            sync_days_limit=row.sync_days_limit, last_synced_at=row.last_synced_at,
            initial_sync_completed_at=row.initial_sync_completed_at, created_at=row.created_at,
        )


@strawberry.input(description="A server typed by the user (custom IMAP) or overriding a preset.")
class ServerInput:
    host: str
    port: int
    security: SecurityEnum  # type: ignore[valid-type]
    username: str | None = strawberry.field(default=None, description="Default: the email address.")
    password: str | None = strawberry.field(
        default=None, description="Only when this server has its own password; default: the account's."
    )

    def to_core(self) -> accounts.ServerInput:
        return accounts.ServerInput(
            host=self.host, port=self.port, security=self.security, username=self.username,
            secret=Secret(self.password) if self.password else None,
        )


@strawberry.input(name="FromAddressInput", description="An extra address an account may send as (an alias).")
class FromAddressInput:
    address: str
    name: str = strawberry.field(default="", description="The display name sent with it.")


@strawberry.input(description="Connect a mailbox. Both servers are verified before anything is saved.")
class ConnectMailAccountInput:
    provider: str
    email: str
    password: str = strawberry.field(
        description="The password, an app-specific password (with two-factor authentication), "
        "or an OAuth2 access token when authKind is XOAUTH2."
    )
    display_name: str = ""
    auth_kind: AuthKindEnum | None = None  # type: ignore[valid-type]
    options: list[ProviderOptionValue] | None = None
    incoming: ServerInput | None = None
    outgoing: ServerInput | None = None
    sharing: SharingEnum = SharingPermission.PRIVATE  # type: ignore[valid-type]
    sync_days_limit: int | None = strawberry.field(default=None, description="Only the last N days.")
    owner_id: strawberry.ID | None = strawberry.field(default=None, description="Admins: connect for this user.")
    excluded_domains: list[str] | None = strawberry.field(
        default=None, description="Domains whose mail in this account is never shared (like "
        "addAccountExcludedDomain), saved with the account before its first sync starts.",
    )
    from_addresses: list[FromAddressInput] | None = strawberry.field(
        default=None, description="Other addresses this account may send as, besides its own "
        "(like addFromAddress), saved with the account before its first sync starts.",
    )

    def to_core(self) -> accounts.ConnectAccountInput:
        return accounts.ConnectAccountInput(
            provider=self.provider, email=self.email, secret=Secret(self.password),
            display_name=self.display_name, auth_kind=self.auth_kind,
            options={o.name: o.value for o in self.options or []},
            incoming=self.incoming.to_core() if self.incoming else None,
            outgoing=self.outgoing.to_core() if self.outgoing else None,
            sharing=SharingPermission(self.sharing), sync_days_limit=self.sync_days_limit,
            owner_id=parse_id(self.owner_id, field="ownerId") if self.owner_id else None,
            excluded_domains=tuple(self.excluded_domains or ()),
            from_addresses=tuple(accounts.FromAddressInput(address=a.address, name=a.name)
                                 for a in self.from_addresses or ()),
        )


@strawberry.type
class AccountQueries:
    @strawberry.field(description="Mail accounts of a user (default: yours). Admins see anyone's.")
    async def mail_accounts(self, info: Info, user_id: strawberry.ID | None = None) -> list[MailAccountType]:
        target = parse_id(user_id, field="userId") if user_id is not None else None
        rows = await accounts.list_accounts(info.context.user, target)
        return [MailAccountType.from_model(r) for r in rows]

    @strawberry.field(description="One mail account you manage, with its server details.")
    async def mail_account(self, info: Info, id: strawberry.ID) -> MailAccountType:
        return MailAccountType.from_model(await accounts.get_account(info.context.user, parse_id(id)))


@strawberry.type
class AccountMutations:
    @strawberry.mutation(description="Verify both servers, save the account and start its first sync.")
    async def connect_mail_account(self, info: Info, input: ConnectMailAccountInput) -> MailAccountType:
        services = info.context.services
        row = await accounts.connect_account(
            info.context.user, input.to_core(), registry=services.providers,
            secrets=services.secrets, policy=services.connect_policy,
        )
        services.request_sync(row.id)
        return MailAccountType.from_model(row)

    @strawberry.mutation(description="Replace the password or token (verified first); resumes a stopped sync.")
    async def update_mail_account_credentials(
        self, info: Info, id: strawberry.ID, password: str, outgoing_password: str | None = None
    ) -> MailAccountType:
        services = info.context.services
        row = await accounts.update_credentials(
            info.context.user, parse_id(id), secret=Secret(password),
            smtp_secret=Secret(outgoing_password) if outgoing_password else None,
            secrets=services.secrets, registry=services.providers, policy=services.connect_policy,
        )
        services.request_sync(row.id)
        return MailAccountType.from_model(row)

    @strawberry.mutation(description="Remove an account and its synced mail; confirm with its address.")
    async def disconnect_mail_account(self, info: Info, id: strawberry.ID, confirm_email: str) -> strawberry.ID:
        await accounts.disconnect_account(
            info.context.user, parse_id(id), confirm_email=confirm_email,
            tokens=info.context.services.oauth_tokens,
        )
        return id

    @strawberry.mutation(description="Add an address this account may send as.")
    async def add_from_address(self, info: Info, account_id: strawberry.ID, address: str,
                               name: str = "", make_default: bool = False) -> list[FromAddressType]:
        account = parse_id(account_id, field="accountId")
        await from_addresses.add_from_address(info.context.user, account, address, name=name, make_default=make_default)
        return [FromAddressType.from_model(r) for r in await from_addresses.list_from_addresses(account)]

    @strawberry.mutation(description="Remove a From address (not the account's own).")
    async def remove_from_address(self, info: Info, account_id: strawberry.ID, address: str) -> list[FromAddressType]:
        account = parse_id(account_id, field="accountId")
        await from_addresses.remove_from_address(info.context.user, account, address)
        return [FromAddressType.from_model(r) for r in await from_addresses.list_from_addresses(account)]

    @strawberry.mutation(description="Choose the From address used by default when sending.")
    async def set_default_from_address(
        self, info: Info, account_id: strawberry.ID, address: str
    ) -> list[FromAddressType]:
        account = parse_id(account_id, field="accountId")
        await from_addresses.set_default_from_address(info.context.user, account, address)
        return [FromAddressType.from_model(r) for r in await from_addresses.list_from_addresses(account)]
