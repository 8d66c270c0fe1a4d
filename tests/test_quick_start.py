"""The README's quick start, followed as written: `scripts/run-server` in one terminal, the
`create-admin` line in a second one (same user, a fresh home, so a fresh data directory, and
no SALESINBOX_* variable), then the first GraphQL operations with the printed token.

The only change to the README's commands is the port (`--port`, passed through to
`salesinbox serve`), so that the test does not need port 8000."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from .served import free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def quick_start() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Quick start")
    return text[start:text.index("\n## ", start + 1)]


def code_blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def one_line_command(section: str, needle: str) -> str:
    (block,) = [b for b in code_blocks(section, "sh") if needle in b]
    (line,) = [line for line in block.splitlines() if line.strip()]
    return line


def operations(block: str) -> list[str]:
    """The block's operations: each starts a line with query/mutation/subscription."""
    return [op.strip() for op in re.split(r"\n(?=(?:query|mutation|subscription)\b)", block) if op.strip()]


@pytest.fixture
def fresh_terminal_env(tmp_path: Path) -> dict[str, str]:
    """A new login's environment: a fresh home, no SALESINBOX_* and no XDG_DATA_HOME."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("SALESINBOX_") and k != "XDG_DATA_HOME"}
    env["HOME"] = str(home)
    return env


@pytest.fixture
def server(fresh_terminal_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Terminal 1: the README's run-server line, until the test ends (then Ctrl-C)."""
    if not (ROOT / ".venv" / "bin" / "salesinbox").exists():
        pytest.skip("the quick start runs in a checkout with its .venv (scripts/run-tests makes it)")
    port = free_port()
    command = one_line_command(quick_start(), "scripts/run-server")
    log_path = tmp_path / "terminal1.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(["bash", "-c", f"{command} --port {port}"], cwd=ROOT,
                                   env=fresh_terminal_env, stdout=log, stderr=log, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # run-server may first (re)install into .venv
        while True:
            if process.poll() is not None:
                pytest.fail(f"run-server exited: {log_path.read_text()}")
            try:
                if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"run-server did not answer: {log_path.read_text()}")
            time.sleep(0.2)
        yield base_url, log_path
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in terminal 1
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def test_the_readme_quick_start_works_as_written(server: tuple[str, Path], fresh_terminal_env: dict[str, str]) -> None:
    base_url, server_log = server
    section = quick_start()
    assert "second terminal" in section

    # Terminal 2: the create-admin line, exactly as written.
    command = one_line_command(section, "create-admin")
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, env=fresh_terminal_env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    database = Path(fresh_terminal_env["HOME"]) / ".local" / "share" / "salesinbox" / "salesinbox.sqlite3"
    # The server's database (made by run-server moments ago), named, and not a new one.
    assert done.stderr.startswith(f"salesinbox: database {database} "), done.stderr
    assert "NEW" not in done.stderr and "Tortoise-ORM" not in done.stderr
    (token,) = [line for line in done.stdout.splitlines() if line.startswith("sit_")]

    # GraphiQL's first operations (the README's first GraphQL block), with the token.
    first_block = code_blocks(section, "graphql")[0]
    answers = []
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        assert "SalesInbox GraphiQL" in http.get("/graphql", headers={"Accept": "text/html"}).text
        for operation in operations(first_block):
            body = http.post("/graphql", json={"query": operation}).json()
            assert "errors" not in body, (operation, body)
            answers.append(body["data"])
    assert len(answers) == 4
    assert answers[0] == {"createUser": {"id": "2"}}
    assert answers[1]["issueToken"]["token"].startswith("sit_")
    assert answers[2] == {"importContacts": {"createdCount": 1}}
    assert "gmail" in {provider["key"] for provider in answers[3]["providers"]}

    # Terminal 1 said where it serves, and logged no ORM shutdown before it was ready.
    log = server_log.read_text()
    assert "SalesInbox ready on database sqlite://" + str(database) in log, log
    assert "Tortoise-ORM shutdown" not in log.split("SalesInbox ready")[0], log


def test_the_server_logs_one_orm_shutdown_after_ready(tmp_path: Path, fresh_terminal_env: dict[str, str]) -> None:
    """Start, then Ctrl-C: 'ready' first, then exactly one 'Tortoise-ORM shutdown'."""
    salesinbox = ROOT / ".venv" / "bin" / "salesinbox"
    if not salesinbox.exists():
        pytest.skip("needs the checkout's .venv")
    port = free_port()
    env = {**fresh_terminal_env, "SALESINBOX_SYNC_ENABLED": "false"}
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen([str(salesinbox), "serve", "--port", str(port)], env=env,
                                   stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while "Application startup complete" not in (tmp_path / "serve.log").read_text():
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)
    served = (tmp_path / "serve.log").read_text()
    assert served.count("Tortoise-ORM shutdown") == 1, served
    assert served.index("SalesInbox ready") < served.index("Tortoise-ORM shutdown"), served
