"""The HTTP edge: body limits (413 while streaming), typed 400s for odd bodies, and nothing
about the schema for callers without a token."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2 as httpx
import pytest
import websockets
from starlette.applications import Starlette
from websockets.typing import Subprotocol

from salesinbox.core.errors import SalesInboxError
from salesinbox.core.settings import Settings
from salesinbox.schema.asgi_app import create_app

from .conftest import GraphQLClient
from .served import live, serve

CHUNK = 64 * 1024
ME = {"query": "{ me { id } }"}


@pytest.fixture
async def small_app(db: Settings) -> AsyncIterator[Starlette]:
    """The app with a 64 KiB body limit (and the default token allowance for attachments)."""
    application = create_app(db.with_overrides(max_request_bytes=CHUNK), open_db=False)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def small(small_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=small_app), base_url="http://t") as http:
        yield http


class Upload:
    """A request body of ``total`` bytes in 64 KiB chunks, counting what the server pulled."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.pulled = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        chunk = b" " * CHUNK
        while self.pulled < self.total:
            self.pulled += CHUNK
            yield chunk


def assert_too_large(response: httpx.Response) -> dict:
    assert response.status_code == 413, response.text
    error = response.json()["errors"][0]
    assert error["extensions"] == {"code": "REQUEST_TOO_LARGE"}
    return error


# --- B: body limits ----------------------------------------------------------------------------


async def test_a_declared_oversized_body_is_refused_before_a_byte_is_read(
    small: httpx.AsyncClient, rep_token: str
) -> None:
    for size, token, advice in [(1024 * 1024, None, "without a valid API token"),
                                (200 * 1024 * 1024, None, "this server's limit"),
                                (200 * 1024 * 1024, rep_token, "this server's limit")]:
        upload = Upload(size)
        headers = {"Content-Type": "application/json", "Content-Length": str(upload.total)}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        error = assert_too_large(await small.post("/graphql", content=upload.chunks(), headers=headers))
        assert upload.pulled == 0
        assert advice in error["message"]


async def test_a_chunked_body_is_cut_off_at_the_limit(small: httpx.AsyncClient) -> None:
    upload = Upload(200 * 1024 * 1024)  # no Content-Length: chunked
    response = await small.post("/graphql", content=upload.chunks(), headers={"Content-Type": "application/json"})
    assert_too_large(response)
    assert upload.pulled <= 2 * CHUNK  # the limit, and the chunk that passed it


async def test_a_valid_token_allows_a_body_the_size_of_an_attachment(
    small: httpx.AsyncClient, rep_token: str
) -> None:
    body = json.dumps({**ME, "variables": {"padding": "x" * (4 * CHUNK)}})  # 256 KiB, unused variable
    headers = {"Content-Type": "application/json"}
    assert_too_large(await small.post("/graphql", content=body, headers=headers))
    assert_too_large(await small.post("/graphql", content=body, headers={
        **headers, "Authorization": "Bearer sit_not-a-real-token"}))
    response = await small.post("/graphql", content=body, headers={**headers, "Authorization": f"Bearer {rep_token}"})
    assert response.status_code == 200 and response.json()["data"]["me"]["id"]
    # Streamed without a length, the same: the token is checked when the body passes 64 KiB.
    upload = Upload(4 * CHUNK)
    response = await small.post("/graphql", content=upload.chunks(), headers={
        **headers, "Authorization": f"Bearer {rep_token}"})
    assert response.status_code == 400  # read in full (spaces are not JSON), refused as a bad body
    assert upload.pulled == 4 * CHUNK


