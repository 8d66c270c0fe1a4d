"""Offline GraphiQL: strawberry's GraphiQL page with its CDN assets served locally.

Strawberry's bundled ``static/graphiql.html`` loads React, GraphiQL and the
explorer plugin from unpkg.com, which an air-gapped host cannot reach. The
files are vendored (byte-identical, see ``scripts/vendor-graphiql``) under
``static/graphiql/<package>@<version>/<path>`` - the same layout as unpkg - so
the page is rewritten by swapping the ``https://unpkg.com/`` prefix for
:data:`GRAPHIQL_STATIC_PATH`.

The page is titled "SalesInbox GraphiQL", and strawberry's React component is
replaced by ours (``static/graphiql_app.js``, inlined): it asks for the API token
before GraphiQL introspects, and introspects again whenever the token changes, so
the schema loads on the first visit without a reload.

The rewrite is strict: if a strawberry upgrade changes the template so that a
remote script or stylesheet would remain, or a vendored file is missing, or a
customisation anchor is gone, :class:`GraphiQLTemplateError` is raised at
import time (and by :func:`render_graphiql_page`). Fix by re-running
``scripts/vendor-graphiql`` and, if needed, the anchors below.
"""

from __future__ import annotations

import functools
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from strawberry.http.ides import get_graphql_ide_html

__all__ = [
    "DEFAULT_HEADERS",
    "DEFAULT_QUERY",
    "GRAPHIQL_APP_JS",
    "GRAPHIQL_STATIC_DIR",
    "GRAPHIQL_STATIC_PATH",
    "GraphiQLTemplateError",
    "PAGE_TITLE",
    "asset_urls",
    "graphiql_static_mount",
    "render_graphiql_page",
    "rewrite_template",
]

#: URL path under which the vendored assets are mounted.
GRAPHIQL_STATIC_PATH = "/static/graphiql"
#: Directory holding the vendored assets (package data, so it works from a wheel).
GRAPHIQL_STATIC_DIR = Path(__file__).resolve().parent / "static" / "graphiql"
#: Our GraphiQL component (token bar, re-introspection), inlined into the page.
GRAPHIQL_APP_JS = Path(__file__).resolve().parent / "static" / "graphiql_app.js"
#: The page's title.
PAGE_TITLE = "SalesInbox GraphiQL"

CDN_PREFIX = "https://unpkg.com/"

#: Initial content of GraphiQL's Headers editor (when the browser stored none).
DEFAULT_HEADERS = json.dumps({"Authorization": "Bearer <token>"}, indent=2)

#: Initial content of the query editor (replaces strawberry's welcome text).
DEFAULT_QUERY = """\
# SalesInbox GraphQL API
#
# Every request needs an API token in the
# Authorization header.
#
# 1. Get a token: on the server, run
#
#      salesinbox create-admin --email EMAIL
#
#    (creates an admin user and prints its
#    token), or for an existing user
#
#      salesinbox issue-token --email EMAIL
#
# 2. Paste it in the "API token" bar at the
#    top: the schema loads at once (Docs,
#    Explorer). It goes to the "Headers" tab
#    below, as
#
#      {"Authorization": "Bearer <token>"}
#
#    where you may change it later. GraphiQL
#    keeps the headers in this browser's
#    local storage and sends them with
#    queries, mutations and (as connection
#    parameters) subscriptions.
#
# 3. Type a query here and run it with
#    Ctrl-Enter or the play button.
#    Ctrl-Space completes; the Docs and
#    Explorer buttons on the left show
#    the schema.
"""


class GraphiQLTemplateError(RuntimeError):
    """Strawberry's GraphiQL template no longer fits the offline rewrite."""


# Opening <script>/<link> tags, and the attributes dropped from them: the
# integrity/crossorigin pair is meant for the CDN (the files are verified by
# sha384 when vendored and by the tests instead).
_TAG_RE = re.compile(r"<(?:script|link)\b[^>]*>", re.S)
_DROP_ATTR_RE = re.compile(r"""\s+(?:integrity="[^"]*"|crossorigin(?:="[^"]*")?)(?=[\s/>])""")
_EXAMPLE_QUERY_RE = re.compile(r"const EXAMPLE_QUERY = `[^`]*`;")
_FETCH_URL = 'const fetchURL = window.location.href.split("?")[0];'
_TITLE = "<title>Strawberry GraphiQL</title>"
_STYLE_END = "</style>"
# Strawberry's component, from its fetcher to the render call, is replaced by ours.
_COMPONENT_RE = re.compile(
    r"const fetcher = GraphiQL\.createFetcher\(.*?root\.render\(React\.createElement\(GraphiQLWithExplorer\)\);",
    re.S,
)
_PAGE_CSS = """
      #salesinbox-graphiql { display: flex; flex-direction: column; width: 100%; height: 100vh; }
      #salesinbox-graphiql-editor { flex: 1; min-height: 0; display: flex; }
      #salesinbox-token-bar {
        display: flex; flex-wrap: wrap; align-items: center; gap: 8px; padding: 8px 12px;
        font: 14px system-ui, sans-serif; background: #fff3cd; border-bottom: 1px solid #e0c97a;
      }
      #salesinbox-token-bar input { flex: 0 1 28em; padding: 4px 6px; font: inherit; }
      #salesinbox-token-bar span { color: #555; font-size: 13px; }
    """


