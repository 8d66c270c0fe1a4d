"""``salesinbox serve --workers N``: the real command in a child process on PostgreSQL. Which
worker answered a request is read from the kernel (the process holding the server end of the
client's TCP connection, /proc/net/tcp and /proc/<pid>/fd), not from anything the server says;
/metrics must then count the requests of both; the migrations run once, before the workers;
the sync on, or SQLite, is refused before anything starts."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from salesinbox.core.db.connection import shipped_migrations
from salesinbox.core.settings import Settings

from .database import TemplateDatabase, _with_database
from .served import serve
from .test_operations import METRICS_TOKEN, parse, value

WHO_AM_I = json.dumps({"query": "query WhoAmI { me { id } }"}).encode()


def _children(pid: int) -> set[int]:
    """Every process whose parent is ``pid``."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:  # ended meanwhile
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.add(int(entry))
    return found


def _server_socket_inode(server_port: int, client_port: int) -> str:
    """The inode of the server end of the TCP connection 127.0.0.1:client_port -> server_port."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
        if int(local, 16) == server_port and int(remote, 16) == client_port:
            return fields[9]
    raise AssertionError(f"no server socket for client port {client_port}")


def _owner(pids: set[int], inode: str) -> int:
    """Which of ``pids`` holds the socket ``inode`` open."""
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    raise AssertionError(f"no worker holds socket {inode}")


def _requests_on_new_connections(port: int, token: str, parent: int, connections: int) -> list[int]:
    """Open ``connections`` connections at once, send WhoAmI on each, and return, for each,
    the pid of the process that answered it."""
    opened = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(connections)]
    try:
        for connection in opened:
            connection.request("POST", "/graphql", WHO_AM_I, {
                "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        workers = _children(parent)
        answered = []
        for connection in opened:
            response = connection.getresponse()
            assert response.status == 200 and json.loads(response.read())["data"]["me"]["id"]
            assert connection.sock is not None
            inode = _server_socket_inode(port, connection.sock.getsockname()[1])
            answered.append(_owner(workers, inode))
        return answered
    finally:
        for connection in opened:
            connection.close()


def _scrape(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        response = connection.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        connection.close()


@pytest.mark.postgres_only
async def test_two_workers_answer_and_metrics_count_both(
    db: Settings, rep_token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both worker processes answer requests, and /metrics (whichever worker answers it)
    counts every request of both, through a private multiprocess directory that is removed
    when the server stops."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    log_file = tmp_path / "served.log"
    async with serve(db, log_file, args=["--workers", "2"], metrics_token=METRICS_TOKEN,
                     log_level="INFO") as served:
        match = re.search(r"Prometheus multiprocess directory (\S+)", log_file.read_text())
        assert match, log_file.read_text()
        directory = Path(match.group(1))
        answered: list[int] = []
        for _ in range(20):  # the kernel decides which worker accepts: try until both did
            answered += await asyncio.to_thread(
                _requests_on_new_connections, served.port, rep_token, served.pid, 8)
            if len(set(answered)) == 2:
                break
        workers = set(answered)
        assert len(workers) == 2, f"one worker answered all {len(answered)} requests"
        samples = parse(await asyncio.to_thread(_scrape, served.port))
        assert value(samples, "salesinbox_graphql_operations_total", operation="WhoAmI", type="query") \
            == len(answered)
        assert value(samples, "salesinbox_http_requests_total",
                     route="/graphql", method="POST", status="200") == len(answered)
        files = {path.name for path in directory.iterdir()}
        assert {f"counter_{pid}.db" for pid in workers} <= files, files  # one value file per worker
        assert directory.stat().st_mode & 0o077 == 0  # private: the metrics need a token
    assert not directory.exists()


@pytest.mark.postgres_only
async def test_the_parent_migrates_once_before_the_workers(
    template_database: TemplateDatabase, settings: Settings, tmp_path: Path,
) -> None:
    """On an empty database, ``--workers 3`` comes up ready with every migration recorded
    once: the parent applied them, the workers (which connect without migrating) did not race;
    the job queue's tables, which each worker process creates if missing, were created once."""
    name = f"salesinbox_empty_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(template_database.server_url.replace("postgres://", "postgresql://", 1))
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(template_database.server_url, name)
    try:
        # With the sync in workers: the three processes also create the job queue, once.
        async with serve(settings.with_overrides(database_url=url), tmp_path / "served.log",
                         args=["--workers", "3"], log_level="INFO", sync_enabled="true",
                         sync_runner="workers") as served:
            ready = await asyncio.to_thread(_get_json, served.port, "/readyz")
            assert ready == {"status": "ready", "database": "ok"}
        log = (tmp_path / "served.log").read_text()
        assert log.count("SalesInbox ready on database") == 3, log
        connection = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
        try:
            recorded = [r["name"] for r in await connection.fetch(
                "SELECT name FROM tortoise_migrations ORDER BY name")]
        finally:
            await connection.close()
        assert recorded == shipped_migrations()
        assert "Created the job queue's tables" in log and log.count("Created the job queue's tables") == 1, log
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def _get_json(port: int, path: str) -> object:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


@pytest.mark.parametrize(("variables", "expected"), [
    ({"SALESINBOX_SYNC_ENABLED": "true", "SALESINBOX_DATABASE_URL": "postgres://nobody@127.0.0.1:1/none"},
     "--workers 2 needs the sync out of the server"),
    ({"SALESINBOX_SYNC_ENABLED": "false"}, "--workers 2 needs PostgreSQL"),
], ids=["sync on", "sqlite"])
def test_workers_are_refused_before_anything_starts(
    tmp_path: Path, variables: dict[str, str], expected: str,
) -> None:
    """The sync on (each worker would sync every account), or SQLite (one process is the
    deployment): exit 2 with the fix named, no banner, no database touched."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SALESINBOX_")}
    env.update({"SALESINBOX_DATA_DIR": str(tmp_path / "data"), **variables})
    done = subprocess.run([sys.executable, "-m", "salesinbox.schema.command_line", "serve",
                           "--workers", "2", "--port", "1"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done
    assert expected in done.stderr and done.stderr.startswith("error: "), done.stderr
    assert "GraphQL and GraphiQL at" not in done.stdout
    assert not (tmp_path / "data").exists()  # no SQLite file created, nothing migrated
