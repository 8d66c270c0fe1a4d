"""``salesinbox worker`` in this process, on PostgreSQL and a real Dovecot: jobs sync and
watch accounts, fences keep one writer per account, stalled jobs come back."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import pytest

from salesinbox.core.db.models import MailAccount, Message, SyncState, User
from salesinbox.core.scale_out.worker import WorkerProcess
from salesinbox.core.settings import Settings
from salesinbox.core.sync.engine import SyncServices

from .servers.messages import build_message
from .test_scheduler import wait_for
from .test_sync import connect

if TYPE_CHECKING:
    from .servers.fixtures import MailAccount as TestMailbox

pytestmark = [pytest.mark.postgres_only]


def worker_settings(settings: Settings) -> Settings:
    return settings.with_overrides(sync_runner="workers", worker_heartbeat_seconds=0.5, worker_port=0)


async def _state_is(account_id: int, state: SyncState) -> bool:
    account = await MailAccount.get(id=account_id)
    return account.sync_state == state


@pytest.mark.dovecot
async def test_a_worker_syncs_an_account_then_brings_new_mail_through_idle(
        db: Settings, rep: User, mail_account: TestMailbox, services: SyncServices) -> None:
    box = mail_account
    box.dovecot.append_many(box.user, "INBOX", [build_message(to=box.address, subject=f"m{i}") for i in range(5)])
    account = await connect(rep, box, services)
    worker = WorkerProcess(worker_settings(db), services)
    running = asyncio.create_task(worker.run())
    try:
        await wait_for(lambda: _state_is(account.id, SyncState.COMPLETE), timeout=30)
        assert await Message.filter(folder__account_id=account.id).count() == 5
        await wait_for(lambda: _watching(worker, account.id), timeout=15)
        await asyncio.sleep(0.5)  # into IDLE
        started = time.monotonic()
        await asyncio.to_thread(box.dovecot.append, box.user, "INBOX", build_message(to=box.address, subject="live"))

        async def six() -> bool:
            return await Message.filter(folder__account_id=account.id).count() == 6
        await wait_for(six, timeout=15)
        print(f"new mail stored {time.monotonic() - started:.2f} s after APPEND")
    finally:
        worker.stop.set()
        await asyncio.wait_for(running, timeout=30)


async def _watching(worker: WorkerProcess, account_id: int) -> bool:
    return worker.jobs is not None and account_id in worker.jobs.watching
