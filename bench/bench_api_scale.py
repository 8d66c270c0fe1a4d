"""API throughput with 1 and 2 server processes: ``salesinbox serve --workers N`` under 20
concurrent clients, on PostgreSQL with ≥ 100,000 messages.

Loads bench_views' synthetic organisation (bench/synthetic_org.py, bench_views.SHAPE; 50 users,
20,000 records, ``--messages``) unless ``--reuse``, issues API tokens for ``--viewers`` users,
then for each round starts ``salesinbox serve --workers N`` (sync off, log level WARNING: no
access log) as a separate process on a free port, and the load client
(bench/api_load_client.py) as another: ``--clients`` keep-alive connections in a closed loop
over an even mix of the viewers' SalesInbox first page and the busy contact's Emails related
list (first page of 50), bench_views' queries. After ``--warmup`` seconds, ``--duration``
seconds are recorded. Rounds alternate 1, 2, 1, 2, ... (``--rounds`` of each) so that drift
hits both alike.

Printed per round and per configuration: requests/s, p50/p95/p99 latency (the client's, send
to last byte), the server's CPU-ms per request (utime+stime of the ``serve`` process and all
its descendants, from /proc, over the recorded window), PostgreSQL's (every process named
``postgres`` on the machine: other users of the server count too), the client's, the
machine's busy share of its cores (/proc/stat) and how many cores everything else used
meanwhile (busy minus server, PostgreSQL and client: other work on a shared machine), the
load average, and how many of the connections each worker holds (/proc/net/tcp: the
kernel decides). Then the ratio of the 2-process to the 1-process throughput. The load
client runs on the same machine and competes with the server and PostgreSQL for its cores:
its CPU is printed for that reason.

    .venv/bin/python bench/bench_api_scale.py                       # load 100,000 messages, 3+3 rounds of 20 s
    .venv/bin/python bench/bench_api_scale.py --reuse --duration 30
    .venv/bin/python bench/bench_api_scale.py --reuse --compare-clients   # the client modes' CPU per request
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# bench/ is on sys.path when this runs as a script
from bench_views import BUSY_USER, INBOX_GQL, RELATED_GQL, SHAPE
from tortoise import Tortoise

from salesinbox.core.credentials import generate_key
from salesinbox.core.crm.api_tokens import issue_token
from salesinbox.core.db.connection import tortoise_config
from salesinbox.core.db.models import CrmRecord, RecordKind, User

from synthetic_org import create_and_load, drop_database

CLIENT = Path(__file__).with_name("api_load_client.py")
TICKS = os.sysconf("SC_CLK_TCK")


# -- /proc ----------------------------------------------------------------------------------

def _stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (field 3 is index 0)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def _all_stats() -> dict[int, tuple[str, list[str]]]:
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            stats[int(entry)] = (text[text.index("(") + 1:text.rindex(")")], text.rpartition(")")[2].split())
    return stats


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of ``root`` and all its living descendants."""
    stats = _all_stats()
    children: dict[int, list[int]] = {}
    for pid, (_, fields) in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            fields = stats[pid][1]
            total += int(fields[11]) + int(fields[12])
        todo += children.get(pid, [])
    return total / TICKS


