"""Many accounts on the sync workers (issue 14): N accounts of M messages on one Dovecot.

1. **Sync time, 1 worker vs 2**: a fresh PostgreSQL database per round, the N accounts
   connected (``connect_account``: a real login to Dovecot each), then 1 or 2
   ``salesinbox worker`` processes start; timed from the first worker's start until every
   account is COMPLETE with all its messages stored. Rounds alternate (1, 2, 1, 2 …).
2. **Watching**, on the last 2-worker round's database, with fresh worker processes (so that
   their memory is that of watching, not of the initial sync): one worker watching a single
   mailbox (``SALESINBOX_WORKER_MAX_WATCHED=1``), then one watching all N, each measured 15 s
   after its watchers are up: the memory per watched mailbox is the difference of their RSS
   divided by the difference of mailboxes watched. Then 2 workers: how the mailboxes spread
   over them, and each one's RSS and threads.
3. **New-mail latency**: one ``salesinbox serve`` (sync by the workers) with a ``mailEvents``
   subscription of the accounts' owner; a message is APPENDed to a random account and the
   time until its NEW_MESSAGES event arrives is measured, ``--samples`` times, one at a time.

    .venv/bin/python bench/bench_workers.py                       # 200 accounts x 300 messages
    .venv/bin/python bench/bench_workers.py --accounts 20 --messages 50 --rounds 1   # a quick look

Needs root (the private Dovecot of tests/servers/dovecot.py), ``dovecot-imapd`` and PostgreSQL
on 127.0.0.1:5432 accepting ``postgres`` without a password. Mailboxes are kept in
``--workdir`` and reused (the first run appends N x M messages).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_sync import (  # noqa: E402 - bench/ is on sys.path when run as a script
    PASSWORD,
    SEED,
    create_pg_database,
    drop_pg_database,
    ensure_mailbox,
)

PG_SERVER = "postgres://postgres@127.0.0.1:5432"
METRICS_TOKEN = "bench-metrics-token-0123456789"
DOVECOT_LIMITS = """
default_process_limit = 2000
default_client_limit = 4000
service imap {
  process_limit = 2000
}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def proc_status(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in {"VmRSS", "VmHWM", "Threads"}:
            values[key] = int(rest.split()[0])
    return values


def children_pss_kib(pid: int) -> int:
    total = 0
    children = {c for task in Path(f"/proc/{pid}/task").iterdir()
                for c in (task / "children").read_text().split()}
    for child in children:
        try:
            for line in Path(f"/proc/{child}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


class Processes:
    """The salesinbox processes of one round (workers, maybe an API), stopped together."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.running: list[tuple[asyncio.subprocess.Process, int]] = []

    async def start(self, command: str, name: str) -> tuple[asyncio.subprocess.Process, int]:
        port = free_port()
        log = (self.log_dir / f"{name}.log").open("wb")
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "salesinbox.schema.command_line", command, "--port", str(port),
            env=self.env, stdout=log, stderr=log)
        self.running.append((process, port))
        return process, port

    async def wait_ready(self, port: int, path: str = "/readyz", timeout: float = 60) -> None:
        import httpx2 as httpx

        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            while time.monotonic() < deadline:
                try:
                    if (await http.get(path)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"no answer on port {port}: see {self.log_dir}")

    async def stop(self) -> None:
        for process, _port in self.running:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process, _port in self.running:
            try:
                await asyncio.wait_for(process.wait(), timeout=60)
            except TimeoutError:
                process.kill()
        self.running.clear()


async def connect_accounts(url: str, key: str, dovecot, smtp, usernames: list[str]) -> str:  # type: ignore[no-untyped-def]
    """Open the database, create the owner and connect every mailbox; the owner's token."""
    from salesinbox.core.credentials import Secret, SecretBox
    from salesinbox.core.crm.api_tokens import issue_token
    from salesinbox.core.crm.users import create_user
    from salesinbox.core.db.connection import open_database
    from salesinbox.core.db.models import Profile
    from salesinbox.core.mail_accounts.accounts import ConnectAccountInput, ServerInput, connect_account
    from salesinbox.core.plugin_host.plugins import get_plugin_manager
    from salesinbox.core.plugin_host.provider_registry import ProviderRegistry
    from salesinbox.core.plugin_host.providers import Security
    from salesinbox.core.settings import Settings
    from salesinbox.core.transport.server_login import ConnectPolicy

    settings = Settings(database_url=url, secret_key=key, allow_private_hosts=True,
                        extra_ca_file=dovecot.certs.ca_cert, sync_enabled=False)
    async with open_database(settings):
        owner = await create_user(None, email="owner@bench.test", name="Owner", profile=Profile.ADMIN)
        token = (await issue_token(owner, "bench"))[1]
        registry = ProviderRegistry(get_plugin_manager(load_entrypoints=False))
        secrets, policy = SecretBox.from_settings(settings), ConnectPolicy.from_settings(settings)
        semaphore = asyncio.Semaphore(8)

        async def one(username: str) -> None:
            async with semaphore:
                data = ConnectAccountInput(
                    provider="custom_imap", email=username, secret=Secret(PASSWORD),
                    incoming=ServerInput("localhost", dovecot.ssl_port, Security.SSL),
                    outgoing=ServerInput("localhost", smtp.ssl_port, Security.SSL))
                await connect_account(owner, data, registry=registry, secrets=secrets, policy=policy)
        await asyncio.gather(*(one(u) for u in usernames))
    return token


async def count(url: str, sql: str) -> int:
    import asyncpg

    connection = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        return int(await connection.fetchval(sql))
    finally:
        await connection.close()


async def sync_round(args: argparse.Namespace, dovecot, smtp, usernames: list[str], workers: int,  # type: ignore[no-untyped-def]
                     key: str, log_dir: Path, keep: bool) -> tuple[float, str | None, str | None, Processes | None]:
    name = await asyncio.to_thread(create_pg_database, [])
    url = f"{PG_SERVER}/{name}"
    token = await connect_accounts(url, key, dovecot, smtp, usernames)
    env = worker_env(url, key, dovecot)
    processes = Processes(env, log_dir)
    started = time.monotonic()
    ports = [(await processes.start("worker", f"sync{workers}-worker{i + 1}"))[1] for i in range(workers)]
    for port in ports:
        await processes.wait_ready(port)
    ready = time.monotonic() - started
    expected = len(usernames) * args.messages
    while True:
        complete = await count(url, "SELECT count(*) FROM mail_account WHERE sync_state = 'COMPLETE'")
        stored = await count(url, "SELECT count(*) FROM message")
        if complete == len(usernames) and stored >= expected:
            break
        await asyncio.sleep(0.25)
    took = time.monotonic() - started
    print(f"  {workers} worker(s): {len(usernames)} accounts, {stored} messages in {took:.1f} s "
          f"({stored / took:.0f} msg/s; workers ready after {ready:.1f} s)", flush=True)
    if keep:
        return took, url, token, processes
    await processes.stop()
    await asyncio.to_thread(drop_pg_database, name)
    return took, None, None, None


def worker_env(url: str, key: str, dovecot) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SALESINBOX_")},
            "SALESINBOX_DATABASE_URL": url, "SALESINBOX_SECRET_KEY": key,
            "SALESINBOX_SYNC_RUNNER": "workers", "SALESINBOX_ALLOW_PRIVATE_HOSTS": "true",
            "SALESINBOX_EXTRA_CA_FILE": str(dovecot.certs.ca_cert), "SALESINBOX_METRICS_TOKEN": METRICS_TOKEN,
            "SALESINBOX_LOG_LEVEL": "WARNING"}


async def idle_gauge(port: int) -> float:
    import httpx2 as httpx

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        text = (await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})).text
    for line in text.splitlines():
        if line.startswith("salesinbox_idle_connections "):
            return float(line.split()[1])
    return 0.0


