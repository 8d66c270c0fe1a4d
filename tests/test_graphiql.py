"""Offline GraphiQL: the page references only vendored assets, which are served
locally, and headless Chromium renders the editor with the network blocked; on a first
visit it asks for the API token and then loads the schema, without a reload."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import AsyncGenerator, Iterator, MutableMapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import strawberry
import uvicorn
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http.ides import get_graphql_ide_html

from salesinbox.core.settings import Settings
from salesinbox.schema.asgi_app import create_app
from salesinbox.schema.graphiql import (
    DEFAULT_HEADERS,
    GRAPHIQL_STATIC_DIR,
    GRAPHIQL_STATIC_PATH,
    PAGE_TITLE,
    GraphiQLTemplateError,
    asset_urls,
    graphiql_static_mount,
    render_graphiql_page,
    rewrite_template,
)

from .served import serve as serve_salesinbox
from .servers.browser import ChromiumPage

HTML = {"Accept": "text/html"}
CONTENT_TYPES = {".js": ("text/javascript", "application/javascript"), ".css": ("text/css",)}


# --- a stand-in schema with a subscription (ours has none yet) ---------------


@strawberry.type
class Query:
    @strawberry.field
    def hello(self) -> str:
        return "world"


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def count(self, to: int) -> AsyncGenerator[int, None]:
        for i in range(1, to + 1):
            yield i


class OfflineGraphQL(GraphQL):
    """What schema/asgi_app.py's GraphQL subclass is expected to do."""

    async def render_graphql_ide(self, request):
        return HTMLResponse(render_graphiql_page())


class RequestLog:
    """ASGI middleware remembering (method, path, status) of HTTP requests."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.entries: list[tuple[str, str, int]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def logging_send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.entries.append((scope["method"], scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, logging_send)


@pytest.fixture
def app(settings: Settings) -> RequestLog:
    """The real server (its lifespan opens this test's database), with a request log."""
    return RequestLog(create_app(settings))


@pytest.fixture
def client(app: ASGIApp) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def standin_client() -> Iterator[TestClient]:
    """A minimal app wired like ours, for what our schema does not have yet (subscriptions)."""
    gql = OfflineGraphQL(strawberry.Schema(query=Query, subscription=Subscription))
    routes = [Route("/graphql", gql), WebSocketRoute("/graphql", gql), graphiql_static_mount()]
    with TestClient(Starlette(routes=routes)) as test_client:
        yield test_client


def sri(data: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def local_assets(page: str) -> list[str]:
    return [u for u in asset_urls(page) if not u.startswith("data:")]


# --- unit tests ---------------------------------------------------------------


def test_page_references_no_remote_assets() -> None:
    page = render_graphiql_page()
    urls = local_assets(page)
    assert len(urls) == 7  # react, react-dom, js-cookie, graphiql js+css, explorer js+css
    for url in urls:
        assert urlsplit(url).scheme == "" and not url.startswith("//"), url
        assert url.startswith(GRAPHIQL_STATIC_PATH + "/"), url
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    for needle in ("unpkg", "integrity=", "crossorigin"):
        assert needle not in page


def test_assets_served_locally_and_identical_to_strawberry_pins(client: TestClient) -> None:
    # strawberry's template pins each CDN file by sha384; the vendored copies must match.
    pins = dict(
        re.findall(r'(?:src|href)="https://unpkg\.com/([^"]+)"\s+integrity="([^"]+)"',
                   get_graphql_ide_html("graphiql"))
    )
    assert len(pins) == 7
    for url in local_assets(render_graphiql_page()):
        response = client.get(url)
        assert response.status_code == 200, url
        media_type = response.headers["content-type"].split(";")[0]
        assert media_type in CONTENT_TYPES[Path(url).suffix], (url, media_type)
        assert sri(response.content) == pins[url.removeprefix(GRAPHIQL_STATIC_PATH + "/")], url


def test_graphql_get_serves_offline_page(client: TestClient) -> None:
    response = client.get("/graphql", headers=HTML)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.text == render_graphiql_page()
    assert client.get(f"{GRAPHIQL_STATIC_PATH}/nope.js").status_code == 404


def test_page_sets_title_token_hints_and_endpoint() -> None:
    page = render_graphiql_page()
    assert f"<title>{PAGE_TITLE}</title>" in page and "Strawberry GraphiQL" not in page
    assert PAGE_TITLE == "SalesInbox GraphiQL"
    assert "salesinbox create-admin --email" in page
    assert '\\"API token\\" bar' in page and '\\"Headers\\" tab' in page
    assert json.loads(DEFAULT_HEADERS) == {"Authorization": "Bearer <token>"}
    js_headers = json.dumps(DEFAULT_HEADERS).replace("<", "\\u003c").replace(">", "\\u003e")
    assert f"const DEFAULT_HEADERS = {js_headers};" in page
    assert 'defaultEditorToolsVisibility: "headers"' in page
    # Our component replaced strawberry's: the token bar, no introspection without a token.
    assert "GraphiQLWithExplorer" not in page
    assert "root.render(React.createElement(SalesInboxGraphiQL));" in page
    assert "schema: tokenGiven ? undefined : null" in page
    # HTTP and ws:// both derive from fetchURL, i.e. from graphql_path.
    assert 'new URL("/graphql", window.location.href)' in page
    assert "subscriptionUrl = httpUrlToWebSockeUrl(fetchURL)" in page
    custom = render_graphiql_page("/api/graphql", static_path="/assets/gq")
    assert 'new URL("/api/graphql", window.location.href)' in custom
    assert all(u.startswith("/assets/gq/") for u in local_assets(custom))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param("</head>", '<script src="https://cdn.example/x.js"></script></head>', id="cdn-script"),
        pytest.param("</head>", '<link rel="stylesheet" href="//cdn.example/x.css"></head>', id="cdn-css"),
        pytest.param("graphiql@3.8.3", "graphiql@9.9.9", id="unvendored-version"),
        pytest.param("const EXAMPLE_QUERY", "const WELCOME", id="anchor-gone"),
        pytest.param("GraphiQLWithExplorer))", "App))", id="component-renamed"),
        pytest.param("<title>Strawberry GraphiQL</title>", "<title>GraphiQL</title>", id="title-changed"),
    ],
)
def test_rewrite_fails_loudly_on_template_changes(old: str, new: str) -> None:
    template = get_graphql_ide_html("graphiql")
    assert old in template
    with pytest.raises(GraphiQLTemplateError):
        rewrite_template(template.replace(old, new))


