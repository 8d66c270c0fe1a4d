"""Minutes of a rep's working day, compressed, with access tokens that live 5 seconds: push
mail through the IDLE watcher (its connection cut now and then, so it logs in again), the
syncs IDLE wakes, and sends, for 150 seconds (some 30 token lifetimes). Everything keeps
working, every message arrives, every send goes out, and the token endpoint sees exactly one
refresh per expiry: each refresh replaced a token that was expiring, never one twice."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest

from salesinbox.core.db.models import Message, OAuthGrant, User
from salesinbox.core.sending.mailer import OutgoingEmail, send_email
from salesinbox.core.settings import Settings
from salesinbox.core.sync.engine import SyncServices

from .servers.messages import build_message
from .test_idle import scheduler_for, stored, watching
from .test_oauth_idle import signed_in_behind_relay
from .test_scheduler import wait_for

if TYPE_CHECKING:
    from .servers.fixtures import MailAccount as TestMailbox
    from .servers.oauth import OAuthServer

pytestmark = pytest.mark.dovecot

LIFETIME = 5  #: seconds an access token lives
DURATION = 150  #: seconds of work
MARGIN = LIFETIME / 10  #: a token is refreshed when it expires within 10 % of its life


async def test_minutes_of_push_mail_and_sends_with_five_second_tokens(
    admin: User, rep: User, oauth_account: TestMailbox, oauth_server: OAuthServer,
    services: SyncServices, db: Settings,
) -> None:
    watched = await signed_in_behind_relay(admin, rep, oauth_account, oauth_server, services, db, LIFETIME)
    account, recording, relay, services = watched.account, watched.tokens, watched.relay, watched.services
    scheduler = scheduler_for(services)  # no polling: only IDLE brings the mail in
    await scheduler.start()
    arrived, sent, cuts, delays = 0, 0, 0, []
    try:
        await watching(account.id)
        started = time.monotonic()
        while time.monotonic() - started < DURATION:
            subject = f"soak {arrived}"
            await asyncio.to_thread(oauth_account.dovecot.append, oauth_account.user, "INBOX",
                                    build_message(to=oauth_account.address, subject=subject))
            delays.append(await wait_for(lambda s=subject: stored(account.id, s), timeout=15))
            arrived += 1
            if arrived % 3 == 0:
                await send_email(account, OutgoingEmail(
                    from_address=oauth_account.address, to=("lead@example.test",),
                    subject=f"sent {sent}", text="hi"),
                    secrets=services.secrets, policy=services.policy, tokens=recording)
                sent += 1
            if arrived % 7 == 0:  # the watcher must log in again, with a current token
                cuts += relay.cut_all()
            await asyncio.sleep(1.5)
        elapsed = time.monotonic() - started
    finally:
        await scheduler.stop()
        relay.close()
    refreshes = recording.refreshes
    print(f"{elapsed:.0f} s: {arrived} messages pushed (stored after median "
          f"{sorted(delays)[len(delays) // 2]:.2f} s, max {max(delays):.2f} s), {sent} sent, "
          f"{cuts} watcher connections cut, {len(refreshes)} refreshes "
          f"({elapsed / LIFETIME:.0f} token lifetimes)")
    assert await Message.filter(account_id=account.id).count() == arrived
    assert len(oauth_account.smtp.messages) == sent > 0 and cuts > 0
    assert oauth_server.token_requests["refresh_token"] == len(refreshes)
    # one refresh per expiry: each replaced a different token, one that was expiring
    assert len({r.replaced_expiry for r in refreshes}) == len(refreshes)
    for refresh in refreshes:
        assert (refresh.replaced_expiry - refresh.at).total_seconds() <= MARGIN + 0.05
    # and the work needed a fresh token across the whole run, not only at its start
    assert len(refreshes) >= elapsed / LIFETIME / 2
    grant = await OAuthGrant.get(account_id=account.id)
    assert grant.serial == 1 + len(refreshes)  # the consent, then one save per refresh
