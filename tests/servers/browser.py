"""Drive headless Chromium over the DevTools protocol: load a page, run JavaScript in it
(click a button), wait for where it navigates. For consent pages, which `--dump-dom`
(tests/test_graphiql.py) cannot click.

Chromium starts with the same offline flags as the GraphiQL test (nothing but 127.0.0.1
resolves) and `--remote-debugging-port=0`; the port it picked is read from the
`DevToolsActivePort` file in its profile directory.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import httpx2 as httpx
from websockets.sync.client import ClientConnection, connect


class BrowserError(RuntimeError):
    """Chromium did not start, or a page did not get where it was expected."""


class ChromiumPage:
    """One headless Chromium with one tab; a context manager (the browser is killed on
    exit). `open(url)`, `evaluate(js)`, `wait_for(js)`, `url`."""

    def __init__(self, chromium: str, profile: Path, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._ids = itertools.count(1)
        self._stack = ExitStack()
        profile.mkdir(parents=True, exist_ok=True)
        self._log = open(profile.parent / "chromium.log", "wb")  # not a pipe: it may fill
        self._proc = subprocess.Popen([
            chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--disable-extensions",
            f"--user-data-dir={profile}", "--remote-debugging-port=0",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "about:blank",
        ], stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, start_new_session=True)
        try:
            self._ws = self._connect(profile / "DevToolsActivePort")
        except BaseException:
            self.close()
            raise

    def _connect(self, port_file: Path) -> ClientConnection:
        deadline = time.monotonic() + self.timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise BrowserError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(t for t in targets if t["type"] == "page")
        # websockets 17 wants connect() used as a context manager
        return self._stack.enter_context(
            connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10))

    def send(self, method: str, **params: Any) -> dict:
        """One DevTools command; its result (events arriving meanwhile are dropped)."""
        ident = next(self._ids)
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self._ws.recv(timeout=self.timeout))
            if message.get("id") == ident:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str) -> Any:
        """Poll until the expression is truthy (errors while a page loads count as falsy)."""
        deadline = time.monotonic() + self.timeout
        while True:
            with suppress(BrowserError):
                value = self.evaluate(expression)
                if value:
                    return value
            if time.monotonic() > deadline:
                raise BrowserError(f"still false after {self.timeout}s: {expression}")
            time.sleep(0.05)

    def open(self, url: str) -> None:
        """Navigate and wait until the page has loaded."""
        self.send("Page.navigate", url=url)  # from about:blank, so a new href means it moved
        self.wait_for("location.href !== 'about:blank' && document.readyState === 'complete'")

    @property
    def url(self) -> str:
        return self.evaluate("location.href")

    def close(self) -> None:
        with suppress(Exception):
            self._stack.close()
        with suppress(ProcessLookupError):  # the browser and its helpers (own session)
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait(timeout=10)
        self._log.close()

    def __enter__(self) -> ChromiumPage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