def _js(value: str) -> str:
    """*value* as a JS string literal that is safe inside a <script> element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e")


def _replace_once(page: str, old: str, new: str) -> str:
    """Replace the single occurrence of *old*; raise if it is absent or repeated."""
    if page.count(old) != 1:
        raise GraphiQLTemplateError(f"expected exactly one {old!r} in strawberry's graphiql.html")
    return page.replace(old, new)


def _rewrite_tag(tag: str, static_path: str) -> str:
    tag = _DROP_ATTR_RE.sub("", tag)
    return tag.replace(f'"{CDN_PREFIX}', f'"{static_path.rstrip("/")}/')


class _AssetCollector(HTMLParser):
    """Collects the URLs of <script src> and <link href> in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        key = {"script": "src", "link": "href"}.get(tag)
        self.urls += [v for k, v in attrs if k == key and v]


def asset_urls(page: str) -> list[str]:
    """Return every ``<script src>`` and ``<link href>`` URL of an HTML *page*."""
    collector = _AssetCollector()
    collector.feed(page)
    collector.close()
    return collector.urls


def _check_offline(page: str, static_path: str) -> None:
    """Raise unless every asset of *page* is a vendored local file."""
    prefix = static_path.rstrip("/") + "/"
    for url in asset_urls(page):
        parts = urlsplit(url)
        if parts.scheme == "data":  # the inline favicon
            continue
        if parts.scheme or parts.netloc:
            raise GraphiQLTemplateError(f"remote asset left in GraphiQL page: {url}")
        if not url.startswith(prefix):
            raise GraphiQLTemplateError(f"unexpected asset in GraphiQL page: {url}")
        local = GRAPHIQL_STATIC_DIR / url.removeprefix(prefix)
        if not local.is_file():
            raise GraphiQLTemplateError(
                f"{url} is not vendored ({local} missing); run scripts/vendor-graphiql"
            )
    for needle in ("unpkg.com", "integrity=", "crossorigin"):
        if needle in page:
            raise GraphiQLTemplateError(f"{needle!r} left in GraphiQL page")


def rewrite_template(
    template: str, graphql_path: str = "/graphql", static_path: str = GRAPHIQL_STATIC_PATH
) -> str:
    """Turn strawberry's GraphiQL *template* into an offline page (see :func:`render_graphiql_page`)."""
    page = _TAG_RE.sub(lambda m: _rewrite_tag(m.group(0), static_path), template)
    page, found = _EXAMPLE_QUERY_RE.subn(
        lambda _: f"const EXAMPLE_QUERY = {_js(DEFAULT_QUERY)};", page
    )
    if found != 1:
        raise GraphiQLTemplateError("expected exactly one EXAMPLE_QUERY in strawberry's graphiql.html")
    # HTTP and WebSocket (subscriptions) endpoints: the template derives the
    # ws:// URL from fetchURL, so both use graphql_path.
    page = _replace_once(
        page, _FETCH_URL, f"const fetchURL = new URL({_js(graphql_path)}, window.location.href).href;"
    )
    page = _replace_once(page, _TITLE, f"<title>{PAGE_TITLE}</title>")
    page = _replace_once(page, _STYLE_END, _PAGE_CSS + _STYLE_END)
    component = (
        f"const DEFAULT_HEADERS = {_js(DEFAULT_HEADERS)};\n"
        + GRAPHIQL_APP_JS.read_text(encoding="utf-8")
        + 'const root = ReactDOM.createRoot(document.getElementById("graphiql"));\n'
        + "root.render(React.createElement(SalesInboxGraphiQL));"
    )
    page, found = _COMPONENT_RE.subn(lambda _: component, page)
    if found != 1:
        raise GraphiQLTemplateError("expected exactly one GraphiQLWithExplorer component in strawberry's graphiql.html")
    _check_offline(page, static_path)
    return page


@functools.lru_cache(maxsize=8)
def render_graphiql_page(
    graphql_path: str = "/graphql", *, static_path: str = GRAPHIQL_STATIC_PATH
) -> str:
    """Return strawberry's GraphiQL HTML rewritten to work offline.

    Every CDN script/stylesheet points at the vendored copy under
    *static_path* (without ``integrity``/``crossorigin``), the page queries
    *graphql_path* over HTTP and WebSocket (resolved against the page URL),
    the editors start with :data:`DEFAULT_QUERY` and :data:`DEFAULT_HEADERS`,
    and a token bar asks for the API token before the schema is fetched. Raises :class:`GraphiQLTemplateError` if the
    template cannot be made fully local.
    """
    return rewrite_template(get_graphql_ide_html("graphiql"), graphql_path, static_path)


def graphiql_static_mount(path: str = GRAPHIQL_STATIC_PATH) -> Mount:
    """Return a Starlette ``Mount`` serving the vendored GraphiQL assets at *path*."""
    return Mount(path, app=StaticFiles(directory=GRAPHIQL_STATIC_DIR), name="graphiql-static")


# Fail at import, not on the first browser visit, if strawberry's template changed.
render_graphiql_page()
