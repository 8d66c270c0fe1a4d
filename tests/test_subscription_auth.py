"""WebSocket authentication: open subscriptions end when their token stops being valid (in
this process at once, in another within seconds), odd credentials are typed refusals, and
only the graphql-transport-ws subprotocol is spoken."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import websockets
from starlette.applications import Starlette
from websockets.typing import Subprotocol

from salesinbox.core.crm.api_tokens import token_cache
from salesinbox.core.db.models import ApiToken, User
from salesinbox.core.settings import Settings
from salesinbox.core.sync.events import MailEvent
from salesinbox.schema.asgi_app import create_app

from .conftest import GraphQLClient
from .served import live, serve

PROTOCOL = Subprotocol("graphql-transport-ws")
MAIL_EVENTS = "subscription { mailEvents { kind accountId messageIds at } }"
REVOKE = "mutation($id: ID!) { revokeToken(id: $id) { revokedAt } }"
DEACTIVATE = "mutation($id: ID!) { updateUser(id: $id, input: {isActive: false}) { isActive } }"


async def token_id(user: User) -> str:
    return str((await ApiToken.filter(user_id=user.id).order_by("-id").first()).id)


async def open_subscription(url: str, authorization: object) -> websockets.ClientConnection:
    """A connection that ran one query (so it is authenticated) and subscribed to mailEvents."""
    ws = await websockets.connect(url, subprotocols=[PROTOCOL])
    await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": authorization}}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    await ws.send(json.dumps({"id": "me", "type": "subscribe", "payload": {"query": "{ me { id } }"}}))
    reply = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert reply["type"] == "next" and reply["payload"]["data"]["me"]["id"], reply
    assert json.loads(await ws.recv())["type"] == "complete"
    await ws.send(json.dumps({"id": "events", "type": "subscribe", "payload": {"query": MAIL_EVENTS}}))
    await ws.send(json.dumps({"type": "ping"}))  # answered once the subscribe was handled
    assert json.loads(await asyncio.wait_for(ws.recv(), timeout=10))["type"] == "pong"
    return ws


async def closed_with(ws: websockets.ClientConnection, timeout: float) -> tuple[int, str]:
    """Wait for the server to close ``ws``; its close code and reason (nothing may arrive first)."""
    with pytest.raises(websockets.ConnectionClosed) as closed:
        message = await asyncio.wait_for(ws.recv(), timeout=timeout)
        pytest.fail(f"expected the connection to close, got {message!r}")
    assert closed.value.rcvd is not None, "closed without a close frame from the server"
    return closed.value.rcvd.code, closed.value.rcvd.reason


def app_with(db: Settings, **overrides: object) -> Starlette:
    return create_app(db.with_overrides(**overrides), open_db=False)


@pytest.fixture
async def slow_recheck(db: Settings) -> AsyncIterator[Starlette]:
    """Re-checks every minute: anything quicker comes from the in-process revocation hook."""
    application = app_with(db, ws_auth_recheck_seconds=60.0)
    async with application.router.lifespan_context(application):
        yield application


async def wait_for_subscribers(app: Starlette, count: int) -> None:
    for _ in range(500):
        if app.state.services.events.subscriber_count == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {count} mailEvents subscribers")


# --- A: revocation, deactivation and expiry close the connection -------------------------------


async def test_revoking_the_token_closes_its_subscriptions_at_once(
    slow_recheck: Starlette, api: GraphQLClient, rep: User, rep_token: str, admin_token: str
) -> None:
    async with live(slow_recheck) as url:
        ws = await open_subscription(url, f"Bearer {rep_token}")
        await wait_for_subscribers(slow_recheck, 1)
        started = time.monotonic()
        await api.ok(REVOKE, {"id": await token_id(rep)}, token=admin_token)
        code, reason = await closed_with(ws, timeout=5)
        elapsed = time.monotonic() - started
        await wait_for_subscribers(slow_recheck, 0)  # the subscription stopped, not just the socket
    assert (code, reason) == (4401, "This API token was revoked: ask an admin for a new one.")
    assert elapsed < 2


async def test_deactivating_the_user_closes_with_4403(
    slow_recheck: Starlette, api: GraphQLClient, rep: User, rep_token: str, admin_token: str
) -> None:
    async with live(slow_recheck) as url:
        ws = await open_subscription(url, f"Bearer {rep_token}")
        await api.ok(DEACTIVATE, {"id": str(rep.id)}, token=admin_token)
        code, reason = await closed_with(ws, timeout=5)
    assert code == 4403 and "deactivated" in reason


async def test_another_users_revocation_leaves_the_connection_alone(
    slow_recheck: Starlette, api: GraphQLClient, rep: User, rep_token: str, admin_token: str, admin: User
) -> None:
    async with live(slow_recheck) as url:
        ws = await open_subscription(url, f"Bearer {rep_token}")
        await wait_for_subscribers(slow_recheck, 1)
        await api.ok(REVOKE, {"id": await token_id(admin)}, token=admin_token)
        slow_recheck.state.services.events.publish(MailEvent("NEW_MESSAGES", 7, rep.id, (8,)))
        reply = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
        await ws.close()
    assert reply["type"] == "next"
    assert reply["payload"]["data"]["mailEvents"]["messageIds"] == ["8"]


async def test_an_expiring_token_closes_with_4401_on_the_next_check(db: Settings, rep: User, rep_token: str) -> None:
    await ApiToken.filter(user_id=rep.id).update(expires_at=datetime.now(UTC) + timedelta(seconds=1))
    application = app_with(db, ws_auth_recheck_seconds=0.2)
    async with application.router.lifespan_context(application), live(application) as url:
        ws = await open_subscription(url, f"Bearer {rep_token}")
        code, reason = await closed_with(ws, timeout=5)
    assert code == 4401 and "expired" in reason


async def test_a_valid_token_keeps_its_subscription_through_the_checks(
    db: Settings, rep: User, rep_token: str
) -> None:
    token_cache.ttl = 0  # every check goes to the database
    application = app_with(db, ws_auth_recheck_seconds=0.05)
    async with application.router.lifespan_context(application), live(application) as url:
        ws = await open_subscription(url, f"Bearer {rep_token}")
        await wait_for_subscribers(application, 1)
        await asyncio.sleep(0.5)  # ten checks
        application.state.services.events.publish(MailEvent("FLAGS_CHANGED", 7, rep.id, (9,)))
        reply = json.loads(await asyncio.wait_for(ws.recv(), timeout=5))
        await ws.close()
    assert reply["payload"]["data"]["mailEvents"]["kind"] == "FLAGS_CHANGED"


async def test_a_revocation_in_another_process_closes_the_subscription_within_seconds(
    settings: Settings, api: GraphQLClient, rep: User, rep_token: str, admin_token: str, tmp_path: Path
) -> None:
    """Two API processes on one database: revoked through this one, subscribed to the other."""
    async with serve(settings, tmp_path / "serve.log", ws_auth_recheck_seconds="0.5",
                     token_cache_seconds="0.5") as other:
        ws = await open_subscription(other.ws_url, f"Bearer {rep_token}")
        started = time.monotonic()
        await api.ok(REVOKE, {"id": await token_id(rep)}, token=admin_token)
        code, reason = await closed_with(ws, timeout=10)
        elapsed = time.monotonic() - started
    assert code == 4401 and "revoked" in reason
    assert elapsed < 3  # at most a re-check interval plus the other process's cache time


# --- E: odd credentials and the legacy subprotocol ---------------------------------------------


@pytest.mark.parametrize("authorization", [42, True, ["Bearer x"], {"Bearer": "x"}])
async def test_a_non_string_authorization_is_unauthenticated(app: Starlette, authorization: object) -> None:
    async with live(app) as url, websockets.connect(url, subprotocols=[PROTOCOL]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": authorization}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "{ me { id } }"}}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert reply["type"] == "error"
    [error] = reply["payload"]
    assert error["extensions"] == {"code": "UNAUTHENTICATED"}
    assert "'Bearer <token>'" in error["message"]


async def test_the_lowercase_authorization_key_works_too(app: Starlette, rep_token: str) -> None:
    async with live(app) as url, websockets.connect(url, subprotocols=[PROTOCOL]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {rep_token}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "{ me { name } }"}}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert reply["payload"]["data"]["me"]["name"] == "Rex Rep"


@pytest.mark.parametrize("subprotocols", [["graphql-ws"], None], ids=["legacy-graphql-ws", "none"])
async def test_a_handshake_without_graphql_transport_ws_is_refused(
    app: Starlette, subprotocols: list[str] | None
) -> None:
    async with live(app) as url:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url, subprotocols=subprotocols):  # type: ignore[arg-type]
                pytest.fail("the handshake was accepted")
    response = refused.value.response
    assert response.status_code == 400
    [error] = json.loads(response.body)["errors"]
    assert error["extensions"] == {"code": "BAD_REQUEST"} and "graphql-transport-ws" in error["message"]


async def test_a_client_offering_both_protocols_gets_graphql_transport_ws(app: Starlette, rep_token: str) -> None:
    async with live(app) as url, websockets.connect(url, subprotocols=[Subprotocol("graphql-ws"), PROTOCOL]) as ws:
        assert ws.subprotocol == PROTOCOL
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {rep_token}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"


@pytest.mark.parametrize("payload", ["{ me { id } }", None, {"query": 42}, {"query": "{ me { id } }", "variables": []}])
async def test_a_malformed_subscribe_closes_with_4400(app: Starlette, rep_token: str, payload: object) -> None:
    async with live(app) as url, websockets.connect(url, subprotocols=[PROTOCOL]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {rep_token}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        code, reason = await closed_with(ws, timeout=5)
    assert code == 4400 and "query" in reason


@pytest.mark.parametrize(
    "message", ["[" * 10_000 + "]" * 10_000, '{"type": "ping", "x": ' + "[" * 5000 + "]" * 5000 + "}"],
    ids=["array", "in-an-object"],
)
async def test_a_message_nested_too_deeply_closes_with_4400(app: Starlette, message: str) -> None:
    async with live(app) as url, websockets.connect(url, subprotocols=[PROTOCOL]) as ws:
        await ws.send(message)
        code, _ = await closed_with(ws, timeout=5)
    assert code == 4400
