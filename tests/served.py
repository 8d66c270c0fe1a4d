"""`salesinbox serve` in a child process, on a test's database: a second server process, as in
a deployment where several API processes share one database, and the real uvicorn setup."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx

from salesinbox.core.settings import Settings


@dataclass(frozen=True)
class Served:
    pid: int
    port: int

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    def peak_rss_bytes(self) -> int:
        """The process's peak resident memory so far (VmHWM)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmHWM in /proc status")


def free_port() -> int:
    """A TCP port of 127.0.0.1 free right now (to know a server's URL before it starts)."""
    return _free_port()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _environment(settings: Settings, variables: dict[str, str]) -> dict[str, str]:
    """This process's environment with ``settings``' database, key and data directory, and
    ``SALESINBOX_<NAME>`` for each of ``variables``."""
    return {
        **os.environ,
        "SALESINBOX_DATA_DIR": str(settings.data_dir),
        "SALESINBOX_DATABASE_URL": settings.effective_database_url,
        "SALESINBOX_SECRET_KEY": settings.secret_key,
        **{f"SALESINBOX_{name.upper()}": value for name, value in variables.items()},
    }


async def _until_it_answers(process: asyncio.subprocess.Process, served: Served, path: str, log_file: Path) -> None:
    """Wait (30 s at most) until ``GET path`` answers 200; fail with the log if the process
    exits or never answers."""
    async with httpx.AsyncClient(base_url=served.http_url) as http:
        for _ in range(300):
            if process.returncode is not None:
                raise AssertionError(f"the process exited: {log_file.read_text()}")
            try:
                if (await http.get(path)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"no 200 from {path}: {log_file.read_text()}")


@asynccontextmanager
async def _running(arguments: list[str], port: int, log_file: Path, env: dict[str, str], *, ready_path: str,
                   stop_seconds: float, check_log: bool = True) -> AsyncIterator[Served]:
    """``salesinbox <arguments>`` in a child process until the block ends, once ``ready_path``
    answers 200; then SIGTERM (after SIGCONT: the block may have stopped it), SIGKILL after
    ``stop_seconds``, and with ``check_log`` fail if it logged an error."""
    with log_file.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "salesinbox.schema.command_line", *arguments,
            env=env, stdout=log, stderr=log,
        )
    served = Served(process.pid, port)
    try:
        await _until_it_answers(process, served, ready_path, log_file)
        yield served
    finally:
        if process.returncode is None:
            try:
                os.kill(process.pid, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
                process.terminate()
                await asyncio.wait_for(process.wait(), timeout=stop_seconds)
            except ProcessLookupError:
                pass
            except TimeoutError:
                process.kill()
                await process.wait()
    log_text = log_file.read_text()
    if check_log:
        assert "Traceback" not in log_text and " ERROR " not in log_text, log_text


@asynccontextmanager
async def serve(settings: Settings, log_file: Path, *, port: int | None = None,
                args: Sequence[str] = (), **overrides: str) -> AsyncIterator[Served]:
    """Run ``salesinbox serve`` on ``settings``' database (with sync off), plus
    ``SALESINBOX_<NAME>`` ``overrides``, until the block ends; then fail if it logged an error.
    ``port``: the port to listen on (default: a free one); ``args``: more options of ``serve``
    (``--workers 2``)."""
    port = port or _free_port()
    async with _running(["serve", "--port", str(port), *args], port, log_file,
                        _environment(settings, {"sync_enabled": "false", "log_level": "WARNING", **overrides}),
                        ready_path="/healthz", stop_seconds=10) as served:  # uvicorn waits for open connections
        yield served


@asynccontextmanager
async def live(app: object) -> AsyncIterator[str]:
    """``app`` served by uvicorn in this process, on this test's event loop: its ws:// URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))  # type: ignore[arg-type]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}/graphql"
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def work(settings: Settings, log_file: Path, *, check_log: bool = True,
               **overrides: str) -> AsyncIterator[Served]:
    """Run ``salesinbox worker`` on ``settings``' database (``SALESINBOX_SYNC_RUNNER=workers``,
    plus ``SALESINBOX_<NAME>`` ``overrides``) until the block ends, once its ``/readyz`` says
    ready; then, with ``check_log``, fail if it logged an error. The block may kill or stop
    the process (``Served.pid``)."""
    port = _free_port()
    async with _running(["worker", "--port", str(port)], port, log_file,
                        _environment(settings, {"sync_runner": "workers", **overrides}),
                        ready_path="/readyz", stop_seconds=40, check_log=check_log) as served:
        yield served
