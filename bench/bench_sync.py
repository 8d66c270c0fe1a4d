"""Benchmark the initial sync end to end against mbsync and a raw imapclient fetch.

    .venv/bin/python bench/bench_sync.py --messages 2000                       # SQLite
    .venv/bin/python bench/bench_sync.py --messages 20000 --database postgres --repeat 3

Needs root (the private Dovecot of tests/servers maps mail users to uid 8), dovecot-imapd,
Debian's ``isync`` (mbsync) and, for ``--database postgres``, a PostgreSQL server accepting
``postgres`` without a password on 127.0.0.1:5432 (one database is created and dropped per run).

One run, on one mailbox of N messages (the deterministic corpus of tests/servers/messages.py,
log-normal sizes, median ~8 KB, ~12 % with an attachment), all over implicit TLS (IMAPS) to the
same private Dovecot, the client trusting the test CA:

  (1) mbsync (the C reference client) pulls INBOX into an empty Maildir, with its default
      ``FSync yes``;
  (2) raw imapclient: login, SELECT, ``UID FETCH <500 uids> (BODY.PEEK[])`` until done,
      results discarded, with ``_imap.debug = 0``;
  (3) our sync: ``sync_account()`` into a fresh, migrated database (fetch + parse + store +
      link; 300 CRM contacts carry addresses of the corpus' customers), in a child process that
      runs nothing else, so that its peak RSS (VmHWM) is ours alone. The parsing processes of
      core/sync/imap_fetch.py are started before timing (once per server process; the time is
      printed); their peaks and the resource tracker's are printed too, and the peak PSS of
      all of them together is sampled every 50 ms. The wall time of the two phases sync.py
      alternates between (fetch+parse, store+link) is printed;
  (4) in the same child, ``sync_account()`` again on the unchanged mailbox (``--unchanged-passes``
      times), with the IMAP commands it sent and the bytes it received counted (CONDSTORE:
      constant in N).

Each of (1)-(3) runs ``--repeat`` times (median reported, every figure printed); a cProfile of
(3) follows (top 15 by cumulative time among core/, imapclient and tortoise functions, then top 15 by own
time without the waits; worker-thread work merged in, the parsing processes' not) unless ``--no-profile``.
The load average is printed at the start and the end: the figures are only comparable on an otherwise
idle machine.

The Dovecot mailbox and the corpus are kept under ``--workdir`` and reused by later runs:
appending 20,000 messages takes minutes, and deleting then re-creating many files within
minutes is several times slower on ext4 (docs/measurements.md#running-dovecot-for-tests). For
the same reason the mbsync Maildirs are deleted only at the end of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

REP = ("Rex Rep", "rex.rep@sales.example.test")  # the corpus' account owner
PASSWORD = "bench-password"
SEED = 1
PG_SERVER = "postgres://postgres@127.0.0.1:5432"


# ------------------------------------------------------------------------------ helpers

def vm_hwm_kib(pid: int | str = "self") -> int:
    """Peak resident set size of a process (VmHWM), in KiB; 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def vm_rss_kib(pid: int | str = "self") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid: int | str) -> int:
    """Proportional set size: shared pages (the interpreter, libraries) counted once in all."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class PssSampler:
    """Samples the PSS of this process plus its children every ``interval`` s; keeps the peak."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval, self.peak_kib = interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            total = pss_kib(os.getpid()) + sum(pss_kib(pid) for pid in child_pids())
            self.peak_kib = max(self.peak_kib, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> PssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def child_pids() -> list[int]:
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            pids += [int(p) for p in (task / "children").read_text().split()]
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_name(pid: int) -> str:
    """"resource tracker" or "worker" (our child processes are multiprocessing's)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "process"
    return "resource tracker" if b"resource_tracker" in cmdline else "worker"


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def fmt_mb(kib: int) -> str:
    return f"{kib / 1024:.0f} MB"


# ------------------------------------------------------------------ child: our sync

async def _child_sync(spec: dict) -> dict:
    """Run in a fresh process: set up a database, sync, sync again; return the figures."""
    import imaplib

    from tortoise import Tortoise

    from salesinbox.core.credentials import SecretBox, generate_key
    from salesinbox.core.crm.users import create_user
    from salesinbox.core.db.connection import open_database
    from salesinbox.core.db.models import (
        CrmRecord,
        Folder,
        FromAddress,
        MailAccount,
        Message,
        MessageLink,
        Profile,
        RecordKind,
    )
    from salesinbox.core.plugin_host.plugins import get_plugin_manager
    from salesinbox.core.plugin_host.provider_registry import ProviderRegistry
    from salesinbox.core.plugin_host.providers import AuthKind, FolderRole, Security
    from salesinbox.core.settings import Settings
    from salesinbox.core.sync.engine import SyncServices, sync_account
    from salesinbox.core.sync.events import EventBus
    from salesinbox.core.transport.server_login import ConnectPolicy

    settings = Settings(
        data_dir=Path(spec["data_dir"]), database_url=spec["database_url"],
        secret_key=generate_key(), allow_private_hosts=True,
        extra_ca_file=Path(spec["ca_file"]), mail_timeout=120.0, sync_enabled=False,
    )
    result: dict = {}
    first_screen: dict = {"ids": [], "seconds": None, "start": None}

    class FirstScreenBus(EventBus):
        """Notes when the sync has published the first 50 new messages (the first screen)."""

        def publish(self, event):  # type: ignore[no-untyped-def]
            if event.kind == "NEW_MESSAGES" and first_screen["seconds"] is None and first_screen["start"]:
                first_screen["ids"].extend(event.message_ids)
                if len(first_screen["ids"]) >= 50:
                    first_screen["seconds"] = time.perf_counter() - first_screen["start"]
            super().publish(event)

    async with open_database(settings):
        secrets = SecretBox.from_settings(settings)
        services = SyncServices(
            secrets=secrets, registry=ProviderRegistry(get_plugin_manager(load_entrypoints=False)),
            policy=ConnectPolicy.from_settings(settings), events=FirstScreenBus(),
        )
        admin = await create_user(None, email="admin@sales.example.test", name="Ada Admin",
                                  profile=Profile.ADMIN)
        rep = await create_user(admin, email=REP[1], name=REP[0])
        secret = secrets.encrypt(spec["password"])
        account = await MailAccount.create(
            user=rep, provider="custom_imap", display_name=REP[0], email=REP[1],
            imap_host="localhost", imap_port=spec["imap_port"], imap_security=Security.SSL,
            imap_username=spec["username"], imap_auth_kind=AuthKind.PASSWORD, imap_secret=secret,
            smtp_host="localhost", smtp_port=465, smtp_security=Security.SSL,
            smtp_username=spec["username"], smtp_auth_kind=AuthKind.PASSWORD, smtp_secret=secret,
            capabilities=spec["capabilities"],
        )
        await FromAddress.create(account=account, address=REP[1], name=REP[0], is_default=True)
        await Folder.create(account=account, name="INBOX", role=FolderRole.INBOX)
        # CRM contacts with the addresses of a share of the corpus' customers: linking works.
        await CrmRecord.bulk_create([
            CrmRecord(organisation_id=rep.organisation_id, kind=RecordKind.CONTACT, owner=rep,
                      last_name=f"Contact {i}", primary_email=email)
            for i, email in enumerate(spec["record_emails"])
        ])

        profiler = cProfile.Profile() if spec.get("profile") else None
        thread_profiles: list[cProfile.Profile] = []
        if profiler is not None:
            real_to_thread = asyncio.to_thread

            async def profiled_to_thread(func, /, *args, **kwargs):  # type: ignore[no-untyped-def]
                prof = cProfile.Profile()
                thread_profiles.append(prof)
                return await real_to_thread(prof.runcall, func, *args, **kwargs)

            asyncio.to_thread = profiled_to_thread  # type: ignore[assignment]
            profiler.enable()
        # The parsing processes are started once per server process, before timing.
        from salesinbox.core.sync import imap_fetch

        began = time.perf_counter()
        start_pool = getattr(imap_fetch, "start_parse_pool", None)  # absent in older versions
        if start_pool is not None and start_pool():
            result["pool_start_seconds"] = time.perf_counter() - began
            result["parse_processes"] = imap_fetch.PARSE_PROCESSES
        # Wall time spent in the two phases sync.py alternates between, per batch.
        try:  # where the sync calls store_batch (the engine itself in older versions)
            from salesinbox.core.sync import folder_sync as store_site
        except ImportError:
            from salesinbox.core.sync import engine as store_site  # type: ignore[no-redef]

        phases = {"fetch_parse": 0.0, "store": 0.0, "batches": 0}
        real_fetch, real_store = imap_fetch.fetch_messages, store_site.store_batch

        def timed_fetch(*args, **kwargs):  # type: ignore[no-untyped-def]
            began = time.perf_counter()
            try:
                return real_fetch(*args, **kwargs)
            finally:
                phases["fetch_parse"] += time.perf_counter() - began
                phases["batches"] += 1

        async def timed_store(*args, **kwargs):  # type: ignore[no-untyped-def]
            began = time.perf_counter()
            try:
                return await real_store(*args, **kwargs)
            finally:
                phases["store"] += time.perf_counter() - began

        imap_fetch.fetch_messages, store_site.store_batch = timed_fetch, timed_store
        result["rss_before_kib"] = vm_rss_kib()
        children_cpu0 = {pid: cpu_seconds(pid) for pid in child_pids()}
        cpu0 = time.process_time()
        start = first_screen["start"] = time.perf_counter()
        with PssSampler() as sampler:
            report = await sync_account(account.id, services)
        elapsed = time.perf_counter() - start
        result["pss_peak_kib"] = sampler.peak_kib
        imap_fetch.fetch_messages, store_site.store_batch = real_fetch, real_store
        result["phases"] = phases
        cpu = time.process_time() - cpu0
        result["children_cpu_seconds"] = sum(cpu_seconds(pid) - children_cpu0.get(pid, 0.0)
                                             for pid in child_pids())
        if profiler is not None:
            profiler.disable()
            asyncio.to_thread = real_to_thread  # type: ignore[assignment]
        stored = await Message.filter(account_id=account.id).count()
        # The first screen: were the 50 messages first published the 50 newest (highest UIDs)?
        newest = set(await Message.filter(account_id=account.id).order_by("-uid").limit(50)
                     .values_list("id", flat=True))
        result["first_screen_seconds"] = first_screen["seconds"]
        result["first_screen_newest"] = newest <= set(first_screen["ids"])
        result.update(
            seconds=elapsed, cpu_seconds=cpu, stored=stored, state=str(report.state),
            links=await MessageLink.all().count(),
            warnings=sum(f.warnings for f in report.folders),
            errors=[f.error for f in report.folders if f.error],
        )
        if profiler is not None:
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            for prof in thread_profiles:
                stats.add(prof)
            # our code and its libraries (the event loop's machinery only shows waiting)
            stats.sort_stats("cumulative").print_stats(r"/(core|imapclient|tortoise|pypika_tortoise)/", 15)
            # and where the CPU goes, without the waits (epoll, locks: the other threads' time)
            stats.sort_stats("tottime").print_stats(r"^(?!.*(\{method 'poll'|\{method 'acquire'|"
                                                    r"\{method 'select'|\{built-in method time\.sleep)).*$", 15)
            result["profile"] = out.getvalue()
        # Peak RSS now, before the unchanged passes: ours plus any worker process of ours.
        workers = child_pids()
        result["rss_kib"] = vm_hwm_kib()
        result["worker_rss_kib"] = [vm_hwm_kib(pid) for pid in workers]
        result["worker_names"] = [process_name(pid) for pid in workers]

        # (4) The unchanged mailbox: count the IMAP commands each pass sends (imapclient writes
        # FETCH, SEARCH, ENABLE… itself, so at the socket) and the bytes it receives.
        from salesinbox.core.transport.imap import _PinnedIMAP4

        commands: list[str] = []
        received = [0]
        real_send, real_readline, real_read = _PinnedIMAP4.send, imaplib.IMAP4.readline, imaplib.IMAP4.read

        def counting_send(self, data):  # type: ignore[no-untyped-def]
            for line in bytes(data).split(b"\r\n"):
                words = line.split(b" ", 3)
                if len(words) > 1 and words[0].startswith(self.tagpre):
                    name = words[1].decode(errors="replace").upper()
                    commands.append(f"UID {words[2].decode(errors='replace').upper()}"
                                    if name == "UID" and len(words) > 2 else name)
            return real_send(self, data)

        def counting_readline(self):  # type: ignore[no-untyped-def]
            line = real_readline(self)
            received[0] += len(line)
            return line

        def counting_read(self, size):  # type: ignore[no-untyped-def]
            data = real_read(self, size)
            received[0] += len(data)
            return data

        _PinnedIMAP4.send = counting_send  # type: ignore[method-assign]
        imaplib.IMAP4.readline, imaplib.IMAP4.read = counting_readline, counting_read  # type: ignore[method-assign]
        times = []
        for _ in range(spec["unchanged_passes"]):
            commands.clear()
            received[0] = 0
            start = time.perf_counter()
            again = await sync_account(account.id, services)
            times.append(time.perf_counter() - start)
            if any(f.new_messages for f in again.folders):
                raise RuntimeError("the unchanged pass stored messages")
        _PinnedIMAP4.send = real_send  # type: ignore[method-assign]
        imaplib.IMAP4.readline, imaplib.IMAP4.read = real_readline, real_read  # type: ignore[method-assign]
        result["unchanged_bytes_received"] = received[0]
        result.update(unchanged_seconds=times, unchanged_commands=list(commands))
        await Tortoise.close_connections()
    return result


def child_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    if spec.get("child_import"):  # a variant of the engine to try, e.g. a patched sync.py
        import importlib.util

        module_spec = importlib.util.spec_from_file_location("bench_variant", spec["child_import"])
        assert module_spec is not None and module_spec.loader is not None
        module_spec.loader.exec_module(importlib.util.module_from_spec(module_spec))
    result = asyncio.run(_child_sync(spec))
    print("RESULT " + json.dumps(result))


# ------------------------------------------------------------------ parent: the baselines

def ensure_mailbox(server, username: str, corpus: list[bytes]) -> tuple[float, list[str]]:  # type: ignore[no-untyped-def]
    """Make ``username``'s INBOX hold exactly ``corpus`` (reusing it when it already does).

    Returns (seconds spent appending, 0 if reused; the capabilities after login)."""
    server.add_user(username, PASSWORD)
    home = server.homes / username
    marker = home / "bench-corpus"
    wanted = f"{len(corpus)} {sum(map(len, corpus))} seed={SEED}"
    with server.imap_client(username) as client:
        capabilities = [c.decode() if isinstance(c, bytes) else str(c) for c in client.capabilities()]
        exists = client.select_folder("INBOX", readonly=True)[b"EXISTS"]
    if exists == len(corpus) and marker.exists() and marker.read_text() == wanted:
        return 0.0, capabilities
    if exists:
        print(f"  mailbox {username} holds {exists} messages, not the corpus: emptying it")
        server.doveadm("expunge", "-u", username, "mailbox", "INBOX", "all")
    print(f"  appending {len(corpus)} messages to {username} (once; later runs reuse them)...",
          flush=True)
    start = time.perf_counter()
    for first in range(0, len(corpus), 1000):
        server.append_many(username, "INBOX", corpus[first:first + 1000])
    marker.write_text(wanted)
    return time.perf_counter() - start, capabilities


def run_mbsync(server, username: str, maildir_root: Path) -> float:  # type: ignore[no-untyped-def]
    """Pull INBOX into an empty Maildir with mbsync over IMAPS; return the wall time."""
    (maildir_root / "mail").mkdir(parents=True)  # mbsync creates INBOX, not its store root
    rc = maildir_root / "mbsyncrc"
    rc.write_text(
        f"""# generated by bench/bench_sync.py
# the default, stated for the record: every message is fsync()ed
FSync yes

IMAPAccount bench
Host localhost
Port {server.ssl_port}
User {username}
Pass {PASSWORD}
SSLType IMAPS
CertificateFile {server.certs.ca_cert}

IMAPStore bench-far
Account bench

MaildirStore bench-near
Path {maildir_root}/mail/
Inbox {maildir_root}/mail/INBOX

Channel bench
Far :bench-far:
Near :bench-near:
Patterns INBOX
Sync Pull
Create Near
SyncState *
"""
    )
    rc.chmod(0o600)
    start = time.perf_counter()
    proc = subprocess.run(["mbsync", "-c", str(rc), "-q", "bench"], capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"mbsync failed ({proc.returncode}): {proc.stderr.strip()}")
    return elapsed


def count_maildir(maildir_root: Path) -> int:
    inbox = maildir_root / "mail" / "INBOX"
    return sum(len(os.listdir(inbox / sub)) for sub in ("cur", "new"))


def run_raw_fetch(server, username: str) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """Login, SELECT, UID FETCH (BODY.PEEK[]) in batches of 500, discard; (seconds, bytes)."""
    start = time.perf_counter()
    total = 0
    with server.imap_client(username) as client:  # imaplib debug already set to 0 there
        assert client._imap.debug == 0
        client.select_folder("INBOX", readonly=True)
        uids = sorted(client.search(["ALL"]))
        for first in range(0, len(uids), 500):
            response = client.fetch(uids[first:first + 500], [b"BODY.PEEK[]"])
            total += sum(len(data[b"BODY[]"]) for data in response.values())
            del response
    return time.perf_counter() - start, total


def record_emails(count: int) -> list[str]:
    """Addresses the corpus' customers use (tests/servers/messages.py `_person`)."""
    import unicodedata

    from tests.servers import messages as corpus_module

    emails = []
    for company in corpus_module._COMPANIES:
        for first in corpus_module._FIRST:
            for last in corpus_module._LAST:
                local = unicodedata.normalize("NFKD", f"{first}.{last}").encode("ascii", "ignore")
                emails.append(f"{local.decode().lower().replace(chr(39), '')}@{company}.example.test")
    emails = sorted(set(emails))
    return emails[:: max(1, len(emails) // count)][:count]


def create_pg_database(settings: list[str]) -> str:
    """A new database; ``settings`` ("name=value") become its defaults (ALTER DATABASE SET)."""
    import asyncpg

    name = f"salesinbox_bench_{uuid.uuid4().hex[:10]}"

    async def create() -> None:
        conn = await asyncpg.connect(PG_SERVER.replace("postgres://", "postgresql://") + "/postgres")
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
            for setting in settings:
                key, _, value = setting.partition("=")
                if not key.replace("_", "").replace(".", "").isalnum():
                    raise ValueError(f"not a setting name: {key!r}")
                await conn.execute(f'ALTER DATABASE "{name}" SET {key} = {quote_literal(value)}')
        finally:
            await conn.close()

    asyncio.run(create())
    return name


def pg_describe() -> str:
    """The server's version and the settings that decide how the sync's queries run."""
    import asyncpg

    async def read() -> str:
        conn = await asyncpg.connect(PG_SERVER.replace("postgres://", "postgresql://") + "/postgres")
        try:
            version = await conn.fetchval("SHOW server_version")
            values = [f"{name} {await conn.fetchval(f'SHOW {name}')}" for name in
                      ("autovacuum", "plan_cache_mode", "default_toast_compression", "synchronous_commit")]
        finally:
            await conn.close()
        return f"{version}, " + ", ".join(values)

    return asyncio.run(read())


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def drop_pg_database(name: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(PG_SERVER.replace("postgres://", "postgresql://") + "/postgres")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    asyncio.run(drop())


def run_ours(server, username: str, capabilities: list[str], args: argparse.Namespace,  # type: ignore[no-untyped-def]
             run_dir: Path, *, profile: bool, unchanged_passes: int) -> dict:
    """Our initial sync in a child process (fresh database); returns its figures."""
    from salesinbox.core.db.connection import migrate_database

    tag = uuid.uuid4().hex[:8]
    pg_name = None
    if args.database == "postgres":
        pg_name = create_pg_database(args.pg_setting)
        url = f"{PG_SERVER}/{pg_name}"
    else:
        url = f"sqlite://{run_dir}/ours-{tag}.sqlite3"
    try:
        asyncio.run(migrate_database(url))  # untimed: a server migrates once at start-up
        spec = {
            "data_dir": str(run_dir / f"data-{tag}"), "database_url": url,
            "ca_file": str(server.certs.ca_cert), "imap_port": server.ssl_port,
            "username": username, "password": PASSWORD, "capabilities": capabilities,
            "record_emails": record_emails(args.records), "profile": profile,
            "unchanged_passes": unchanged_passes, "child_import": args.child_import,
        }
        proc = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(spec)],
            capture_output=True, text=True, cwd=ROOT,
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"our sync failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return json.loads(lines[-1].removeprefix("RESULT "))
    finally:
        if pg_name:
            drop_pg_database(pg_name)
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{run_dir}/ours-{tag}.sqlite3{suffix}").unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", "-n", type=int, default=2000)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each measurement")
    parser.add_argument("--records", type=int, default=300, help="CRM contacts to link to")
    parser.add_argument("--unchanged-passes", type=int, default=3)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--skip-mbsync", action="store_true")
    parser.add_argument("--workdir", default="/var/tmp/salesinbox-bench",
                        help="kept between runs: the Dovecot mailboxes")
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "salesinbox-bench"),
                        help="the corpus cache (shared with bench_parse.py)")
    parser.add_argument("--pg-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a default of the run's PostgreSQL database, e.g. "
                             "plan_cache_mode=force_custom_plan (repeatable)")
    parser.add_argument("--child-import", metavar="FILE.py",
                        help="run this file in the sync process first (to try engine variants)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child)
        return

    from tests.servers.certs import make_certs
    from tests.servers.dovecot import DovecotServer, unavailable_reason
    from tests.servers.messages import cached_messages

    reason = unavailable_reason()
    if reason:
        sys.exit(f"cannot run: {reason}")
    if not args.skip_mbsync and shutil.which("mbsync") is None:
        sys.exit("cannot run: mbsync is missing (apt-get install isync), or pass --skip-mbsync")
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    n = args.messages
    t0 = time.perf_counter()
    corpus = cached_messages(n, SEED, cache_dir=args.cache_dir)
    sizes = sorted(map(len, corpus))
    print(f"corpus: {n} messages, {sum(sizes) / 1e6:.0f} MB, median {sizes[n // 2] / 1024:.1f} KB, "
          f"{sum(1 for m in corpus if b'filename=' in m)} with attachments "
          f"(loaded in {time.perf_counter() - t0:.1f} s)")
    certs = make_certs(workdir / "certs")
    (workdir / "dovecot").mkdir(exist_ok=True)
    server = DovecotServer(certs, root=workdir / "dovecot")
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=workdir))
    try:
        server.start()
        username = f"bench{n}@example.test"
        appended, capabilities = ensure_mailbox(server, username, corpus)
        if appended:
            print(f"  appended in {appended:.0f} s")
        del corpus
        if args.database == "postgres":
            print(f"PostgreSQL: {pg_describe()}"
                  + (f"; this run's databases: {', '.join(args.pg_setting)}" if args.pg_setting else ""))
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, database {args.database}, "
              f"mailbox {username} on Dovecot {server.ssl_port} (IMAPS); load average "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        # Warm-up: the page cache and Dovecot's indexes are then the same for every client.
        warm, fetched_bytes = run_raw_fetch(server, username)
        print(f"warm-up raw fetch: {warm:.1f} s, {fetched_bytes / 1e6:.0f} MB")

        mbsync_s: list[float] = []
        raw_s: list[float] = []
        ours: list[dict] = []
        for i in range(args.repeat):
            print(f"\nround {i + 1}/{args.repeat}", flush=True)
            if not args.skip_mbsync:
                target = run_dir / f"mbsync-{i}"
                mbsync_s.append(run_mbsync(server, username, target))
                got = count_maildir(target)
                print(f"  (1) mbsync, FSync yes:  {mbsync_s[-1]:7.2f} s  {rate(n, mbsync_s[-1]):7.0f} msg/s"
                      f"  ({got} files)")
                if got != n:
                    raise RuntimeError(f"mbsync stored {got} messages, not {n}")
            raw_s.append(run_raw_fetch(server, username)[0])
            print(f"  (2) raw imapclient:      {raw_s[-1]:7.2f} s  {rate(n, raw_s[-1]):7.0f} msg/s", flush=True)
            result = run_ours(server, username, capabilities, args, run_dir, profile=False,
                              unchanged_passes=args.unchanged_passes)
            ours.append(result)
            print(f"  (3) our sync:            {result['seconds']:7.2f} s  "
                  f"{rate(n, result['seconds']):7.0f} msg/s  (CPU {result['cpu_seconds']:.1f} s in the "
                  f"main process, {result.get('children_cpu_seconds', 0):.1f} s in its parsing processes; "
                  f"{result['stored']} stored, {result['links']} links, "
                  f"{result['warnings']} with warnings, peak RSS {fmt_mb(result['rss_kib'])}"
                  + (" + " + ", ".join(f"{name} {fmt_mb(k)}" for name, k in
                                       zip(result["worker_names"], result["worker_rss_kib"], strict=True))
                     if result["worker_rss_kib"] else "") + ")")
            phases = result["phases"]
            print(f"      in {phases['batches']} batches: fetch+parse {phases['fetch_parse']:.2f} s, "
                  f"store+link {phases['store']:.2f} s, the rest "
                  f"{result['seconds'] - phases['fetch_parse'] - phases['store']:.2f} s"
                  + (f"; {result['parse_processes']} parsing processes started before timing in "
                     f"{result['pool_start_seconds']:.2f} s (once per server process)"
                     if "pool_start_seconds" in result else "; parsing in the sync thread"))
            if result["stored"] != n or result["errors"]:
                raise RuntimeError(f"our sync stored {result['stored']} of {n}: {result['errors']}")
            if result.get("first_screen_seconds") is not None:
                print(f"      first screen: the first 50 messages stored and published after "
                      f"{result['first_screen_seconds']:.2f} s"
                      + (" (the 50 newest)" if result["first_screen_newest"] else " (NOT the 50 newest)"))
            print(f"      memory: sync process {fmt_mb(result['rss_before_kib'])} resident before the sync, "
                  f"peak {fmt_mb(result['rss_kib'])}; peak PSS of it and its children together "
                  f"{fmt_mb(result['pss_peak_kib'])} (sampled every 50 ms)")
            print(f"  (4) unchanged mailbox:   "
                  f"{', '.join(f'{s * 1000:.0f} ms' for s in result['unchanged_seconds'])}  "
                  f"({len(result['unchanged_commands'])} IMAP commands: "
                  f"{' '.join(result['unchanged_commands'])}; {result['unchanged_bytes_received']} bytes "
                  "received)", flush=True)

        ours_s = statistics.median(r["seconds"] for r in ours)
        raw = statistics.median(raw_s)
        peak = max(r["rss_kib"] for r in ours)
        peak_total = max(r["rss_kib"] + sum(r["worker_rss_kib"]) for r in ours)
        unchanged = statistics.median(s for r in ours for s in r["unchanged_seconds"])
        screens = [r["first_screen_seconds"] for r in ours if r.get("first_screen_seconds") is not None]
        print(f"\nsummary, N={n}, {args.database}, median of {args.repeat}:")
        if mbsync_s:
            mb = statistics.median(mbsync_s)
            print(f"  mbsync          {rate(n, mb):7.0f} msg/s")
        print(f"  raw imapclient  {rate(n, raw):7.0f} msg/s")
        print(f"  our sync        {rate(n, ours_s):7.0f} msg/s")
        if mbsync_s:
            print(f"  ours/mbsync     {mb / ours_s:7.2f}x   (target >= 1.3)")
        print(f"  ours/raw        {raw / ours_s:7.2f}x")
        cpu_total = statistics.median(r["cpu_seconds"] + r.get("children_cpu_seconds", 0) for r in ours)
        print(f"  our CPU         {cpu_total:.1f} s (sync process and its parsing processes; "
              f"{cpu_total / n * 1000:.2f} ms a message)")
        pss = max(r["pss_peak_kib"] for r in ours)
        print(f"  peak RSS        {fmt_mb(peak)} (sync process)"
              f"; {fmt_mb(peak_total)} with its child processes (sum of their peaks);"
              f" peak PSS of them all {fmt_mb(pss)}")
        if screens:
            print(f"  first screen    {statistics.median(screens):.2f} s (50 newest stored; target < 2 s)")
        print(f"  unchanged pass  {unchanged * 1000:.0f} ms, "
              f"{len(ours[-1]['unchanged_commands'])} IMAP commands")
        print(f"  load average    {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1, 5, 15 min)")

        if not args.no_profile:
            result = run_ours(server, username, capabilities, args, run_dir, profile=True,
                              unchanged_passes=0)
            print(f"\nprofile of our sync ({result['seconds']:.2f} s under cProfile; the main "
                  "thread plus worker threads merged, parse worker processes not included):")
            print(result["profile"])
    finally:
        server.stop()
        shutil.rmtree(run_dir, ignore_errors=True)  # the mbsync Maildirs: after measuring


if __name__ == "__main__":
    main()
