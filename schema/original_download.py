"""``GET /messages/{id}/original``: a message's RFC 5322 bytes as ``message/rfc822``, for
"show original" and export (README, "Downloading the original message").

Authenticated like GraphQL (``Authorization: Bearer <token>``) and gated by the same sharing
policy: a message the caller may not see gets the very 404 an unknown id gets. Errors come as
one GraphQL-shaped error (``{"errors": [{"message", "extensions": {"code"}}]}``).
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from salesinbox.core.crm.api_tokens import Unauthenticated, authenticate
from salesinbox.core.errors import ErrorCode, SalesInboxError
from salesinbox.core.sharing.views import get_message
from salesinbox.core.sync.original_message import fetch_original

from .context import Services
from .http_requests import error_response
from .ids import parse_id

ORIGINAL_PATH = "/messages/{message_id}/original"
log = logging.getLogger("salesinbox.server")

#: HTTP status of each expected failure; other codes (a mail server that fails) are 502.
_STATUS = {
    ErrorCode.INVALID_INPUT: 400,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.CONFLICT: 409,
    ErrorCode.MESSAGE_NOT_ON_SERVER: 410,
    ErrorCode.TIMEOUT: 504,
}


def _error(error: SalesInboxError) -> JSONResponse:
    return error_response(_STATUS.get(error.code, 502), error.code, error.message)


async def original_message(request: Request) -> Response:
    """The original of one message the caller may see, fetched from its mail server."""
    services: Services = request.app.state.services
    try:
        viewer = await authenticate(request.headers.get("authorization"))
    except Unauthenticated as refusal:
        return error_response(401, refusal.code, refusal.message, headers={"WWW-Authenticate": "Bearer"})
    try:
        message_id = parse_id(request.path_params["message_id"], field="id", big=True)
        message = await get_message(viewer, message_id)
        raw = await fetch_original(message, secrets=services.secrets, policy=services.connect_policy,
                                   tokens=services.oauth_tokens)
    except SalesInboxError as error:
        return _error(error)
    return Response(raw, media_type="message/rfc822", headers={
        "Content-Disposition": f'attachment; filename="message-{message.id}.eml"',
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    })
