"""What a GraphQL request over HTTP must look like, checked before anything runs it.

A POST with ``Content-Type: application/json`` and, as body, one JSON object (UTF-8)::

    {"query": "<document>", "variables": {...} | null, "operationName": "<name>" | null,
     "extensions": {...} | null}

Anything else (another content type, bytes that are not UTF-8 or not JSON, JSON nested past
the parser's recursion limit, a number, ``null``, a batch array, a field of the wrong type) is
refused with HTTP 400 and a GraphQL-shaped error of code ``BAD_REQUEST`` naming the fix:
never a 500 nor plain text. :func:`error_response` gives every such refusal its shape.
"""

from __future__ import annotations

import json

from cross_web import HTTPException  # strawberry's own, caught by the view
from starlette.responses import JSONResponse
from strawberry.http import GraphQLRequestData
from strawberry.http.parse_content_type import parse_content_type

from salesinbox.core.errors import ErrorCode
from salesinbox.core.observability.metrics import ERRORS

EXAMPLE = '{"query": "{ me { id } }"}'


def bad_request(message: str) -> HTTPException:
    """A 400 refusal that the view turns into a ``BAD_REQUEST`` error response."""
    return HTTPException(400, message)


def error_response(status: int, code: ErrorCode, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An HTTP response carrying one GraphQL-shaped error: ``{"errors": [{message, extensions: {code}}]}``
    (counted in ``salesinbox_errors_total`` by its code)."""
    ERRORS.labels(code.value).inc()
    body = {"errors": [{"message": message, "extensions": {"code": code.value}}]}
    return JSONResponse(body, status_code=status, headers=headers)


def refusal_response(error: HTTPException) -> JSONResponse:
    """The response for an ``HTTPException`` raised by strawberry or by this module."""
    code = ErrorCode.NOT_FOUND if error.status_code == 404 else ErrorCode.BAD_REQUEST
    return error_response(error.status_code, code, error.reason)


def check_content_type(content_type: str | None) -> None:
    """Refuse a POST whose body is not declared as JSON."""
    media_type, _ = parse_content_type(content_type or "")
    if media_type != "application/json":
        raise bad_request(
            f"Send the operation as JSON with the header 'Content-Type: application/json' "
            f"(got {media_type or 'none'!r}), e.g. {EXAMPLE}."
        )


def decode_body(body: bytes) -> object:
    """The JSON value of a request body; raises a 400 for anything that does not decode."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("The request body is not valid UTF-8: send JSON encoded as UTF-8.") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise bad_request("The request body is JSON nested too deeply: send a flat operation object.") from None
    except ValueError as error:  # JSONDecodeError, and integers over Python's digit limit
        raise bad_request(f"The request body is not valid JSON ({error}): send e.g. {EXAMPLE}.") from None


def loads(data: str | bytes) -> object:
    """``json.loads`` for strawberry's other JSON (WebSocket messages, GET parameters): input
    that is not UTF-8 or nested too deeply raises ``JSONDecodeError`` like any bad JSON, so
    strawberry refuses it (WebSocket close 4400, HTTP 400) instead of failing with a 500."""
    try:
        return json.loads(data)
    except (RecursionError, UnicodeDecodeError) as error:
        raise json.JSONDecodeError(f"not decodable ({type(error).__name__})", "", 0) from None


def request_data(data: object) -> GraphQLRequestData:
    """Check the shape of a decoded body and return the operation it asks for."""
    if isinstance(data, list):
        raise bad_request("Batched operations (a JSON array) are not supported: send one operation per request.")
    if not isinstance(data, dict):
        raise bad_request(f"The request body must be a JSON object such as {EXAMPLE}.")
    query = data.get("query")
    if not isinstance(query, str) or not query.strip():
        raise bad_request(f"'query' must be a string holding the GraphQL document, e.g. {EXAMPLE}.")
    variables = data.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise bad_request("'variables' must be a JSON object (or null), e.g. {\"id\": \"42\"}.")
    operation_name = data.get("operationName")
    if operation_name is not None and not isinstance(operation_name, str):
        raise bad_request("'operationName' must be a string naming an operation of the query (or null).")
    extensions = data.get("extensions")
    if extensions is not None and not isinstance(extensions, dict):
        raise bad_request("'extensions' must be a JSON object (or null).")
    return GraphQLRequestData(
        query=query, variables=variables, operation_name=operation_name, extensions=extensions
    )
