"""Bounded log lines: the formatter, and what `salesinbox serve` really writes."""

from __future__ import annotations

import io
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from salesinbox.core.log_limits import RECORD_LINES, BoundedFormatter, short_repr, truncate
from salesinbox.schema.command_line import main

LIMIT = 8192
SERVED_LIMIT = 4000
HUGE = "a" * (1024 * 1024)


@pytest.fixture
def bounded_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through a BoundedFormatter into a string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(BoundedFormatter(line_limit=LIMIT))
    logger = logging.getLogger("tests.bounded")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_a_huge_message_becomes_one_bounded_line(bounded_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = bounded_log
    logger.warning("refused %s", HUGE)
    logger.warning("short %s", "line")
    huge_line, short_line = stream.getvalue().splitlines()
    assert len(huge_line) <= LIMIT
    assert " WARNING tests.bounded: refused aaaa" in huge_line
    kept, marker = huge_line.rsplit("… ", 1)
    dropped = int(marker.removeprefix("[truncated ").removesuffix(" chars]"))
    assert len(kept) + dropped == huge_line.index("refused ") + len("refused ") + len(HUGE)  # the count is right
    assert short_line.endswith(" WARNING tests.bounded: short line")


def _fail(depth: int) -> None:
    """Raise a chain of ``depth`` exceptions whose first (printed first) is 1 MB long."""
    try:
        if depth == 0:
            raise ValueError(HUGE)
        _fail(depth - 1)
    except Exception as exc:
        raise RuntimeError(f"step {depth}") from exc


def test_a_traceback_keeps_its_start_and_its_end(bounded_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = bounded_log
    try:
        _fail(200)  # a traceback of ~200 KB besides its 1 MB line
    except RuntimeError:
        logger.exception("sync failed for %s", "acct-7")
    text = stream.getvalue().rstrip("\n")
    lines = text.split("\n")
    assert max(len(line) for line in lines) <= LIMIT
    assert len(text) <= RECORD_LINES * LIMIT
    assert lines[0].endswith("sync failed for acct-7") and lines[1] == "Traceback (most recent call last):"
    assert any(line.startswith("ValueError: aaaa") and line.endswith(" chars]") for line in lines)
    assert any(line.startswith("… [truncated ") for line in lines)  # the middle went
    assert lines[-1] == "RuntimeError: step 200"  # the end stays: what finally failed


def test_truncate_and_short_repr() -> None:
    assert truncate("abc", 3) == "abc"
    cut = truncate("x" * 1000, 100)
    assert len(cut) <= 100 and cut.startswith("xxx") and cut.endswith("chars]")
    assert len(short_repr(HUGE)) < 250 and short_repr("line\nforged") == "'line\\nforged'"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


CONNECT = """mutation($input: ConnectMailAccountInput!) { connectMailAccount(input: $input) { id } }"""


def test_served_log_lines_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """`salesinbox serve`, as an admin runs it: a 1 MB server name and a 12 KB URL reach its
    own and uvicorn's log lines, which stay within SALESINBOX_LOG_LINE_LIMIT (set below the
    default, to see the setting applied)."""
    port = _free_port()
    env = {**os.environ, "SALESINBOX_DATA_DIR": str(tmp_path / "data"), "SALESINBOX_PORT": str(port),
           "SALESINBOX_SYNC_ENABLED": "false", "SALESINBOX_GRAPHIQL": "false",
           "SALESINBOX_LOG_LINE_LIMIT": str(SERVED_LIMIT)}
    env.pop("SALESINBOX_DATABASE_URL", None)
    for name, value in env.items():
        if name.startswith("SALESINBOX_"):
            monkeypatch.setenv(name, value)
    assert main(["create-admin", "--email", "boss@acme.test"]) == 0
    token = [line for line in capsys.readouterr().out.splitlines() if line.startswith("sit_")][-1]

    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log_file:  # a file, not a pipe: megabyte lines must not block the server
        server = subprocess.Popen([sys.executable, "-m", "salesinbox.schema.command_line", "serve"], env=env,
                                  stdout=log_file, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=30) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert server.poll() is None and time.monotonic() < deadline, log_path.read_text()[:2000]
                time.sleep(0.1)
            given = {"provider": "custom_imap", "email": "rex@acme.test", "password": "pw",
                     "incoming": {"host": HUGE, "port": 993, "security": "SSL"},
                     "outgoing": {"host": "localhost", "port": 465, "security": "SSL"}}
            body = http.post("/graphql", json={"query": CONNECT, "variables": {"input": given}},
                             headers={"Authorization": f"Bearer {token}"}).json()
            assert body["errors"][0]["extensions"] == {"code": "INVALID_INPUT", "field": "host"}
            assert http.get("/healthz", params={"pad": "p" * 12_000}).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)

    lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    assert max(len(line) for line in lines) <= SERVED_LIMIT, [line[:200] for line in lines if len(line) > SERVED_LIMIT]
    assert any("salesinbox.core.transport.server_errors: imap 'aaaa" in line for line in lines)
    access = [line for line in lines if "uvicorn.access" in line and "/healthz?pad=ppp" in line]
    assert access and "[truncated" in access[0]