def postgres_cpu() -> float:
    """CPU seconds of every process named ``postgres`` (the server and its backends)."""
    return sum(int(f[11]) + int(f[12]) for name, f in _all_stats().values() if name == "postgres") / TICKS


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def connections_per_worker(root: int, port: int) -> list[int]:
    """For each descendant of ``root`` holding established connections on ``port``, how many."""
    established = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
            established.add(f"socket:[{fields[9]}]")
    stats = _all_stats()
    counts = []
    for pid, (_, fields) in stats.items():
        if pid == root or int(fields[1]) == root:
            try:
                held = sum(os.readlink(f"/proc/{pid}/fd/{fd}") in established for fd in os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                continue
            if held:
                counts.append(held)
    return sorted(counts, reverse=True)


# -- setup ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def requests_mix(url: str, viewers: int) -> tuple[list[dict], str]:
    """The request mix (per viewer: SalesInbox, related list) and a line describing the data."""
    await Tortoise.init(config=tortoise_config(url))
    try:
        users = await User.all().order_by("id")
        owner = users[BUSY_USER]
        record = await CrmRecord.filter(organisation_id=owner.organisation_id).order_by("id").first()
        assert record is not None and record.owner_id == owner.id
        field = "contact" if record.kind == RecordKind.CONTACT else "lead"
        mix = []
        for user in users[:viewers]:
            token = "Bearer " + (await issue_token(user, "bench_api_scale"))[1]
            mix.append({"path": "/graphql", "headers": {"Authorization": token}, "body": {"query": INBOX_GQL}})
            mix.append({"path": "/graphql", "headers": {"Authorization": token},
                        "body": {"query": RELATED_GQL % field, "variables": {"id": str(record.id)}}})
        conn = Tortoise.get_connection("default")
        (total,), = (await conn.execute_query("SELECT count(*) FROM message"))[1]
        (links,), = (await conn.execute_query(f"SELECT count(*) FROM message_link WHERE record_id = {record.id}"))[1]
    finally:
        await Tortoise.close_connections()
    return mix, f"{total} messages; busy {field} {record.id} with {links} links; viewers: users 0..{viewers - 1}"


class Server:
    """``salesinbox serve --workers N`` in a process of its own, until :meth:`stop`."""

    def __init__(self, url: str, workers: int, data_dir: Path, key: str) -> None:
        self.port = free_port()
        env = {**os.environ, "SALESINBOX_DATABASE_URL": url, "SALESINBOX_DATA_DIR": str(data_dir),
               "SALESINBOX_SECRET_KEY": key, "SALESINBOX_SYNC_ENABLED": "false", "SALESINBOX_LOG_LEVEL": "WARNING"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "salesinbox.schema.command_line", "serve", "--port", str(self.port),
             "--workers", str(workers)], env=env, stdout=self.log, stderr=self.log)
        self.workers = workers

    def wait_ready(self) -> None:
        import http.client

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"serve exited: {self.output()}")
            # every worker up: the supervisor's children that hold the listening socket
            workers = [p for p, (_, f) in _all_stats().items() if int(f[1]) == self.process.pid]
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/readyz")
                if connection.getresponse().status == 200 and (self.workers == 1 or len(workers) >= self.workers):
                    time.sleep(1.0)  # the other worker's lifespan, if it was still starting
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"serve did not start: {self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        text = self.output()
        if "Traceback" in text or " ERROR " in text:
            print(text[-3000:])


def percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def run_round(url: str, workers: int, mix: list[dict], args: argparse.Namespace, mode: str) -> dict:
    data_dir = Path(tempfile.mkdtemp(prefix="bench_api_scale-"))
    server = Server(url, workers, data_dir, args.key)
    try:
        server.wait_ready()
        client = subprocess.Popen(
            [sys.executable, str(CLIENT), "127.0.0.1", str(server.port), mode, str(args.clients),
             str(args.warmup), str(args.duration)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert client.stdin is not None and client.stdout is not None
        client.stdin.write(json.dumps(mix))
        client.stdin.close()
        assert client.stdout.readline().strip() == "START"
        before = (tree_cpu(server.process.pid), postgres_cpu(), machine_busy(), time.perf_counter())
        load = os.getloadavg()[0]
        spread = connections_per_worker(server.process.pid, server.port)
        assert client.stdout.readline().strip() == "END"
        after = (tree_cpu(server.process.pid), postgres_cpu(), machine_busy(), time.perf_counter())
        result = json.loads(client.stdout.readline())
        client.wait()
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    latencies = sorted(result["latencies"])
    count = len(latencies)
    busy, total = after[2][0] - before[2][0], after[2][1] - before[2][1]
    wall = after[3] - before[3]
    ours = (after[0] - before[0]) + (after[1] - before[1]) + result["cpu_s"]  # server + PostgreSQL + client
    return {
        "workers": workers, "mode": mode, "requests": count, "errors": result["errors"],
        "first_error": result["first_error"], "rps": count / result["window_s"],
        "p50": percentile(latencies, 0.50), "p95": percentile(latencies, 0.95), "p99": percentile(latencies, 0.99),
        "server_ms": (after[0] - before[0]) * 1000 / count, "pg_ms": (after[1] - before[1]) * 1000 / count,
        "client_ms": result["cpu_s"] * 1000 / count, "busy": busy / total if total else 0.0,
        "load": load, "spread": spread, "wall": wall,
        # cores used by everything else on the machine meanwhile (other users of the machine)
        "others": (busy / TICKS - ours) / wall,
    }


def line(r: dict) -> str:
    errors = f"  {r['errors']} ERRORS: {r['first_error']}" if r["errors"] else ""
    return (f"  {r['workers']} proc  {r['mode']:<7} {r['rps']:7.1f} req/s  p50 {r['p50']:6.1f}  p95 {r['p95']:6.1f}  "
            f"p99 {r['p99']:6.1f} ms  CPU-ms/req: server {r['server_ms']:5.2f}  postgres {r['pg_ms']:5.2f}  "
            f"client {r['client_ms']:5.2f}  cores busy {r['busy']:5.1%} (others {r['others']:.2f} cores)  "
            f"load {r['load']:4.2f}  "
            f"connections per worker {r['spread']}{errors}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/bench_api_scale")
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--reuse", action="store_true", help="skip loading: the database is ready")
    parser.add_argument("--drop", action="store_true", help="drop the database at the end")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each configuration (interleaved)")
    parser.add_argument("--duration", type=float, default=20.0, help="recorded seconds per round")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before recording")
    parser.add_argument("--clients", type=int, default=20, help="concurrent keep-alive connections")
    parser.add_argument("--viewers", type=int, default=6, help="users whose tokens the mix uses")
    parser.add_argument("--client", choices=("raw", "threads", "httpx"), default="raw",
                        help="the load client's HTTP client (see --compare-clients)")
    parser.add_argument("--workers", default="1,2", help="the configurations, alternated per round")
    parser.add_argument("--compare-clients", action="store_true",
                        help="first one round of each client mode against 1 process: their CPU per request")
    args = parser.parse_args()
    url = args.database_url
    if not url.startswith(("postgres://", "postgresql://")):
        raise SystemExit("bench_api_scale runs on PostgreSQL (--workers > 1 needs it)")
    if not args.reuse:
        seconds = asyncio.run(create_and_load(url, args.messages, SHAPE))
        print(f"loaded {args.messages} messages in {seconds:.0f} s")
    args.key = generate_key()
    mix, described = asyncio.run(requests_mix(url, args.viewers))
    print(f"PostgreSQL {url}: {described}; {args.clients} connections, {len(mix)} requests in the mix "
          f"(SalesInbox and related list per viewer); {os.cpu_count()} cores shared by server, PostgreSQL "
          f"and the load client; load average {os.getloadavg()[0]:.2f}")
    if args.compare_clients:
        print("\n--- the load client's own CPU per request, 1 server process, "
              f"{args.duration:.0f} s each")
        for mode in ("raw", "threads", "httpx"):
            print(line(run_round(url, 1, mix, args, mode)), flush=True)
    configurations = [int(w) for w in args.workers.split(",")]
    results: dict[int, list[dict]] = {w: [] for w in configurations}
    print(f"\n--- {args.rounds} interleaved rounds of {args.duration:.0f} s (after {args.warmup:.0f} s warm-up), "
          f"client '{args.client}'")
    for _ in range(args.rounds):
        for workers in configurations:
            result = run_round(url, workers, mix, args, args.client)
            results[workers].append(result)
            print(line(result), flush=True)
    print("\n--- medians over the rounds")
    medians = {}
    for workers, rounds in results.items():
        keys = ("rps", "p50", "p95", "p99", "server_ms", "pg_ms", "client_ms", "busy", "others")
        medians[workers] = {key: statistics.median(r[key] for r in rounds) for key in keys}
        m = medians[workers]
        errors = sum(r["errors"] for r in rounds)
        print(f"  {workers} proc: {m['rps']:7.1f} req/s  p50 {m['p50']:6.1f}  p95 {m['p95']:6.1f}  "
              f"p99 {m['p99']:6.1f} ms  CPU-ms/req: server {m['server_ms']:.2f}  postgres {m['pg_ms']:.2f}  "
              f"client {m['client_ms']:.2f}  cores busy {m['busy']:.1%} (others {m['others']:.2f} cores)  "
              f"({errors} errors)")
    if 1 in medians and 2 in medians:
        per_round = "  ".join(f"{b['rps'] / a['rps']:.2f}" for a, b in zip(results[1], results[2], strict=False))
        print(f"  2 processes / 1 process throughput: {medians[2]['rps'] / medians[1]['rps']:.2f}x "
              f"(per round pair: {per_round}); target >= 1.7x")
    if args.drop:
        asyncio.run(drop_database(url))


if __name__ == "__main__":
    main()
