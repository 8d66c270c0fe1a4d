"""The IDLE watcher of an account signed in with OAuth, while its access tokens expire every
two seconds: new mail still arrives within seconds (IDLE wakes the sync), each reconnection
of the watcher logs in with a current token, and a token is refreshed only once it expires:
never twice for one expiry, however many logins (the watcher's, the sync's) want it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING

import pytest

from salesinbox.core.db.models import MailAccount, OAuthGrant, User
from salesinbox.core.oauth.oauth_tokens import OAuthTokens
from salesinbox.core.settings import Settings
from salesinbox.core.sync.engine import SyncServices

from .servers.messages import build_message
from .servers.proxy import CuttingProxy
from .test_idle import scheduler_for, stored, watching
from .test_oauth_tokens import signed_in, tokens, with_tokens  # noqa: F401 - fixtures
from .test_scheduler import wait_for

if TYPE_CHECKING:
    from .servers.fixtures import MailAccount as TestMailbox
    from .servers.oauth import OAuthServer

pytestmark = pytest.mark.dovecot

LIFETIME = 2


@dataclass
class Refresh:
    at: datetime  #: when the refresh was asked of the token endpoint
    replaced_expiry: datetime | None  #: the expiry of the access token it replaced


class RecordingTokens(OAuthTokens):
    """OAuthTokens that note each refresh sent to the token endpoint."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.refreshes: list[Refresh] = []

    async def _request_refresh(self, grant: OAuthGrant):
        self.refreshes.append(Refresh(datetime.now(UTC), grant.access_token_expires_at))
        return await super()._request_refresh(grant)


@dataclass
class WatchedAccount:
    """An account signed in with OAuth whose IMAP goes through a cutting relay, and the
    sync services recording its token refreshes."""

    account: MailAccount
    services: SyncServices
    tokens: RecordingTokens
    relay: CuttingProxy


async def signed_in_behind_relay(admin: User, rep: User, box: TestMailbox, server: OAuthServer,
                                 services: SyncServices, db: Settings, lifetime: int) -> WatchedAccount:
    """Access tokens living ``lifetime`` seconds from now on; the account signed in."""
    server.access_token_lifetime = lifetime
    recording = RecordingTokens(secrets=services.secrets, registry=services.registry, settings=db,
                                policy=services.policy)
    services = replace(services, tokens=recording)
    account = await signed_in(admin, rep, box, server, services, db)
    relay = CuttingProxy("127.0.0.1", box.dovecot.port)
    await MailAccount.filter(id=account.id).update(imap_port=relay.port)
    return WatchedAccount(account, services, recording, relay)


async def test_idle_keeps_working_across_token_expiries(
    admin: User, rep: User, oauth_account: TestMailbox, oauth_server: OAuthServer,
    services: SyncServices, db: Settings,
) -> None:
    watched = await signed_in_behind_relay(admin, rep, oauth_account, oauth_server, services, db, LIFETIME)
    account, recording, relay = watched.account, watched.tokens, watched.relay
    scheduler = scheduler_for(watched.services)
    await scheduler.start()
    rounds, delays = 4, []
    try:
        await watching(account.id)
        for round_ in range(rounds):
            grant = await OAuthGrant.get(account_id=account.id)
            await asyncio.sleep(max(grant.access_token_expires_at.timestamp() - time.time(), 0) + 0.1)
            connections, introspections = relay.connections, oauth_server.introspections
            assert relay.cut_all() >= 1  # the watcher's connection: it must log in again

            async def logged_in_again(connections: int = connections, introspections: int = introspections) -> bool:
                return relay.connections > connections and oauth_server.introspections > introspections
            await wait_for(logged_in_again, timeout=10)
            await asyncio.sleep(0.3)  # select, catch-up sync, back in IDLE
            appended = time.monotonic()
            await asyncio.to_thread(oauth_account.dovecot.append, oauth_account.user, "INBOX",
                                    build_message(to=oauth_account.address, subject=f"round {round_}"))
            delays.append(await wait_for(partial(stored, account.id, f"round {round_}"), timeout=8))
            assert time.monotonic() - appended < 8
    finally:
        await scheduler.stop()
        relay.close()
    print("mail stored after " + ", ".join(f"{d:.1f} s" for d in delays)
          + f"; {len(recording.refreshes)} refreshes")
    refreshes = recording.refreshes
    assert oauth_server.token_requests["refresh_token"] == len(refreshes)
    # Every round crossed an expiry and logged in after it (the reconnection): a refresh each.
    assert len(refreshes) >= rounds
    # Never two refreshes for one expiry: each replaced a different token, one that was
    # expiring (within the 10 % margin) when it was replaced.
    assert len({r.replaced_expiry for r in refreshes}) == len(refreshes)
    for r in refreshes:
        assert (r.replaced_expiry - r.at).total_seconds() <= LIFETIME / 10 + 0.05
    grant = await OAuthGrant.get(account_id=account.id)
    assert grant.serial == 1 + len(refreshes)  # the consent, then one save per refresh