async def watching(args: argparse.Namespace, url: str, token: str, key: str, dovecot,  # type: ignore[no-untyped-def]
                   usernames: list[str], ids: dict[str, int], log_dir: Path) -> None:
    # The memory of watching: one worker watching a single mailbox, then one watching them
    # all, on the same database (both run the same catch-up passes).
    env = worker_env(url, key, dovecot)
    measured = {}
    for label, limit in (("one", "1"), ("all", str(len(usernames)))):
        alone = Processes({**env, "SALESINBOX_WORKER_MAX_WATCHED": limit}, log_dir)
        process, port = await alone.start("worker", f"memory-{label}")
        await alone.wait_ready(port)
        wanted = 1 if label == "one" else len(usernames)
        deadline = time.monotonic() + 300
        while await idle_gauge(port) < wanted and time.monotonic() < deadline:
            await asyncio.sleep(1)
        await asyncio.sleep(15)  # settle: the catch-up passes of the new watchers end
        measured[label] = (proc_status(process.pid), await idle_gauge(port), children_pss_kib(process.pid))
        await alone.stop()
        status, watched_now, children = measured[label]
        print(f"  1 worker watching {watched_now:.0f}: RSS {status['VmRSS'] / 1024:.0f} MB "
              f"(peak {status['VmHWM'] / 1024:.0f}), {status['Threads']} threads; its parsing processes "
              f"{children / 1024:.0f} MB PSS")
    (one, one_watched, _), (every, all_watched, _) = measured["one"], measured["all"]
    per = (every["VmRSS"] - one["VmRSS"]) / max(all_watched - one_watched, 1)
    print(f"  memory per watched mailbox: {per:.0f} KB ((RSS watching {all_watched:.0f} - RSS watching "
          f"{one_watched:.0f}) / {all_watched - one_watched:.0f}); threads per watched mailbox "
          f"{(every['Threads'] - one['Threads']) / max(all_watched - one_watched, 1):.2f}")

    processes = Processes(env, log_dir)
    workers = [await processes.start("worker", f"watch-worker{i + 1}") for i in range(2)]
    for _process, port in workers:
        await processes.wait_ready(port)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        watched = [await idle_gauge(port) for _process, port in workers]
        if sum(watched) >= len(usernames) and min(watched) > 0:
            break
        await asyncio.sleep(1)
    await asyncio.sleep(15)  # settle, and let the watchers spread
    watched = [await idle_gauge(port) for _process, port in workers]
    print(f"  2 workers: IDLE connections {[int(w) for w in watched]} (of {len(usernames)} mailboxes)")
    for index, (process, _port) in enumerate(workers):
        status = proc_status(process.pid)
        print(f"  worker {index + 1}: RSS {status['VmRSS'] / 1024:.0f} MB (peak {status['VmHWM'] / 1024:.0f}), "
              f"{status['Threads']} threads; parsing processes {children_pss_kib(process.pid) / 1024:.0f} MB PSS")

    # New mail: APPEND to a random account, time to its event on an API process's subscription.
    import websockets

    api_env = {**worker_env(url, key, dovecot), "SALESINBOX_SYNC_ENABLED": "true"}
    api = Processes(api_env, log_dir)
    _api_process, api_port = await api.start("serve", "api")
    await api.wait_ready(api_port)
    latencies: list[float] = []
    rng = random.Random(SEED)
    from tests.servers.messages import build_message

    async with websockets.connect(f"ws://127.0.0.1:{api_port}/graphql", subprotocols=["graphql-transport-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "e", "type": "subscribe",
                                  "payload": {"query": "subscription { mailEvents { kind accountId } }"}}))
        await asyncio.sleep(1)
        for sample in range(args.samples):
            username = rng.choice(usernames)
            raw = build_message(to=username, subject=f"latency {sample}")
            started = time.monotonic()
            await asyncio.to_thread(dovecot.append, username, "INBOX", raw)
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
                event = message["payload"]["data"]["mailEvents"]
                if event["kind"] == "NEW_MESSAGES" and int(event["accountId"]) == ids[username]:
                    break
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.3)
    await api.stop()
    await processes.stop()
    latencies.sort()
    p95 = latencies[max(0, int(len(latencies) * 0.95) - 1)]
    print(f"  APPEND -> mailEvents over {len(latencies)} samples: p50 {statistics.median(latencies) * 1000:.0f} ms, "
          f"p95 {p95 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")


