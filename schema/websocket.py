"""GraphQL over WebSocket: the graphql-transport-ws protocol, with the token kept honest.

Only ``graphql-transport-ws`` (the protocol of the ``graphql-ws`` npm library, which
GraphiQL, Apollo Client and urql use) is spoken. A handshake that does not offer it, such as
the legacy ``graphql-ws`` subprotocol of the unmaintained ``subscriptions-transport-ws``, is
refused before the connection opens: HTTP 400 with a ``BAD_REQUEST`` error saying which
protocol to use (HTTP 403 under a server without the WebSocket denial-response extension).

A connection authenticates like HTTP, with the ``Authorization`` of its ``connection_init``
payload, and then stays open for hours: so once it has authenticated, its token is checked
again every ``Settings.ws_auth_recheck_seconds`` (through the token cache, so a revocation
made by another server process is seen within that time plus ``token_cache_seconds``), and at
once when this process revokes a token or changes a user. When the token no longer holds,
its operations stop and the socket closes with 4403 (user deactivated) or 4401 (token
revoked, expired or unknown), as graphql-transport-ws defines them.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Any

from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    SubscribeMessage,
)

from salesinbox.core.crm.api_tokens import Refusal, Unauthenticated, token_cache
from salesinbox.core.errors import ErrorCode

from .context import Context
from .http_requests import error_response

log = logging.getLogger("salesinbox.websocket")

UNAUTHORIZED = 4401
FORBIDDEN = 4403
_MAX_REASON_BYTES = 123  # RFC 6455: a close frame's reason fits in 123 bytes

LEGACY_REFUSAL = (
    "This server speaks the 'graphql-transport-ws' WebSocket subprotocol (the graphql-ws npm "
    "library, as used by GraphiQL, Apollo Client's GraphQLWsLink and urql). The legacy "
    "'graphql-ws' subprotocol of subscriptions-transport-ws is not supported."
)


def offers_supported_protocol(scope: Scope) -> bool:
    """Whether a WebSocket handshake offers graphql-transport-ws."""
    return GRAPHQL_TRANSPORT_WS_PROTOCOL in scope.get("subprotocols", ())


async def refuse_handshake(scope: Scope, receive: Receive, send: Send) -> None:
    """Refuse a WebSocket handshake that does not offer graphql-transport-ws."""
    websocket = WebSocket(scope, receive=receive, send=send)
    if "websocket.http.response" in scope.get("extensions", {}):
        await websocket.send_denial_response(error_response(400, ErrorCode.BAD_REQUEST, LEGACY_REFUSAL))
    else:
        await websocket.close(code=1002, reason="Use the graphql-transport-ws subprotocol")


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """Strawberry's graphql-transport-ws handler, plus re-checks of the connection's token
    and checked ``subscribe`` payloads."""

    _watch: asyncio.Task[None] | None = None

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        if self.connection_acknowledged and self._watch is None:
            self._watch = asyncio.create_task(self._watch_token())

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        payload: Any = message.get("payload")
        if self.connection_acknowledged and not (
            isinstance(payload, dict)
            and isinstance(payload.get("query"), str)
            and isinstance(payload.get("variables"), dict | None)
            and isinstance(payload.get("operationName"), str | None)
        ):
            # graphql-transport-ws: an invalid message closes the socket with 4400.
            await self.handle_invalid_message(
                "A subscribe payload is {query: string, variables?: object, operationName?: string}"
            )
            return
        await super().handle_subscribe(message)

    async def shutdown(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with suppress(asyncio.CancelledError):
                await self._watch
        await super().shutdown()

    async def _watch_token(self) -> None:
        """Re-check the token on a timer and whenever this process forgets the user's tokens."""
        context = self.context
        interval = context.services.settings.ws_auth_recheck_seconds
        changed = asyncio.Event()

        def on_forget(user_id: int) -> None:
            if context.viewer is not None and context.viewer.id == user_id:
                changed.set()

        token_cache.add_listener(on_forget)
        try:
            while True:
                with suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout=interval)
                changed.clear()
                if context.viewer is None:
                    continue  # nothing authenticated on this connection yet
                try:
                    await context.recheck()
                except Unauthenticated as refusal:
                    await self._close_for(refusal)
                    return
                except Exception:  # e.g. the database away for a moment: try again later
                    log.warning("Could not re-check a WebSocket's token", exc_info=True)
        finally:
            token_cache.remove_listener(on_forget)

    async def _close_for(self, refusal: Unauthenticated) -> None:
        """Stop every operation of the connection, then close it with 4403 or 4401."""
        tasks = [op.task for op in self.operations.values() if op.task is not None]
        for operation_id in list(self.operations):
            await self.cleanup_operation(operation_id)
        if tasks:
            await asyncio.wait(tasks)
        code = FORBIDDEN if refusal.reason == Refusal.DEACTIVATED else UNAUTHORIZED
        reason = refusal.message.encode("utf-8")[:_MAX_REASON_BYTES].decode("utf-8", "ignore")
        with suppress(RuntimeError):  # the client may have gone already
            await self.websocket.close(code=code, reason=reason)
