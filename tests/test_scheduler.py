"""The in-process scheduler: first sync, IDLE-driven new mail, backoff, and reauth waits."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

from salesinbox.core.db.models import Folder, MailAccount, Message, SyncState, User
from salesinbox.core.sync.backoff import backoff_delay
from salesinbox.core.sync.engine import SyncServices
from salesinbox.core.sync.events import MailEvent
from salesinbox.core.sync.scheduler import InProcessScheduler

from .servers.messages import build_message
from .test_sync import connect

if TYPE_CHECKING:
    from .servers.fixtures import MailAccount as TestMailbox


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_delay(n, base=5, cap=60) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]


async def wait_for(condition, timeout: float = 15.0) -> float:
    """Poll an async condition; return the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await condition():
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.mark.dovecot
async def test_new_mail_arrives_through_idle(rep: User, mail_account: TestMailbox, services: SyncServices) -> None:
    box = mail_account
    account = await connect(rep, box, services)
    scheduler = InProcessScheduler(services, poll_interval=3600)  # only IDLE can bring new mail
    events: list[MailEvent] = []
    async with services.events.subscribe(lambda e: e.account_id == account.id) as queue:
        await scheduler.start()
        try:
            await wait_for(lambda: _state_is(account.id, SyncState.COMPLETE))
            await asyncio.sleep(0.5)  # let the IDLE watcher enter IDLE
            while not queue.empty():
                queue.get_nowait()
            appended_at = time.monotonic()
            await asyncio.to_thread(
                box.dovecot.append, box.user, "INBOX", build_message(to=box.address, subject="live")
            )
            while True:
                event = await asyncio.wait_for(queue.get(), timeout=15)
                events.append(event)
                if event.kind == "NEW_MESSAGES":
                    break
            delay = time.monotonic() - appended_at
        finally:
            await scheduler.stop()
    assert await Message.filter(account_id=account.id, subject="live").count() == 1
    print(f"new mail to subscription event: {delay * 1000:.0f} ms")
    assert events[-1].message_ids


async def _state_is(account_id: int, state: SyncState) -> bool:
    return (await MailAccount.get(id=account_id)).sync_state == state


@pytest.mark.dovecot
async def test_failures_back_off_and_show_the_next_retry(
    rep: User, mail_account: TestMailbox, services: SyncServices
) -> None:
    account = await connect(rep, mail_account, services)
    await MailAccount.filter(id=account.id).update(imap_port=1)  # nothing listens there
    scheduler = InProcessScheduler(services, poll_interval=3600, backoff_base=30, use_idle=False)
    await scheduler.start()
    try:
        async def retry_recorded() -> bool:
            return await Folder.filter(account_id=account.id, retry_at__not_isnull=True).count() == 2
        await wait_for(retry_recorded)
    finally:
        await scheduler.stop()
    folder = await Folder.get(account_id=account.id, name="INBOX")
    assert "refused the connection" in (folder.last_error or "")
    # The first failure waits backoff_base (30 s): the retry time shown is that far ahead.
    assert 20 < (folder.retry_at - datetime.now(UTC)).total_seconds() <= 30


@pytest.mark.dovecot
async def test_refused_login_waits_for_new_credentials(rep: User, mail_account: TestMailbox, services: SyncServices,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from salesinbox.core.sync import engine as sync_module

    account = await connect(rep, mail_account, services)
    await MailAccount.filter(id=account.id).update(imap_secret=services.secrets.encrypt("revoked"))
    logins = 0
    real_open = sync_module.open_imap  # type: ignore[attr-defined]  # patched where sync uses it

    def counting_open(*args: object, **kwargs: object) -> object:
        nonlocal logins
        logins += 1
        return real_open(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sync_module, "open_imap", counting_open)
    scheduler = InProcessScheduler(services, poll_interval=0.1, use_idle=False)
    await scheduler.start()
    try:
        await wait_for(lambda: _state_is(account.id, SyncState.NEEDS_REAUTH))
        await asyncio.sleep(0.5)  # several poll intervals: no new attempt
        assert logins == 1
        await MailAccount.filter(id=account.id).update(
            imap_secret=services.secrets.encrypt(mail_account.password), sync_state=SyncState.NEW)
        scheduler.request_sync(account.id)
        await wait_for(lambda: _state_is(account.id, SyncState.COMPLETE))
    finally:
        await scheduler.stop()
    assert logins >= 2
