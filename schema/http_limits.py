"""Size limits at the ASGI layer, before anything reads or parses a request.

HTTP: a body over ``Settings.max_request_bytes`` gets 413 with a ``REQUEST_TOO_LARGE`` error,
as soon as its ``Content-Length`` or the bytes streamed so far (chunked encoding) pass the
limit, so no more than the limit is ever held in memory. A request whose ``Authorization``
holds a valid token may go up to ``Settings.max_request_bytes_with_token`` (sendEmail carries
attachments in base64); the token is looked up only when a body passes the first limit, so
an anonymous caller can never make the server read more than ``max_request_bytes``.

WebSocket: a message over ``max_request_bytes`` closes the connection with code 1009
(message too big). ``salesinbox serve`` also gives uvicorn that limit (``ws_max_size``), so
uvicorn refuses such a frame before assembling it; this check holds under any other server.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from salesinbox.core.crm.api_tokens import authenticate
from salesinbox.core.errors import ErrorCode, SalesInboxError

from .http_requests import error_response

MESSAGE_TOO_BIG = 1009  # RFC 6455


class _TooLarge(Exception):
    """Raised from ``receive`` through the app when the streamed body passes the limit."""


class _BodyAllowance:
    """How many body bytes one request may send: the anonymous limit, raised to the token
    limit once (and only if) a body needs it and the request's token is valid."""

    def __init__(self, headers: Headers, anonymous: int, with_token: int) -> None:
        self._authorization = headers.get("authorization")
        self.limit = anonymous
        self._with_token = with_token
        self._token_checked = False
        self._refused_size = 0

    async def allows(self, size: int) -> bool:
        """Whether a body of ``size`` bytes (so far) may go on; looks the token up at most once."""
        if size <= self.limit:
            return True
        if size <= self._with_token and not self._token_checked:
            self._token_checked = True
            try:
                await authenticate(self._authorization)
            except SalesInboxError:
                pass
            else:
                self.limit = self._with_token
                return True
        self._refused_size = size
        return False

    def refusal_message(self) -> str:
        """Why the last size :meth:`allows` refused is too much, and what to do."""
        if self._refused_size <= self._with_token:
            return (
                f"The request body is over {self.limit} bytes, the limit without a valid API token: "
                "send 'Authorization: Bearer <token>', or a smaller request."
            )
        return (
            f"The request body is over this server's limit of {self._with_token} bytes: "
            "send less (e.g. smaller attachments)."
        )


class RequestLimits:
    """ASGI middleware applying the limits described in this module's docstring."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_bytes_with_token: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_bytes_with_token = max(max_bytes, max_bytes_with_token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        allowance = _BodyAllowance(headers, self.max_bytes, self.max_bytes_with_token)
        declared = _content_length(headers)
        if declared is not None and not await allowance.allows(declared):
            await self._refuse(allowance, scope, receive, send)
            return
        received = 0
        response_started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > allowance.limit and not await allowance.allows(received):
                    raise _TooLarge
            return message

        async def watched_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except _TooLarge:
            if response_started:  # too late to answer: let the server drop the connection
                raise
            await self._refuse(allowance, scope, receive, send)

    @staticmethod
    async def _refuse(allowance: _BodyAllowance, scope: Scope, receive: Receive, send: Send) -> None:
        # "Connection: close": the rest of the body is never read, so the connection cannot be reused.
        response = error_response(
            413, ErrorCode.REQUEST_TOO_LARGE, allowance.refusal_message(), headers={"Connection": "close"}
        )
        await response(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        closed = False

        async def limited_receive() -> Message:
            nonlocal closed
            message = await receive()
            if message["type"] == "websocket.receive" and _ws_size(message) > self.max_bytes:
                closed = True
                await send({"type": "websocket.close", "code": MESSAGE_TOO_BIG,
                            "reason": f"Message over {self.max_bytes} bytes"})
                return {"type": "websocket.disconnect", "code": MESSAGE_TOO_BIG}
            return message

        async def guarded_send(message: Message) -> None:
            if not closed:  # once closed here, what the app still sends has nowhere to go
                await send(message)

        await self.app(scope, limited_receive, guarded_send)


def _content_length(headers: Headers) -> int | None:
    value = headers.get("content-length")
    if value is None or not value.isdigit():
        return None  # absent (chunked) or malformed (the server refuses those): count the stream
    return int(value)


def _ws_size(message: Message) -> int:
    if message.get("bytes") is not None:
        return len(message["bytes"])
    return len((message.get("text") or "").encode("utf-8"))