async def account_ids(url: str) -> dict[str, int]:
    import asyncpg

    connection = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        return {row["email"]: row["id"] for row in await connection.fetch("SELECT id, email FROM mail_account")}
    finally:
        await connection.close()


async def main_async(args: argparse.Namespace) -> None:
    from salesinbox.core.credentials import generate_key
    from tests.servers.certs import make_certs
    from tests.servers.dovecot import DovecotServer
    from tests.servers.messages import cached_messages
    from tests.servers.smtp import SmtpServer

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    certs = make_certs(workdir / "certs")
    (workdir / "dovecot").mkdir(exist_ok=True)
    dovecot = DovecotServer(certs, root=workdir / "dovecot", extra_config=DOVECOT_LIMITS)
    log_dir = workdir / f"logs-{int(time.time())}"
    log_dir.mkdir()
    corpus = cached_messages(args.messages, SEED, cache_dir=workdir / "corpus")
    key = generate_key()
    # Dovecot notices new mail for an IDLE session through inotify, one instance per session,
    # counted per user: here every mailbox belongs to the same system user (uid 8), and past
    # the kernel's default of 128 Dovecot falls back to looking every 30 s. A real mail
    # server spreads its mailboxes over its own settings; this one needs more instances.
    limit_file = Path("/proc/sys/fs/inotify/max_user_instances")
    wanted_instances = 4 * args.accounts + 256
    if int(limit_file.read_text()) < wanted_instances:
        limit_file.write_text(str(wanted_instances))
    print(f"fs.inotify.max_user_instances = {limit_file.read_text().strip()}")
    dovecot.start()
    smtp = SmtpServer(certs).start()
    try:
        usernames = [f"many{i:03d}@example.test" for i in range(args.accounts)]
        for username in usernames:
            smtp.add_user(username, PASSWORD)
        started = time.monotonic()
        for username in usernames:
            await asyncio.to_thread(ensure_mailbox, dovecot, username, corpus)
        print(f"{args.accounts} mailboxes of {args.messages} messages ready in {time.monotonic() - started:.0f} s; "
              f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        results: dict[int, list[float]] = {1: [], 2: []}
        kept: tuple[str, str, Processes] | None = None
        for round_ in range(args.rounds):
            for workers in (1, 2):
                last = round_ == args.rounds - 1 and workers == 2
                took, url, token, processes = await sync_round(args, dovecot, smtp, usernames, workers, key,
                                                               log_dir, last)
                results[workers].append(took)
                if last:
                    assert url and token and processes
                    kept = (url, token, processes)
        one, two = statistics.median(results[1]), statistics.median(results[2])
        print(f"sync of all accounts, median of {args.rounds}: 1 worker {one:.1f} s, 2 workers {two:.1f} s: "
              f"{one / two:.2f}x")
        assert kept is not None
        url, token, processes = kept
        await processes.stop()
        ids = await account_ids(url)
        await watching(args, url, token, key, dovecot, usernames, ids, log_dir)
        await asyncio.to_thread(drop_pg_database, url.rsplit("/", 1)[1])
        print(f"load average at the end {' '.join(f'{x:.2f}' for x in os.getloadavg())}; logs in {log_dir}")
    finally:
        smtp.stop()
        dovecot.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (1 worker, 2 workers)")
    parser.add_argument("--samples", type=int, default=60, help="APPEND -> event samples")
    parser.add_argument("--workdir", default="/var/tmp/salesinbox-bench-workers")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
