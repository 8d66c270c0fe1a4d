"""Sync through GraphQL: syncNow, audit and backfill, two-way flags, live events over WebSocket."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
import uvicorn
import websockets
from starlette.applications import Starlette
from websockets.typing import Subprotocol

from salesinbox.core.db.models import Message, User
from salesinbox.core.sync.engine import sync_account

from .conftest import GraphQLClient
from .servers.messages import build_message
from .test_schema_accounts import CONNECT, connect_input

if TYPE_CHECKING:
    from .servers.fixtures import MailAccount as TestMailbox

pytestmark = pytest.mark.dovecot


async def connected(api: GraphQLClient, token: str, box: TestMailbox) -> str:
    return (await api.ok(CONNECT, {"input": connect_input(box)}, token=token))["connectMailAccount"]["id"]


async def test_sync_now_needs_a_running_sync(api: GraphQLClient, rep_token: str, mail_account: TestMailbox) -> None:
    account_id = await connected(api, rep_token, mail_account)
    error = await api.error("mutation($a: ID!) { syncNow(accountId: $a) { id } }", {"a": account_id}, token=rep_token)
    assert error["extensions"]["code"] == "SYNC_DISABLED"


async def test_sync_now_with_the_scheduler(api: GraphQLClient, app: Starlette, rep_token: str,
                                           mail_account: TestMailbox) -> None:
    from salesinbox.core.sync.scheduler import InProcessScheduler

    services = app.state.services
    services.scheduler = InProcessScheduler(services.sync_services(), poll_interval=3600, use_idle=False)
    mail_account.dovecot.append(mail_account.user, "INBOX", build_message(to=mail_account.address))
    account_id = await connected(api, rep_token, mail_account)  # connecting requests the first sync
    try:
        await api.ok(
            "mutation($a: ID!) { syncNow(accountId: $a) { id syncState } }", {"a": account_id}, token=rep_token
        )
        for _ in range(200):
            state = await api.ok("query($a: ID!) { mailAccount(id: $a) { syncState folders { name messagesSynced } } }",
                                 {"a": account_id}, token=rep_token)
            if state["mailAccount"]["syncState"] == "COMPLETE":
                break
            await asyncio.sleep(0.05)
    finally:
        await services.scheduler.stop()
    assert state["mailAccount"]["syncState"] == "COMPLETE"
    assert {"name": "INBOX", "messagesSynced": 1} in state["mailAccount"]["folders"]


async def test_audit_then_backfill(
    api: GraphQLClient, app: Starlette, rep_token: str, mail_account: TestMailbox
) -> None:
    box = mail_account
    box.dovecot.append_many(box.user, "INBOX", [build_message(to=box.address, subject=f"m{i}") for i in range(3)])
    account_id = await connected(api, rep_token, box)
    await sync_account(int(account_id), app.state.services.sync_services())
    await Message.filter(account_id=int(account_id), subject="m1").delete()  # mail silently lost

    query = ("query($a: ID!) { mailAudit(accountId: $a) { folder onServer stored missingCount extraCount coverage "
             "backfilled missing { uid messageId subject date } } }")
    audit = {f["folder"]: f for f in (await api.ok(query, {"a": account_id}, token=rep_token))["mailAudit"]}
    inbox = audit["INBOX"]
    assert (inbox["onServer"], inbox["stored"], inbox["missingCount"]) == (3, 2, 1)
    assert inbox["missing"][0]["subject"] == "m1" and inbox["coverage"] == pytest.approx(2 / 3)

    mutation = "mutation($a: ID!) { backfillMissingMail(accountId: $a) { folder backfilled } }"
    filled = {
        f["folder"]: f for f in (await api.ok(mutation, {"a": account_id}, token=rep_token))["backfillMissingMail"]
    }
    assert filled["INBOX"]["backfilled"] == 1
    again = {f["folder"]: f for f in (await api.ok(query, {"a": account_id}, token=rep_token))["mailAudit"]}
    assert again["INBOX"]["missingCount"] == 0 and again["INBOX"]["coverage"] == 1.0


async def test_flags_set_through_the_api_reach_other_devices(api: GraphQLClient, app: Starlette, rep_token: str,
                                                             admin_token: str, mail_account: TestMailbox) -> None:
    box = mail_account
    uid = box.dovecot.append(box.user, "INBOX", build_message(to=box.address))
    account_id = await connected(api, rep_token, box)
    await sync_account(int(account_id), app.state.services.sync_services())
    message = await Message.get(account_id=int(account_id), uid=uid)
    mutation = ("mutation($id: ID!, $s: Boolean, $f: Boolean) { "
                "setMessageFlags(id: $id, seen: $s, flagged: $f) { id seen flagged uid } }")
    data = await api.ok(mutation, {"id": str(message.id), "s": True, "f": True}, token=rep_token)
    assert data["setMessageFlags"] == {"id": str(message.id), "seen": True, "flagged": True, "uid": str(uid)}
    with box.dovecot.imap_client(box.user) as other_device:
        other_device.select_folder("INBOX", readonly=True)
        flags = other_device.get_flags([uid])[uid]
    assert b"\\Seen" in flags and b"\\Flagged" in flags
    # Someone else's mail cannot be changed, not even by an admin.
    error = await api.error(mutation, {"id": str(message.id), "s": False}, token=admin_token)
    assert error["extensions"]["code"] == "NOT_FOUND"


@pytest.fixture
async def live_url(app: Starlette) -> AsyncIterator[str]:
    """The app served by uvicorn on a free port, on this test's event loop."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    yield f"ws://127.0.0.1:{sock.getsockname()[1]}/graphql"
    server.should_exit = True
    await task
    sock.close()


async def test_mail_events_subscription(app: Starlette, api: GraphQLClient, live_url: str, rep: User,
                                        rep_token: str, mail_account: TestMailbox) -> None:
    box = mail_account
    account_id = await connected(api, rep_token, box)
    async with websockets.connect(live_url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {rep_token}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
            "query": "subscription { mailEvents { kind accountId messageIds at } }"}}))
        await asyncio.sleep(0.1)
        box.dovecot.append(box.user, "INBOX", build_message(to=box.address, subject="live"))
        await sync_account(int(account_id), app.state.services.sync_services())
        kinds = []
        while "NEW_MESSAGES" not in kinds:
            reply = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
            assert reply["type"] == "next", reply
            kinds.append(reply["payload"]["data"]["mailEvents"]["kind"])
            event = reply["payload"]["data"]["mailEvents"]
        assert event["accountId"] == account_id and len(event["messageIds"]) == 1


async def test_subscription_without_token_is_refused(app: Starlette, live_url: str) -> None:
    async with websockets.connect(live_url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
            "query": "subscription { mailEvents { kind } }"}}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
    assert reply["type"] in ("error", "next")
    errors = reply["payload"] if reply["type"] == "error" else reply["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "UNAUTHENTICATED"