def test_vendored_files_match_versions_txt() -> None:
    listed = {}
    for line in (GRAPHIQL_STATIC_DIR / "VERSIONS.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            digest, rel = line.split("  ", 1)
            listed[rel] = digest
    on_disk = {
        p.relative_to(GRAPHIQL_STATIC_DIR).as_posix()
        for p in GRAPHIQL_STATIC_DIR.rglob("*")
        if p.is_file() and p.name not in ("VERSIONS.txt", ".gitignore")
    }
    assert set(listed) == on_disk
    for rel, digest in listed.items():
        assert hashlib.sha256((GRAPHIQL_STATIC_DIR / rel).read_bytes()).hexdigest() == digest, rel
    packages = {re.match(r"(@[^/]+/[^/]+|[^/]+)", rel).group(1) for rel in listed}
    assert len(packages) == 5
    for package in packages:
        assert f"{package}/LICENSE" in listed, package


def test_subscriptions_share_the_graphql_path(standin_client: TestClient) -> None:
    client = standin_client
    assert client.post("/graphql", json={"query": "{ hello }"}).json() == {"data": {"hello": "world"}}
    with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": json.loads(DEFAULT_HEADERS)})
        assert ws.receive_json()["type"] == "connection_ack"
        ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": "subscription { count(to: 2) }"}})
        assert [ws.receive_json()["payload"]["data"]["count"] for _ in range(2)] == [1, 2]
        assert ws.receive_json() == {"id": "1", "type": "complete"}


# --- headless browser -------------------------------------------------------


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    """Run *app* under uvicorn on a free loopback port in a thread; yield its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="auto"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("uvicorn did not start")
            time.sleep(0.02)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def find_chromium() -> str:
    path = (os.environ.get("SALESINBOX_CHROMIUM") or shutil.which("chromium")
            or shutil.which("chromium-browser"))
    if path and os.access(path, os.X_OK):
        return path
    reason = "headless Chromium not installed (apt-get install chromium)"
    if os.environ.get("SALESINBOX_REQUIRE_SERVERS") == "1":
        pytest.fail(reason + " and SALESINBOX_REQUIRE_SERVERS=1")
    pytest.skip(reason)


def run_chromium(chromium: str, url: str, tmp_path: Path, timeout: float = 90) -> str:
    """Load *url* in headless Chromium with DNS blocked; return the rendered DOM."""
    args = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-extensions",
        f"--user-data-dir={tmp_path / 'profile'}",
        # Nothing but loopback resolves: a CDN request would fail.
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--window-size=1280,900", f"--screenshot={tmp_path / 'graphiql.png'}",
        "--virtual-time-budget=10000", "--dump-dom", url,
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"chromium timed out after {timeout}s")
    finally:
        with suppress(ProcessLookupError):  # leftover children of this run only
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-3000:]
    return out


@pytest.mark.browser
def test_graphiql_renders_offline_in_chromium(app: RequestLog, tmp_path: Path) -> None:
    chromium = find_chromium()
    with serve(app) as base_url:
        dom = run_chromium(chromium, f"{base_url}/graphql", tmp_path)
    # Only React-rendered GraphiQL has these: every script loaded and ran.
    assert "graphiql-container" in dom
    assert "Loading..." not in dom, dom[:2000]
    for marker in ("graphiql-editors", "CodeMirror", "graphiql-editor-tool", "create-admin",
                   "Authorization", "salesinbox-token-bar", f"<title>{PAGE_TITLE}</title>"):
        assert marker in dom, marker
    served = {(m, p): s for m, p, s in app.entries}
    for url in local_assets(render_graphiql_page()):
        assert served.get(("GET", url)) == 200, (url, app.entries)
    # Without a token the page asks for one instead of introspecting (which could only fail).
    assert ("POST", "/graphql") not in served, app.entries
    assert (tmp_path / "graphiql.png").stat().st_size > 0


GRAPHQL_FETCHES = ("performance.getEntriesByType('resource')"
                   ".filter(e => e.initiatorType === 'fetch' && new URL(e.name).pathname === '/graphql').length")
DOCS = "document.querySelector('.graphiql-doc-explorer')"


@pytest.mark.browser
async def test_first_visit_asks_for_the_token_then_loads_the_schema_without_reload(
    db: Settings, admin_token: str, tmp_path: Path,
) -> None:
    """A new browser (no stored headers) on the real server: the token bar, no request
    without a token, then the token typed in the bar and the schema in Docs, same page."""
    chromium = find_chromium()
    async with serve_salesinbox(db, tmp_path / "served.log") as served:
        with ChromiumPage(chromium, tmp_path / "profile") as page:
            page.open(f"{served.http_url}/graphql")
            page.wait_for("!!document.getElementById('salesinbox-token')")
            assert page.evaluate("document.title") == "SalesInbox GraphiQL"
            page.evaluate("window.sameDocument = true")
            page.evaluate("document.querySelector('[aria-label=\"Show Documentation Explorer\"]').click()")
            page.wait_for(f"!!{DOCS}")
            assert "No GraphQL schema available" in page.evaluate(f"{DOCS}.innerText")
            assert page.evaluate(GRAPHQL_FETCHES) == 0, "no introspection with the placeholder token"

            page.evaluate("document.getElementById('salesinbox-token').focus()")
            page.send("Input.insertText", text=admin_token)  # typed, as a user pastes it
            page.evaluate("document.querySelector('#salesinbox-token-bar button').click()")

            page.wait_for(f"!!{DOCS} && {DOCS}.innerText.includes('Root Types')")
            docs = page.evaluate(f"{DOCS}.innerText")
            assert "query" in docs and "Query" in docs and "Error fetching schema" not in docs
            assert page.evaluate("window.sameDocument") is True, "the page was reloaded"
            assert page.evaluate("document.getElementById('salesinbox-token-bar') === null")
            assert page.evaluate(GRAPHQL_FETCHES) >= 1
            stored = json.loads(page.evaluate("localStorage.getItem('graphiql:headers')"))
            assert stored == {"Authorization": f"Bearer {admin_token}"}
            assert f"Bearer {admin_token}" in page.evaluate(
                "document.querySelector('.graphiql-editor-tool').innerText")
