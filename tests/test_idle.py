"""The IDLE watcher across lost connections: no spinning while the server is down, new mail
within seconds of its return, a silently dropped connection noticed by the probe, and no
sync pass for a mere keepalive."""

from __future__ import annotations

import asyncio
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from salesinbox.core.db.models import Message, SyncState, User
from salesinbox.core.sync.engine import SyncServices
from salesinbox.core.sync.idle import IdleTiming
from salesinbox.core.sync.scheduler import InProcessScheduler

from .servers.messages import build_message
from .test_scheduler import _state_is, wait_for
from .test_sync import connect

if TYPE_CHECKING:
    from .servers.dovecot import DovecotServer
    from .servers.fixtures import MailAccount as TestMailbox
    from .servers.proxy import CuttingProxy
    from .servers.smtp import SmtpServer

pytestmark = pytest.mark.dovecot

# Short enough for tests that last seconds; the defaults are minutes.
TIMING = IdleTiming(probe_interval=1.0, check_interval=0.2, backoff_base=0.5, backoff_cap=1.0)


def box_on(server: DovecotServer, smtp_server: SmtpServer) -> TestMailbox:
    """A new mailbox on ``server``, with the same login on ``smtp_server``."""
    from .servers.fixtures import MailAccount as TestMailbox

    user = server.add_user(f"idle-{secrets.token_hex(4)}@example.test")
    smtp_server.add_user(user.username, user.password)
    return TestMailbox(user=user, dovecot=server, smtp=smtp_server)


@pytest.fixture
def private_box(dovecot_factory: Callable[..., DovecotServer], smtp_server: SmtpServer) -> TestMailbox:
    """A mailbox on a Dovecot of its own, which the test may shut down and start again."""
    return box_on(dovecot_factory(), smtp_server)


def scheduler_for(services: SyncServices, timing: IdleTiming = TIMING) -> InProcessScheduler:
    # poll_interval an hour: only the IDLE watcher can bring new mail within the test.
    return InProcessScheduler(services, poll_interval=3600, idle_timing=timing)


async def watching(account_id: int) -> threading.Thread:
    """The account's IDLE watcher, once the first sync is complete and IDLE has begun."""
    await wait_for(lambda: _state_is(account_id, SyncState.COMPLETE))
    name = f"idle-account-{account_id}"

    async def started() -> bool:
        return any(t.name == name for t in threading.enumerate())
    await wait_for(started)
    await asyncio.sleep(1.0)  # connect, select, the catch-up sync, enter IDLE
    return next(t for t in threading.enumerate() if t.name == name)


def cpu_seconds(thread: threading.Thread) -> float:
    """CPU time (user + system) the thread has used, from /proc (10 ms resolution)."""
    with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


async def stored(account_id: int, subject: str) -> bool:
    return await Message.filter(account_id=account_id, subject=subject).exists()


async def test_watcher_rests_while_the_server_is_down(rep: User, private_box: TestMailbox,
                                                      services: SyncServices) -> None:
    box = private_box
    account = await connect(rep, box, services)
    scheduler = scheduler_for(services)
    await scheduler.start()
    try:
        watcher = await watching(account.id)
        await asyncio.to_thread(box.dovecot.shutdown)
        await asyncio.sleep(0.5)
        before, started = cpu_seconds(watcher), time.monotonic()
        await asyncio.sleep(3.0)  # several reconnection attempts
        used = cpu_seconds(watcher) - before
        elapsed = time.monotonic() - started
        assert watcher.is_alive(), "the watcher must keep trying to reconnect"
    finally:
        await scheduler.stop()
    print(f"watcher CPU while the server was down: {used * 1000:.0f} ms in {elapsed:.1f} s")
    assert used <= 0.1, f"the watcher spun: {used:.2f} s of CPU in {elapsed:.1f} s"
    # Asked to stop in the middle of a backoff wait, it ends at once.
    await asyncio.to_thread(watcher.join, 2.0)
    assert not watcher.is_alive()


