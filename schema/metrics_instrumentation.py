"""The API's side of the metrics (:mod:`salesinbox.core.observability.metrics`): every HTTP
request by route, every GraphQL operation by name, every error answered by code.

Label values are bounded, so that no client can grow the number of time series:

- HTTP: the route's template (``/messages/{message_id}/original``), ``unmatched`` for any path no
  route serves; the method among the usual ones, else ``OTHER``;
- GraphQL: the operation's name when the caller is authenticated, the name is an operation
  of the document, looks like a GraphQL name of at most 64 characters, and is among the first
  :data:`MAX_OPERATION_NAMES` names this process saw; ``anonymous`` for an unnamed operation;
  ``unauthenticated`` for any operation refused for want of a valid token (their names are
  never read); ``other`` for anything else;
- error codes: the documented ones (:class:`~salesinbox.core.errors.ErrorCode` and
  ``GRAPHQL_VALIDATION_FAILED``), else ``OTHER``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator

from graphql.error import GraphQLError
from graphql.language import OperationDefinitionNode
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from salesinbox.core.errors import ErrorCode
from salesinbox.core.observability.metrics import (
    ERRORS,
    GRAPHQL_DURATION,
    GRAPHQL_OPERATIONS,
    HTTP_DURATION,
    HTTP_REQUESTS,
)

from .errors import VALIDATION_FAILED

#: how many distinct operation names one process labels; later ones count as ``other``
MAX_OPERATION_NAMES = 200
ANONYMOUS = "anonymous"
UNAUTHENTICATED = "unauthenticated"
OTHER_OPERATION = "other"
_OPERATION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_KNOWN_CODES = frozenset({code.value for code in ErrorCode} | {VALIDATION_FAILED})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_operation_names: set[str] = set()


def error_code_label(code: object) -> str:
    """``code`` if it is a documented error code, else ``OTHER``."""
    return code if isinstance(code, str) and code in _KNOWN_CODES else "OTHER"


def count_errors(errors: Iterable[GraphQLError]) -> None:
    """Count each error (already typed by :class:`~.errors.TypedErrors`) by its code."""
    for error in errors:
        ERRORS.labels(error_code_label((error.extensions or {}).get("code"))).inc()


def operation_label(name: str | None, *, authenticated: bool, declared: Iterable[str]) -> str:
    """The label of an operation called ``name`` (see the module docstring)."""
    if not authenticated:
        return UNAUTHENTICATED
    if not name:
        return ANONYMOUS
    if name not in declared or not _OPERATION_NAME.fullmatch(name):
        return OTHER_OPERATION
    if name not in _operation_names:
        if len(_operation_names) >= MAX_OPERATION_NAMES:
            return OTHER_OPERATION
        _operation_names.add(name)
    return name


class OperationMetrics(SchemaExtension):
    """Counts and times each operation, and counts the errors of its results by code.

    Listed before :class:`~.errors.TypedErrors`, so that what it reads after the operation
    (and after each streamed result) is already typed. Subscriptions are counted, not timed:
    their operation lasts as long as the subscription.
    """

    def __init__(self) -> None:
        self._streamed = False

    def on_operation(self) -> Iterator[None]:  # (not async: strawberry runs a plain generator faster)
        started = time.perf_counter()
        self._streamed = False
        yield
        seconds = time.perf_counter() - started
        context = self.execution_context
        try:
            kind = context.operation_type.value
        except Exception:  # noqa: BLE001 - no document (syntax error, refused): no type to tell
            kind = "unknown"
        document = context.graphql_document
        declared = {definition.name.value for definition in (document.definitions if document else ())
                    if isinstance(definition, OperationDefinitionNode) and definition.name is not None}
        viewer = getattr(context.context, "viewer", None)
        label = operation_label(context.operation_name, authenticated=viewer is not None, declared=declared)
        GRAPHQL_OPERATIONS.labels(label, kind).inc()
        if kind != OperationType.SUBSCRIPTION.value:
            GRAPHQL_DURATION.labels(label, kind).observe(seconds)
        if not self._streamed:
            errors = getattr(context.result, "errors", None) or context.pre_execution_errors or ()
            count_errors(errors)

    def on_stream_result(self, result: object) -> Iterator[None]:
        self._streamed = True
        yield
        count_errors(getattr(result, "errors", None) or ())


class HttpMetrics:
    """ASGI middleware counting and timing every HTTP request by route template, method and
    status (WebSocket connections are left to the GraphQL operations they carry)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # if the app fails before answering, the server answers 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            template = getattr(_route(scope), "path", None) or "unmatched"
            method = scope.get("method", "GET")
            method = method if method in _METHODS else "OTHER"
            HTTP_REQUESTS.labels(template, method, str(status)).inc()
            HTTP_DURATION.labels(template, method).observe(time.perf_counter() - started)


def _route(scope: Scope) -> BaseRoute | None:
    """The route that served ``scope``: the one Starlette's router noted, else (a request
    refused before routing, e.g. too large) the first route of the app that matches."""
    route = scope.get("route")
    if isinstance(route, BaseRoute):
        return route
    app = scope.get("app")
    for candidate in getattr(getattr(app, "router", None), "routes", ()):
        if candidate.matches(scope)[0] != Match.NONE:
            return candidate
    return None
