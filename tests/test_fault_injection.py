"""Fault injection against the real Dovecot: kill the sync anywhere, nothing is lost.

Three scenarios, each with its own quota of faults injected at random points:

(a) the initial sync, (b) the full re-sync after a UIDVALIDITY change, (c) push mail (IDLE)
while new mail keeps arriving. A fault is one of

* ``sigkill``  – the ``salesinbox sync`` command in its own process group, SIGKILLed once
                 a random number of messages is stored (scenarios a, b);
* ``die``      – in process, an exception nothing catches right after a batch committed:
                 what a SIGKILL leaves, without the cost of a process (a, b);
* ``cancel``   – the sync task cancelled once a random number of messages is stored, as
                 a server shutdown does (a, b); in (c) the whole scheduler is stopped and
                 started again at a random moment;
* ``cut``      – the IMAP connections cut by a relay after a random number of bytes (a, b),
                 or every open connection cut at a random moment (c, IDLE included).

After every fault the store and the API must be consistent: each folder's count is its
rows, no UID twice, no row of an old UIDVALIDITY, and a folder that says it is done holds
every server UID below its UIDNEXT (the bug this guards against said COMPLETE with 3,000
messages missing). After the last fault a clean pass must leave the store equal to the
server, UID for UID, with the API's counts and state saying so.

The seed is printed (and named in every failure); ``SALESINBOX_FAULT_SEED=<n>`` replays it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from salesinbox.core.db.models import Folder, MailAccount, Message, SyncState, User
from salesinbox.core.settings import Settings
from salesinbox.core.sync import folder_sync
from salesinbox.core.sync.engine import CONNECTION_ERRORS, SyncServices, sync_account
from salesinbox.core.sync.idle import IdleTiming
from salesinbox.core.sync.scheduler import InProcessScheduler
from salesinbox.core.sync.store import PLACEHOLDER_UIDVALIDITY
from salesinbox.core.transport.server_errors import MailServerError

from .conftest import GraphQLClient
from .faults import FAULTS, Killed, dying_after_batches, fault_seed
from .servers.messages import generate_messages
from .servers.proxy import CuttingProxy
from .test_sync import connect

if TYPE_CHECKING:
    from .servers.fixtures import MailAccount as TestMailbox

pytestmark = pytest.mark.dovecot

QUOTA = 18  # faults per scenario: 54 in a run, on each database backend
FOLDERS = {"INBOX": 240, "Sent": 40}
IN_PROCESS_BATCH = 20  # small batches in process: many commit points to die between


class Harness:
    """One mailbox connected through a cutting relay, and the means to hurt its sync."""

    def __init__(self, rng: random.Random, seed: int, box: TestMailbox, rep: User, services: SyncServices,
                 settings: Settings, api: GraphQLClient, token: str, proxy: CuttingProxy) -> None:
        self.rng, self.seed, self.box, self.rep = rng, seed, box, rep
        self.services, self.settings, self.api, self.token, self.proxy = services, settings, api, token, proxy
        self.account_id = 0
        self.injected: list[str] = []

    def why(self, text: str) -> str:
        return f"{text} (seed {self.seed}, faults so far: {self.injected})"

    async def connect(self) -> None:
        self.account_id = (await connect(self.rep, self.box, self.services, imap_port=self.proxy.port)).id

    def server(self, folder: str) -> tuple[int, set[int]]:
        with self.box.dovecot.imap_client(self.box.user) as client:
            selected = client.select_folder(folder, readonly=True)
            return int(selected[b"UIDVALIDITY"]), set(client.search(["ALL"]))

    async def stored_count(self) -> int:
        return await Message.filter(account_id=self.account_id).count()

    async def total_wanted(self) -> int:
        return sum(len(self.server(name)[1]) for name in FOLDERS)

    # --- faults of a sync pass (scenarios a and b) -------------------------------------------

    async def fault_pass(self) -> bool:
        """Run one pass with a random fault; True if the fault hit (the pass did not finish)."""
        kind = self.rng.choice(["sigkill", "die", "cancel", "cut"])
        if len(self.injected) % 4 == 0:
            kind = "sigkill"  # the real thing, at least every fourth fault
        hit = await getattr(self, f"_{kind}")()
        if hit:
            self.injected.append(kind)
            FAULTS.record(kind)
        return hit

    async def _plan(self) -> tuple[int, int]:
        """(the highest message id now, a random number of messages to let through): the
        fault strikes once more than that many new rows were committed."""
        remaining = 0
        for name in FOLDERS:
            uidvalidity, on_server = self.server(name)
            stored = await Message.filter(
                account_id=self.account_id, folder__name=name, uidvalidity=uidvalidity
            ).values_list("uid", flat=True)
            remaining += len(on_server - set(stored))
        newest = await Message.filter(account_id=self.account_id).order_by("-id").first()
        return (newest.id if newest else 0), self.rng.randint(0, max(0, remaining - 1))

    async def _inserted_since(self, newest: int) -> int:
        return await Message.filter(account_id=self.account_id, id__gt=newest).count()

    async def _sigkill(self) -> bool:
        newest, let_through = await self._plan()
        env = {
            **os.environ,
            "SALESINBOX_DATA_DIR": str(self.settings.data_dir),
            "SALESINBOX_DATABASE_URL": self.settings.database_url,
            "SALESINBOX_SECRET_KEY": self.settings.secret_key,
            "SALESINBOX_EXTRA_CA_FILE": str(self.settings.extra_ca_file),
            "SALESINBOX_ALLOW_PRIVATE_HOSTS": "true",
            "SALESINBOX_MAIL_TIMEOUT": "5",
        }
        command = [str(Path(sys.executable).with_name("salesinbox")), "sync", "--account", str(self.account_id)]
        # Its own process group: the parsing processes die with it, as in a real SIGKILL of
        # a container.
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while process.poll() is None and time.monotonic() < deadline:
                if await self._inserted_since(newest) > let_through:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                    return True
                await asyncio.sleep(0.005)
            assert process.poll() is not None, self.why("the sync command hung")
            return False  # finished before the threshold: no fault
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            if process.stderr:
                process.stderr.close()

    async def _die(self) -> bool:
        _, let_through = await self._plan()
        try:
            with dying_after_batches(1 + let_through // IN_PROCESS_BATCH):
                await sync_account(self.account_id, self.services)
            return False
        except Killed:
            return True

    async def _cancel(self) -> bool:
        newest, let_through = await self._plan()
        task = asyncio.ensure_future(sync_account(self.account_id, self.services))
        while not task.done() and await self._inserted_since(newest) <= let_through:
            await asyncio.sleep(0.002)
        if task.done():
            task.result()
            return False
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return True

    async def _cut(self) -> bool:
        self.proxy.cut_after_bytes = self.rng.randint(200, 400_000)
        try:
            await sync_account(self.account_id, self.services)
            return False
        except (*CONNECTION_ERRORS, MailServerError):  # cut while logging in: MailServerError
            return True
        finally:
            self.proxy.cut_after_bytes = None

    # --- what must hold ---------------------------------------------------------------------

    async def check_consistent(self) -> None:
        """What must hold after any fault: counts are the store's, nothing twice, and no
        folder says "done" while a UID below its UIDNEXT is missing."""
        account = await MailAccount.get(id=self.account_id)
        folders = await Folder.filter(account_id=self.account_id)
        for folder in folders:
            uidvalidity, on_server = self.server(folder.name)
            rows = await Message.filter(folder_id=folder.id, uidvalidity=folder.uidvalidity).values_list(
                "uid", flat=True
            )
            stale = await Message.filter(folder_id=folder.id).exclude(uidvalidity=folder.uidvalidity).exclude(
                uidvalidity=PLACEHOLDER_UIDVALIDITY).count()
            assert stale == 0, self.why(f"{folder.name}: {stale} rows of an old UIDVALIDITY")
            assert len(rows) == len(set(rows)), self.why(f"{folder.name}: a UID stored twice")
            assert folder.messages_synced == len(rows), self.why(
                f"{folder.name}: messagesSynced {folder.messages_synced} but {len(rows)} rows stored")
            if folder.uidvalidity == uidvalidity:
                assert set(rows) <= on_server, self.why(f"{folder.name}: rows the server does not have")
                if folder.initial_sync_done:
                    below = {uid for uid in on_server if folder.uidnext is not None and uid < folder.uidnext}
                    missing = below - set(rows)
                    assert folder.uidnext is not None and not missing, self.why(
                        f"{folder.name} says done, but {len(missing)} messages below UIDNEXT are missing")
        if account.sync_state == SyncState.COMPLETE:
            assert all(f.initial_sync_done for f in folders), self.why("COMPLETE with a folder not done")
        await self.check_api(account, folders)

    async def check_api(self, account: MailAccount, folders: list[Folder]) -> None:
        data = await self.api.ok(
            "query($id: ID!) { mailAccount(id: $id) { syncState folders { name messagesSynced "
            "messagesTotal initialSyncDone } } }", {"id": str(self.account_id)}, token=self.token)
        shown = data["mailAccount"]
        assert shown["syncState"] == account.sync_state.value, self.why(
            f"API state {shown['syncState']} differs from the store's {account.sync_state.value}")
        assert account.sync_state != SyncState.NEEDS_REAUTH, self.why(f"NEEDS_REAUTH: {account.sync_error}")
        by_name = {f["name"]: f for f in shown["folders"]}
        for folder in folders:
            assert by_name[folder.name]["messagesSynced"] == folder.messages_synced, self.why("API count")
            assert by_name[folder.name]["initialSyncDone"] == folder.initial_sync_done, self.why("API done")

    async def check_complete(self) -> None:
        """After a clean pass: the store is the server, and the API says COMPLETE."""
        await self.check_consistent()
        account = await MailAccount.get(id=self.account_id)
        assert account.sync_state == SyncState.COMPLETE, self.why(f"state {account.sync_state}")
        for folder in await Folder.filter(account_id=self.account_id):
            uidvalidity, on_server = self.server(folder.name)
            rows = set(await Message.filter(folder_id=folder.id, uidvalidity=uidvalidity).values_list("uid", flat=True))
            assert rows == on_server, self.why(
                f"{folder.name}: {len(on_server - rows)} missing, {len(rows - on_server)} extra")
            assert folder.messages_synced == folder.messages_total == len(on_server), self.why(folder.name)

    async def faults_then_clean_pass(self, quota: int, restart: Callable[[], Awaitable[None]]) -> None:
        """Inject ``quota`` faults into passes, checking after each; whenever a pass gets
        through, check it and ``restart`` the scenario (new account, new UIDVALIDITY…)."""
        hits = misses = 0
        while hits < quota:
            if await self.fault_pass():
                hits += 1
                await self.check_consistent()
            else:
                misses += 1
                assert misses < 4 * quota, self.why("faults keep missing the sync")
                await self.check_complete()
                await restart()
        await sync_account(self.account_id, self.services)
        await self.check_complete()


@pytest.fixture
def harness(rep: User, mail_account: TestMailbox, services: SyncServices, settings: Settings,
            api: GraphQLClient, rep_token: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    monkeypatch.setattr(folder_sync, "BATCH_SIZE", IN_PROCESS_BATCH)
    seed = fault_seed()
    print(f"fault injection seed: {seed} (replay with SALESINBOX_FAULT_SEED={seed})")
    box = mail_account
    for index, (name, count) in enumerate(FOLDERS.items()):
        box.dovecot.append_many(box.user, name, generate_messages(count, seed=100 + index, rep=("Rex", box.address)))
    proxy = CuttingProxy("127.0.0.1", box.dovecot.port)
    harness = Harness(random.Random(seed), seed, box, rep, services, settings, api, rep_token, proxy)
    yield harness
    proxy.close()


async def test_initial_sync_survives_kills_and_cuts(harness: Harness) -> None:
    await harness.connect()

    async def reconnect() -> None:  # a finished initial sync: start another from scratch
        await MailAccount.filter(id=harness.account_id).delete()
        await harness.connect()

    await harness.faults_then_clean_pass(QUOTA, reconnect)


async def test_uidvalidity_resync_survives_kills_and_cuts(harness: Harness) -> None:
    await harness.connect()
    await sync_account(harness.account_id, harness.services)

    async def renumber() -> None:
        folder = harness.rng.choice(list(FOLDERS))
        uidvalidity, _ = harness.server(folder)
        harness.box.dovecot.doveadm("mailbox", "update", "-u", harness.box.user.username,
                                    "--uid-validity", str(uidvalidity + harness.rng.randint(1, 1000)), folder)

    await renumber()
    await harness.faults_then_clean_pass(QUOTA, renumber)


async def test_push_mail_survives_cuts_and_restarts(harness: Harness) -> None:
    """IDLE brings new mail while connections are cut and the scheduler is stopped at random
    moments (each stop cancels whatever it was doing); the store is checked while stopped.
    In the end, after a last cut, new mail is stored within seconds, without polling."""
    await harness.connect()
    await sync_account(harness.account_id, harness.services)
    options: dict[str, Any] = {"poll_interval": 3600.0, "backoff_base": 0.2, "backoff_cap": 1.0,
               "idle_timing": IdleTiming(backoff_base=0.1, backoff_cap=0.5)}
    seeds = iter(range(1000, 2000))

    def new_mail(count: int) -> None:
        harness.box.dovecot.append_many(harness.box.user, "INBOX", generate_messages(
            count, seed=next(seeds), rep=("Rex", harness.box.address)))

    def fault(kind: str) -> None:
        harness.injected.append(f"idle-{kind}")
        FAULTS.record(f"idle-{kind}")

    while len(harness.injected) < QUOTA:
        scheduler = InProcessScheduler(harness.services, **options)
        await scheduler.start()
        try:
            new_mail(harness.rng.choice([1, 3, IN_PROCESS_BATCH + 7, 3 * IN_PROCESS_BATCH]))
            await asyncio.sleep(harness.rng.uniform(0.0, 0.5))
            if harness.rng.random() < 0.6:
                harness.proxy.cut_all()
                fault("cut")
                new_mail(harness.rng.choice([1, 2 * IN_PROCESS_BATCH]))
                await asyncio.sleep(harness.rng.uniform(0.0, 0.8))
        finally:
            await scheduler.stop()
        fault("stop")
        await harness.check_consistent()

    scheduler = InProcessScheduler(harness.services, **options)
    await scheduler.start()
    try:
        await asyncio.sleep(0.5)  # IDLE is up
        harness.proxy.cut_all()
        fault("cut")
        new_mail(2)  # must arrive by IDLE after the reconnection, not by the hour-long poll
        deadline = time.monotonic() + 30
        wanted = await harness.total_wanted()
        while await harness.stored_count() < wanted and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert await harness.stored_count() == wanted, harness.why("new mail not stored within 30 s")
    finally:
        await scheduler.stop()
    await sync_account(harness.account_id, harness.services)  # settle the account state
    await harness.check_complete()