async def test_mail_is_stored_within_seconds_of_the_server_coming_back(
        rep: User, private_box: TestMailbox, services: SyncServices) -> None:
    box = private_box
    account = await connect(rep, box, services)
    scheduler = scheduler_for(services)
    await scheduler.start()
    try:
        await watching(account.id)
        await asyncio.to_thread(box.dovecot.shutdown)
        # Delivered by the MTA while IMAP is down: no IDLE notice can ever announce it.
        box.dovecot.deliver(box.user, build_message(to=box.address, subject="while down"))
        await asyncio.sleep(2.0)
        await asyncio.to_thread(box.dovecot.start_again)
        back = time.monotonic()
        await asyncio.to_thread(box.dovecot.append, box.user, "INBOX",
                                build_message(to=box.address, subject="after the restart"))
        await wait_for(lambda: stored(account.id, "while down"), timeout=8)
        await wait_for(lambda: stored(account.id, "after the restart"), timeout=8)
        took = time.monotonic() - back
    finally:
        await scheduler.stop()
    print(f"server back to both messages stored: {took:.1f} s")


async def test_a_silently_dropped_connection_is_noticed_by_the_probe(
        rep: User, mail_account: TestMailbox, services: SyncServices, proxy: CuttingProxy) -> None:
    box = mail_account
    services = replace(services, policy=replace(services.policy, timeout=2.0))
    account = await connect(rep, box, services, imap_port=proxy.port)
    scheduler = scheduler_for(services)
    await scheduler.start()
    try:
        await watching(account.id)
        connections = proxy.connections
        proxy.stall()  # the watcher's connection now leads nowhere, and nothing says so
        stalled_at = time.monotonic()
        # The server announces this one into the void: only a new connection brings it.
        await asyncio.to_thread(box.dovecot.append, box.user, "INBOX",
                                build_message(to=box.address, subject="unheard"))

        async def reconnected() -> bool:
            return proxy.connections > connections
        await wait_for(reconnected, timeout=10)
        noticed = time.monotonic() - stalled_at
        await wait_for(lambda: stored(account.id, "unheard"), timeout=5)
        stored_after = time.monotonic() - stalled_at
    finally:
        await scheduler.stop()
    print(f"stalled connection replaced after {noticed:.1f} s; mail stored after {stored_after:.1f} s")
    # The probe is due within probe_interval, and unanswered after the policy timeout; then
    # the first reconnection waits backoff_base.
    bound = TIMING.probe_interval + 2.0 + TIMING.backoff_base
    assert noticed <= bound + 1.0


async def test_keepalives_do_not_wake_the_sync(rep: User, dovecot_factory: Callable[..., DovecotServer],
                                              smtp_server: SmtpServer, services: SyncServices,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from salesinbox.core.sync import scheduler as scheduler_module

    # Dovecot says "* OK Still here" to an idling client every imap_idle_notify_interval.
    server = dovecot_factory(extra_config="protocol imap {\n  imap_idle_notify_interval = 1 secs\n}\n")
    box = box_on(server, smtp_server)
    account = await connect(rep, box, services)
    passes = 0
    real_sync = scheduler_module.sync_account  # type: ignore[attr-defined]  # patched where the scheduler uses it

    async def counting_sync(*args: object, **kwargs: object) -> object:
        nonlocal passes
        passes += 1
        return await real_sync(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(scheduler_module, "sync_account", counting_sync)
    scheduler = scheduler_for(services, replace(TIMING, probe_interval=60.0))
    await scheduler.start()
    try:
        await watching(account.id)
        before = passes
        await asyncio.sleep(3.5)  # three keepalives
        keepalive_passes = passes - before
        await asyncio.to_thread(box.dovecot.append, box.user, "INBOX",
                                build_message(to=box.address, subject="news"))
        await wait_for(lambda: stored(account.id, "news"), timeout=5)  # real news still wakes it
    finally:
        await scheduler.stop()
    assert keepalive_passes == 0