async def test_the_token_allowance_has_a_limit_too(db: Settings, rep_token: str) -> None:
    settings = db.with_overrides(max_request_bytes=CHUNK, max_outgoing_bytes=CHUNK)
    assert settings.max_request_bytes_with_token == CHUNK * 4 // 3 + 1024 * 1024
    application = create_app(settings, open_db=False)
    async with application.router.lifespan_context(application), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application), base_url="http://t"
    ) as http:
        upload = Upload(8 * 1024 * 1024)
        response = await http.post("/graphql", content=upload.chunks(), headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {rep_token}"})
    error = assert_too_large(response)
    assert upload.pulled <= settings.max_request_bytes_with_token + CHUNK
    assert "limit of" in error["message"]


async def test_a_200_mb_chunked_upload_does_not_grow_the_real_server(settings: Settings, tmp_path: Path) -> None:
    """Through `salesinbox serve` (uvicorn), anonymous: the server's peak memory stays put."""
    async with serve(settings, tmp_path / "serve.log", max_request_bytes=str(1024 * 1024)) as served:
        async with httpx.AsyncClient(base_url=served.http_url) as http:
            assert (await http.post("/graphql", json=ME)).status_code == 200  # warm: everything loaded
        before = served.peak_rss_bytes()
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"POST /graphql HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (CHUNK, b" " * CHUNK)
        sent = 0
        reply = asyncio.create_task(reader.read(65536))
        try:
            while sent < 200 * 1024 * 1024 and not reply.done():
                writer.write(chunk)
                await writer.drain()
                sent += CHUNK
            if not reply.done():  # all sent: end the body, so that even a server that read it answers
                writer.write(b"0\r\n\r\n")
            answer = await asyncio.wait_for(reply, timeout=30)
        except ConnectionError:
            answer = b""  # the 413 may be lost to the reset of a connection closed with unread data
        finally:
            reply.cancel()
            writer.close()
        growth = served.peak_rss_bytes() - before
    assert sent < 50 * 1024 * 1024, f"the server read {sent} bytes of a body over its 1 MiB limit"
    assert growth < 32 * 1024 * 1024, f"peak RSS grew by {growth} bytes"
    if answer:
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


async def test_websocket_messages_over_the_limit_close_the_connection(
    small_app: Starlette, settings: Settings, tmp_path: Path
) -> None:
    big = json.dumps({"type": "connection_init", "payload": {"padding": "x" * (2 * CHUNK)}})
    # The app's own check (this uvicorn keeps its 16 MiB default)…
    protocols = [Subprotocol("graphql-transport-ws")]
    async with live(small_app) as url, websockets.connect(url, subprotocols=protocols) as ws:
        await ws.send(big)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    # …and uvicorn's, as `salesinbox serve` configures it.
    async with serve(settings, tmp_path / "serve.log", max_request_bytes=str(CHUNK)) as served:
        async with websockets.connect(served.ws_url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
            await ws.send(big)
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


# --- C: odd bodies get a typed 400 -------------------------------------------------------------


def _deep(levels: int) -> str:
    return "[" * levels + "]" * levels


ODD_BODIES: list[tuple[str, bytes, str]] = [
    ("a number", b"42", "application/json"),
    ("null", b"null", "application/json"),
    ("a string", b'"{ me { id } }"', "application/json"),
    ("true", b"true", "application/json"),
    ("not UTF-8", b'{"query": "\xff\xfe"}', "application/json"),
    ("nested 10,000 deep", _deep(10_000).encode(), "application/json"),
    ("variables nested 10,000 deep", json.dumps({**ME})[:-1].encode() + b', "variables": {"a": '
     + _deep(10_000).encode() + b"}}", "application/json"),
    ("malformed JSON", b'{"query": ', "application/json"),
    ("empty", b"", "application/json"),
    ("a batch", json.dumps([ME, ME]).encode(), "application/json"),
    ("no query", b"{}", "application/json"),
    ("query not a string", json.dumps({"query": 42}).encode(), "application/json"),
    ("query empty", json.dumps({"query": "  "}).encode(), "application/json"),
    ("variables a list", json.dumps({**ME, "variables": [1]}).encode(), "application/json"),
    ("variables a string", json.dumps({**ME, "variables": "{}"}).encode(), "application/json"),
    ("operationName a number", json.dumps({**ME, "operationName": 7}).encode(), "application/json"),
    ("operationName an object", json.dumps({**ME, "operationName": {}}).encode(), "application/json"),
    ("extensions a list", json.dumps({**ME, "extensions": []}).encode(), "application/json"),
    ("text/plain", json.dumps(ME).encode(), "text/plain"),
    ("form-encoded", b"query=%7B+me+%7B+id+%7D+%7D", "application/x-www-form-urlencoded"),
    ("multipart", b"--x\r\n\r\n--x--", "multipart/form-data; boundary=x"),
    ("no content type", json.dumps(ME).encode(), ""),
    ("huge integer", b'{"query": "{ me { id } }", "variables": {"n": ' + b"9" * 5000 + b"}}", "application/json"),
]


@pytest.mark.parametrize(("body", "content_type"), [(b, c) for _, b, c in ODD_BODIES],
                         ids=[name for name, _, _ in ODD_BODIES])
@pytest.mark.parametrize("with_token", [False, True], ids=["anonymous", "with-token"])
async def test_odd_bodies_get_a_typed_400(
    api: GraphQLClient, rep_token: str, body: bytes, content_type: str, with_token: bool
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    if with_token:
        headers["Authorization"] = f"Bearer {rep_token}"
    response = await api.http.post("/graphql", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/json"
    [error] = response.json()["errors"]
    assert error["extensions"] == {"code": "BAD_REQUEST"} and error["message"]


async def test_an_operation_name_not_in_the_document_is_a_typed_400(api: GraphQLClient, rep_token: str) -> None:
    response = await api.http.post("/graphql", json={**ME, "operationName": "Nope"},
                                   headers={"Authorization": f"Bearer {rep_token}"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_a_json_content_type_with_charset_is_fine(api: GraphQLClient, rep_token: str) -> None:
    response = await api.http.post("/graphql", content=json.dumps(ME), headers={
        "Content-Type": "application/json; charset=utf-8", "Authorization": f"Bearer {rep_token}"})
    assert response.status_code == 200 and response.json()["data"]["me"]["id"]


async def test_get_refusals_are_typed_too(api: GraphQLClient, rep_token: str) -> None:
    response = await api.http.get("/graphql", params={"query": "{ me { id } }"},
                                  headers={"Authorization": f"Bearer {rep_token}", "Accept": "application/json"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


# --- D: nothing about the schema without a token ----------------------------------------------


ANONYMOUS_PROBES = [
    "{ mailAcount { id } }",                  # a typo of mailAccount: "Did you mean …?"
    "{ me { emial } }",                        # a typo of a field of User
    "{ leads(first: \"x\") { total } }",       # a wrong argument type
    "{ me { ",                                 # a syntax error
    "query A { me { id } } query A { me { id } }",
    "subscription { mailEvents { kind } }",    # not allowed over HTTP
    "{ __schema { types { name } } }",
    "{ " + "me { id } " * 1000 + "}",          # over the token limit
]


@pytest.mark.parametrize("query", ANONYMOUS_PROBES)
@pytest.mark.parametrize("token", [None, "sit_not-a-real-token"], ids=["no-token", "bad-token"])
async def test_without_a_valid_token_only_unauthenticated_comes_back(
    api: GraphQLClient, query: str, token: str | None
) -> None:
    body = await api.post(query, token=token)
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED"}
    assert error.get("locations") is None and "Did you mean" not in error["message"]


async def test_an_anonymous_operation_name_is_not_checked_either(api: GraphQLClient) -> None:
    response = await api.http.post("/graphql", json={"query": "query A { me { id } }", "operationName": "B"})
    assert response.status_code == 200
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_with_a_token_validation_errors_stay_helpful(api: GraphQLClient, rep_token: str) -> None:
    error = await api.error("{ mailAcount { id } }", token=rep_token)
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "Did you mean 'mailAccount'" in error["message"]


async def test_a_refused_text_is_not_cached_in_place_of_the_real_document(api: GraphQLClient, rep_token: str) -> None:
    query = "query Mine { me { id name } }"
    assert (await api.error(query))["extensions"]["code"] == "UNAUTHENTICATED"
    assert (await api.ok(query, token=rep_token))["me"]["name"] == "Rex Rep"
    assert (await api.error(query))["extensions"]["code"] == "UNAUTHENTICATED"


async def test_over_websocket_an_anonymous_operation_learns_nothing_either(app: Starlette) -> None:
    async with live(app) as url, websockets.connect(url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
            "query": "subscription { mailEvnts { kind } }"}}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert reply["type"] == "error"
    [error] = reply["payload"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED"} and "mailEvents" not in error["message"]


async def test_get_variables_nested_too_deeply_are_a_typed_400(api: GraphQLClient) -> None:
    response = await api.http.get("/graphql", params={"query": "{ me { id } }", "variables": "[" * 3000 + "]" * 3000},
                                  headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


def test_the_limits_are_read_from_the_environment() -> None:
    settings = Settings.from_env({"SALESINBOX_MAX_REQUEST_BYTES": "1000", "SALESINBOX_MAX_OUTGOING_BYTES": "3000",
                                  "SALESINBOX_WS_AUTH_RECHECK_SECONDS": "0.5"})
    assert settings.max_request_bytes == 1000 and settings.ws_auth_recheck_seconds == 0.5
    assert settings.max_request_bytes_with_token == 4000 + 1024 * 1024
    with pytest.raises(SalesInboxError):
        Settings.from_env({"SALESINBOX_WS_AUTH_RECHECK_SECONDS": "0"})  # 0 would re-check in a busy loop
