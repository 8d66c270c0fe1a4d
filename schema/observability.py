"""``GET /metrics`` and ``GET /readyz``: what a monitoring system and a load balancer ask.

``/metrics`` answers the Prometheus text format (:func:`~salesinbox.core.observability.
metrics.exposition`), after reading the accounts per state and the sync lag from the
database. It is off unless ``SALESINBOX_METRICS_TOKEN`` is set (404), and then needs
``Authorization: Bearer <that token>`` (401 otherwise): operation names, error rates and
account counts are not for anyone who can reach the port, and a server behind a reverse
proxy cannot tell a local scraper from the proxy. API tokens are not accepted there: a
scraper's credential should open the metrics and nothing else.

``/readyz`` answers 200 when the database answers and every shipped migration is applied,
else 503 with the reason as JSON (:mod:`salesinbox.core.observability.readiness`);
``/healthz`` stays the liveness check.
"""

from __future__ import annotations

import hmac
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from salesinbox.core.errors import ErrorCode
from salesinbox.core.observability.database_gauges import refresh_database_gauges
from salesinbox.core.observability.metrics import exposition
from salesinbox.core.observability.readiness import check_readiness
from salesinbox.core.scale_out.queue_gauges import refresh_queue_gauges

from .http_requests import error_response

METRICS_PATH = "/metrics"
READY_PATH = "/readyz"
log = logging.getLogger("salesinbox.server")


def _bearer(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def metrics(request: Request) -> Response:
    """``GET /metrics``: see the module docstring."""
    expected = request.app.state.services.settings.metrics_token
    if not expected:
        return error_response(404, ErrorCode.NOT_FOUND,
                              "Metrics are off: set SALESINBOX_METRICS_TOKEN and scrape with that bearer token.")
    given = _bearer(request.headers.get("authorization"))
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        return error_response(401, ErrorCode.UNAUTHENTICATED,
                              "Scrape /metrics with 'Authorization: Bearer <SALESINBOX_METRICS_TOKEN>'.",
                              headers={"WWW-Authenticate": "Bearer"})
    try:
        await refresh_database_gauges()
        if request.app.state.services.settings.syncs_in_workers:
            await refresh_queue_gauges()
    except Exception as error:  # noqa: BLE001 - the other metrics still matter when the database is away
        log.warning("Metrics: cannot read the accounts or jobs from the database (%s)", type(error).__name__)
    body, content_type = exposition()
    return Response(body, media_type=content_type)


async def readyz(request: Request) -> JSONResponse:
    """``GET /readyz``: 200 ``{"status": "ready"}`` or 503 with ``reason``, no token needed."""
    readiness = await check_readiness()
    body: dict[str, object] = {"status": "ready" if readiness.ready else "not ready",
                               "database": readiness.database}
    if readiness.pending_migrations:
        body["pendingMigrations"] = list(readiness.pending_migrations)
    if readiness.reason:
        body["reason"] = readiness.reason
    return JSONResponse(body, status_code=200 if readiness.ready else 503)
