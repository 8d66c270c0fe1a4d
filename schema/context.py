"""The per-request context: settings, services, and the authenticated viewer."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from strawberry.types import Info as StrawberryInfo

from salesinbox.core.credentials import SecretBox
from salesinbox.core.crm.api_tokens import authenticate
from salesinbox.core.db.models import MailAccount, User
from salesinbox.core.errors import ErrorCode, SalesInboxError
from salesinbox.core.oauth.oauth_tokens import OAuthTokens
from salesinbox.core.plugin_host.provider_registry import ProviderRegistry
from salesinbox.core.sending.mailer import send_sync_confirmation
from salesinbox.core.sending.outgoing import MailServices
from salesinbox.core.settings import Settings
from salesinbox.core.sync.engine import AccountSyncReport, SyncServices
from salesinbox.core.sync.events import EventBus
from salesinbox.core.sync.scheduler import SyncScheduler
from salesinbox.core.transport.server_login import ConnectPolicy

from .loaders import Loaders


@dataclass
class Services:
    """What the app opens once at start-up and shares with every request."""

    settings: Settings
    providers: ProviderRegistry
    secrets: SecretBox
    events: EventBus = field(default_factory=EventBus)
    scheduler: SyncScheduler | None = None
    oauth_tokens: OAuthTokens = field(init=False)

    def __post_init__(self) -> None:
        # one per process: its locks make concurrent refreshes of an account one
        self.oauth_tokens = OAuthTokens(
            secrets=self.secrets, registry=self.providers, settings=self.settings,
            policy=self.connect_policy,
        )

    @property
    def connect_policy(self) -> ConnectPolicy:
        """How to reach mail servers (timeouts, TLS, private hosts), from the settings."""
        return ConnectPolicy.from_settings(self.settings)

    def sync_services(self) -> SyncServices:
        """What a sync pass or an audit run from a request needs."""
        return SyncServices(
            secrets=self.secrets, registry=self.providers, policy=self.connect_policy, events=self.events,
            tokens=self.oauth_tokens,
        )

    def syncing_services(self) -> SyncServices:
        """What the process that runs the sync passes (the in-process scheduler, a worker)
        needs: :meth:`sync_services` and the confirmation email after an initial sync."""
        policy = self.connect_policy

        async def confirm(account: MailAccount, report: AccountSyncReport) -> None:
            await send_sync_confirmation(account, secrets=self.secrets, policy=policy, tokens=self.oauth_tokens)

        return replace(self.sync_services(), on_initial_sync_complete=confirm)

    def mail_services(self) -> MailServices:
        """What sending and replying need."""
        return MailServices(
            secrets=self.secrets, registry=self.providers, policy=self.connect_policy,
            max_message_bytes=self.settings.max_outgoing_bytes, tokens=self.oauth_tokens,
        )

    def request_sync(self, account_id: int) -> None:
        """Ask the sync engine to sync ``account_id`` soon (no-op when sync is off)."""
        if self.scheduler is not None:
            self.scheduler.request_sync(account_id)


@dataclass
class Context:
    """One GraphQL operation's context. ``viewer`` is set by the authentication extension."""

    services: Services
    authorization: str | None
    request: Any = None
    response: Any = None
    viewer: User | None = None
    # Set by strawberry from a WebSocket's connection_init payload (subscriptions).
    connection_params: dict[str, Any] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    _loaders: Loaders | None = None

    @property
    def loaders(self) -> Loaders:
        """This request's DataLoaders (created on first use, after authentication)."""
        if self._loaders is None:
            self._loaders = Loaders(self.viewer)
        return self._loaders

    @property
    def credentials(self) -> object:
        """What the caller authenticates with: the ``Authorization`` header, else (WebSocket)
        the ``Authorization`` of the ``connection_init`` payload, as sent (maybe not a string)."""
        if self.authorization is not None:
            return self.authorization
        params = self.connection_params
        if isinstance(params, dict):
            return params.get("Authorization", params.get("authorization"))
        return None

    async def authenticate(self) -> User:
        """Resolve the bearer token to a user, once per context (an HTTP request, or a
        WebSocket connection, which :meth:`recheck` keeps honest)."""
        if self.viewer is None:
            self.viewer = await authenticate(self.credentials)
        return self.viewer

    async def recheck(self) -> User:
        """Authenticate again (through the token cache) and take the fresh user, whose
        profile may have changed; raises ``Unauthenticated`` once the token no longer holds."""
        self.viewer = await authenticate(self.credentials)
        return self.viewer

    @property
    def user(self) -> User:
        """The authenticated viewer (every operation is authenticated before it runs)."""
        if self.viewer is None:
            raise SalesInboxError(ErrorCode.UNAUTHENTICATED, "Not authenticated.")
        return self.viewer


Info = StrawberryInfo[Context, None]
