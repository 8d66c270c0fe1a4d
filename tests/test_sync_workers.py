"""``salesinbox worker`` in this process, on PostgreSQL and a real Dovecot: jobs sync and
watch accounts, fences keep one writer per account, stalled jobs come back."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import httpx2 as httpx
import procrastinate
import psycopg
import pytest

from salesinbox.core.db.models import MailAccount, Message, SyncState, User
from salesinbox.core.scale_out.account_jobs import FENCE_RETRY_SECONDS
from salesinbox.core.scale_out.fencing import AccountFences, FenceKind
from salesinbox.core.scale_out.job_queue import conninfo, ensure_job_schema, job_app, request_sync, request_watch
from salesinbox.core.scale_out.stall_recovery import recover_stalled_jobs
from salesinbox.core.scale_out.worker import WorkerProcess
from salesinbox.core.settings import Settings
from salesinbox.core.sync import folder_sync
from salesinbox.core.sync.engine import SyncServices, sync_account
from salesinbox.core.sync.folder_sync import FenceLost
from salesinbox.schema.asgi_app import create_app
from salesinbox.schema.worker_app import create_worker_app

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


@pytest.mark.dovecot
async def test_a_sync_whose_account_is_fenced_elsewhere_waits_for_the_fence(
        db: Settings, rep: User, mail_account: TestMailbox, services: SyncServices) -> None:
    """Another process (a frozen worker) holds the account's sync fence: the worker's job does
    not sync beside it, and syncs soon after the fence is free."""
    box = mail_account
    box.dovecot.append_many(box.user, "INBOX", [build_message(to=box.address, subject=f"m{i}") for i in range(3)])
    account = await connect(rep, box, services)
    frozen = AccountFences(db.effective_database_url)
    assert await frozen.try_hold(FenceKind.SYNC, account.id)
    worker = WorkerProcess(worker_settings(db), services)
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(4)
        assert (await MailAccount.get(id=account.id)).sync_state == SyncState.NEW
        assert await Message.filter(folder__account_id=account.id).count() == 0
        await frozen.release(FenceKind.SYNC, account.id)
        took = await wait_for(lambda: _state_is(account.id, SyncState.COMPLETE), timeout=20)
        assert took <= FENCE_RETRY_SECONDS + 3
        assert await Message.filter(folder__account_id=account.id).count() == 3
    finally:
        worker.stop.set()
        await asyncio.wait_for(running, timeout=30)
        await frozen.close()


async def test_a_fence_is_one_process_s_and_is_freed_with_its_session(db: Settings) -> None:
    url = db.effective_database_url
    first, second = AccountFences(url), AccountFences(url)
    try:
        assert await first.try_hold(FenceKind.SYNC, 7)
        assert not await second.try_hold(FenceKind.SYNC, 7)
        assert not await first.try_hold(FenceKind.SYNC, 7)  # a second job of the same process
        assert await second.try_hold(FenceKind.SYNC, 8)  # another account is another lock
        await first.check(FenceKind.SYNC, 7)
        with pytest.raises(FenceLost):
            await second.check(FenceKind.SYNC, 7)
        assert first.held == 1 and second.held == 1
        # The session of the first process dies (its host is gone, the database restarted it):
        assert first._connection is not None
        pid = first._connection.info.backend_pid
        async with await psycopg.AsyncConnection.connect(conninfo(url), autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(FenceLost):
            await first.check(FenceKind.SYNC, 7)
        assert first.held == 0
        assert await second.try_hold(FenceKind.SYNC, 7)
        await first.release(FenceKind.SYNC, 7)  # gone with the session: nothing to do, no error
        await second.release(FenceKind.SYNC, 7)
        assert await first.try_hold(FenceKind.SYNC, 7)  # on a new connection
    finally:
        await first.close()
        await second.close()


@pytest.mark.dovecot
async def test_a_pass_stops_before_the_first_write_after_its_fence_is_lost(
        db: Settings, rep: User, mail_account: TestMailbox, services: SyncServices,
        monkeypatch: pytest.MonkeyPatch) -> None:
    box = mail_account
    box.dovecot.append_many(box.user, "INBOX", [build_message(to=box.address, subject=f"m{i}") for i in range(7)])
    account = await connect(rep, box, services)
    monkeypatch.setattr(folder_sync, "BATCH_SIZE", 2)
    checks = 0

    async def fence() -> None:
        nonlocal checks
        checks += 1
        if checks == 3:
            raise FenceLost("taken over")

    with pytest.raises(FenceLost):
        await sync_account(account.id, replace(services, fence=fence))
    assert await Message.filter(folder__account_id=account.id).count() == 4  # two batches, then nothing
    assert (await MailAccount.get(id=account.id)).last_synced_at is None


async def test_requests_queue_one_job_and_bring_a_waiting_one_forward(db: Settings) -> None:
    url = db.effective_database_url
    await ensure_job_schema(url)
    assert not await ensure_job_schema(url)  # once
    app = job_app(url)
    async with app.open_async():
        assert await request_sync(app, 41, delay=300)
        assert not await request_sync(app, 41, bring_forward=False)
        assert (await _jobs(app, "sync-41"))[0]["scheduled_at"] is not None
        assert not await request_sync(app, 41)  # syncNow: the waiting poll runs now
        jobs = await _jobs(app, "sync-41")
        assert len(jobs) == 1 and jobs[0]["scheduled_at"] is None and jobs[0]["status"] == "todo"
        assert await request_watch(app, 41) and not await request_watch(app, 41)


async def test_the_jobs_of_a_silent_worker_go_back_to_the_queue(db: Settings) -> None:
    url = db.effective_database_url
    await ensure_job_schema(url)
    app = job_app(url)
    async with app.open_async():
        manager = app.job_manager
        silent = await manager.register_worker()
        await request_sync(app, 5)
        job = await manager.fetch_job(queues=None, worker_id=silent)
        assert job is not None and job.status == "doing"
        assert await recover_stalled_jobs(app, stalled_after=2) == 0  # its heartbeat is fresh
        await app.connector.execute_query_async(
            "UPDATE procrastinate_workers SET last_heartbeat = NOW() - INTERVAL '1 minute' WHERE id = %(id)s",
            id=silent)
        assert await recover_stalled_jobs(app, stalled_after=2) == 1
        assert [j["status"] for j in await _jobs(app, "sync-5")] == ["todo"]
        # Taken again by the silent worker, while a twin waits: the stalled copy ends, the twin runs.
        job = await manager.fetch_job(queues=None, worker_id=silent)
        assert job is not None
        assert await request_sync(app, 5, delay=300)  # the next poll
        assert await recover_stalled_jobs(app, stalled_after=2) == 1
        jobs = await _jobs(app, "sync-5")
        assert [j["status"] for j in jobs] == ["failed", "todo"]
        assert jobs[1]["scheduled_at"] is None  # the twin runs now, not at the next poll
        assert await recover_stalled_jobs(app, stalled_after=2) == 0


async def _jobs(app: procrastinate.App, lock: str) -> list[dict]:
    return list(await app.connector.execute_query_all_async(
        "SELECT status::text AS status, scheduled_at FROM procrastinate_jobs WHERE queueing_lock = %(lock)s"
        " OR lock = %(lock)s ORDER BY id", lock=lock))


async def test_a_worker_is_ready_only_with_its_job_queue_and_runners(db: Settings, services: SyncServices) -> None:
    worker = WorkerProcess(worker_settings(db), services)
    app = create_worker_app(worker)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://worker") as http:
        missing = await http.get("/readyz")
        assert missing.status_code == 503 and "tables are missing" in missing.json()["reason"]
        await ensure_job_schema(db.effective_database_url)
        idle = await http.get("/readyz")
        assert idle.status_code == 503 and "not running" in idle.json()["reason"]
        running = asyncio.create_task(worker.run())
        try:
            async def ready() -> bool:
                return (await http.get("/readyz")).status_code == 200
            await wait_for(ready, timeout=15)
            assert (await http.get("/readyz")).json() == {"status": "ready", "database": "ok"}
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/metrics")).status_code == 404  # no SALESINBOX_METRICS_TOKEN
        finally:
            worker.stop.set()
            await asyncio.wait_for(running, timeout=30)
        assert (await http.get("/readyz")).status_code == 503


@pytest.mark.dovecot
async def test_writers_beside_the_workers_take_the_fence(
        db: Settings, rep: User, rep_token: str, mail_account: TestMailbox, services: SyncServices,
        ) -> None:
    """backfillMissingMail on an API process and ``salesinbox sync`` write mail outside the
    workers: while a worker's pass holds the account's fence they refuse (CONFLICT); once it is
    free they run, and a worker's job meanwhile would find the fence taken."""
    box = mail_account
    box.dovecot.append_many(box.user, "INBOX", [build_message(to=box.address, subject=f"m{i}") for i in range(3)])
    account = await connect(rep, box, services)
    settings = db.with_overrides(sync_runner="workers", sync_enabled=True)
    worker_pass = AccountFences(db.effective_database_url)
    assert await worker_pass.try_hold(FenceKind.SYNC, account.id)
    app = create_app(settings, open_db=False)
    backfill = "mutation($id: ID!) { backfillMissingMail(accountId: $id) { folder backfilled } }"
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        reply = (await http.post("/graphql", json={"query": backfill, "variables": {"id": str(account.id)}},
                                 headers={"Authorization": f"Bearer {rep_token}"})).json()
        assert reply["errors"][0]["extensions"]["code"] == "CONFLICT", reply
        assert "running on a worker" in reply["errors"][0]["message"]
        assert await Message.filter(folder__account_id=account.id).count() == 0
        await worker_pass.release(FenceKind.SYNC, account.id)
        reply = (await http.post("/graphql", json={"query": backfill, "variables": {"id": str(account.id)}},
                                 headers={"Authorization": f"Bearer {rep_token}"})).json()
        assert "errors" not in reply, reply
        assert {a["folder"]: a["backfilled"] for a in reply["data"]["backfillMissingMail"]}["INBOX"] == 3
    await worker_pass.close()
    # salesinbox sync, as an operator runs it beside the workers (a process of its own)
    env = {**os.environ, "SALESINBOX_DATABASE_URL": db.effective_database_url, "SALESINBOX_SYNC_RUNNER": "workers",
           "SALESINBOX_SECRET_KEY": db.secret_key, "SALESINBOX_ALLOW_PRIVATE_HOSTS": "true",
           "SALESINBOX_EXTRA_CA_FILE": str(db.extra_ca_file)}

    async def sync_command() -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "salesinbox.schema.command_line", "sync", "--account", str(account.id),
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await process.communicate()
        return process.returncode or 0, output.decode()

    holder = AccountFences(db.effective_database_url)
    assert await holder.try_hold(FenceKind.SYNC, account.id)
    status, output = await sync_command()
    assert status == 2 and "running on a worker" in output, output
    await holder.close()
    status, output = await sync_command()
    assert status == 0 and "INBOX: 3 messages" in output, output
