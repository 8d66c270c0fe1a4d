"""The Prometheus metrics of a SalesInbox process, and their exposition.

Every metric is defined once, here, on prometheus-client's default registry. With
``PROMETHEUS_MULTIPROC_DIR`` set (before the process starts: prometheus-client decides at
import), every process writes its values to files in that directory and :func:`exposition`
merges the files of all of them, so any process's ``/metrics`` shows the whole deployment
(several server processes on one machine, later sync workers beside the API). Without it, each process
shows its own values.

Labels are bounded: HTTP routes are the route templates, GraphQL operation names are
bounded by the caller (:mod:`salesinbox.schema.metrics_instrumentation`), error codes are
the documented ones, states and outcomes fixed sets; no label carries an account, a user or
an address.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

__all__ = [
    "ACCOUNTS_BY_STATE",
    "ERRORS",
    "GRAPHQL_DURATION",
    "GRAPHQL_OPERATIONS",
    "HTTP_DURATION",
    "HTTP_REQUESTS",
    "IDLE_CONNECTIONS",
    "JOBS",
    "RELAY_DROPPED",
    "RELAY_RECONNECTS",
    "SYNC_LAG_MAX",
    "SYNC_MESSAGES_STORED",
    "SYNC_PASSES",
    "SYNC_PASS_DURATION",
    "TOKEN_REFRESHES",
    "exposition",
    "forget_this_process",
    "multiprocess_directory",
]

MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Read once, at import, as prometheus-client itself decides how to store values.
_MULTIPROC_DIR = os.environ.get(MULTIPROC_VARIABLE) or None

# -- the API ---------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "salesinbox_http_requests", "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "salesinbox_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by route template and method.",
    ["route", "method"],
)
GRAPHQL_OPERATIONS = Counter(
    "salesinbox_graphql_operations",
    "GraphQL operations run (HTTP and WebSocket), by operation name and type.",
    ["operation", "type"],
)
GRAPHQL_DURATION = Histogram(
    "salesinbox_graphql_operation_duration_seconds",
    "Time to run a GraphQL query or mutation (subscriptions are not timed), by operation name.",
    ["operation", "type"],
)
ERRORS = Counter(
    "salesinbox_errors",
    "Errors answered to clients, by extensions.code (GraphQL results and HTTP refusals alike).",
    ["code"],
)

# -- sync ------------------------------------------------------------------------------------

SYNC_MESSAGES_STORED = Counter(
    "salesinbox_sync_messages_stored", "Messages the sync stored (rate() gives messages per second).",
)
SYNC_PASSES = Counter(
    "salesinbox_sync_passes",
    "Sync passes of an account, by outcome: complete, partial (a folder failed), needs_reauth, "
    "failed (retried with backoff), cancelled (shutdown).",
    ["outcome"],
)
SYNC_PASS_DURATION = Histogram(
    "salesinbox_sync_pass_duration_seconds", "Duration of one sync pass of one account.",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600),
)
IDLE_CONNECTIONS = Gauge(
    "salesinbox_idle_connections", "IMAP connections currently watching a mailbox with IDLE.",
    multiprocess_mode="livesum",
)
TOKEN_REFRESHES = Counter(
    "salesinbox_oauth_token_refreshes",
    "OAuth access-token refreshes at a provider, by outcome: refreshed, refused (the account "
    "needs reconnecting), failed (endpoint down or erring: retried).",
    ["outcome"],
)

# -- read from the database when scraped (database_gauges) -------------------------------------

ACCOUNTS_BY_STATE = Gauge(
    "salesinbox_mail_accounts", "Mail accounts by sync state, read from the database when scraped.",
    ["state"], multiprocess_mode="mostrecent",
)
SYNC_LAG_MAX = Gauge(
    "salesinbox_sync_lag_max_seconds",
    "Seconds since the last successful pass of the account that waited longest (accounts "
    "waiting for new credentials left out; never synced: since connected), read when scraped.",
    multiprocess_mode="mostrecent",
)

JOBS = Gauge(
    "salesinbox_jobs",
    "Jobs of the sync workers' queue (SALESINBOX_SYNC_RUNNER=workers) by queue (sync, watch) "
    "and state: todo (waiting, due or not), doing (running); read from the database when scraped.",
    ["queue", "state"], multiprocess_mode="mostrecent",
)

# -- across processes (core/scale_out/notify_relay.py) -------------------------------------------

RELAY_DROPPED = Counter(
    "salesinbox_relay_notifications_dropped",
    "Mail events and token changes not sent to the other processes, by channel (mail_events, "
    "token_changes) and reason: database_unavailable, queue_full, stopped.",
    ["channel", "reason"],
)
RELAY_RECONNECTS = Counter(
    "salesinbox_relay_reconnects",
    "Times the LISTEN connection of the cross-process relay came back after an outage.",
)


def multiprocess_directory() -> str | None:
    """The directory of multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` when this module was
    imported), or ``None`` when each process counts alone."""
    return _MULTIPROC_DIR


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus' text format, and its content type: this process's (the
    default registry, with prometheus-client's process and Python metrics) or, in
    multiprocess mode, every process's that wrote to the directory."""
    if multiprocess_directory() is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


def forget_this_process() -> None:
    """In multiprocess mode, drop this process's live gauges (IDLE connections) from the
    totals; called when a process stops. Its counters stay, as Prometheus expects."""
    directory = multiprocess_directory()
    if directory is not None:
        multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]
