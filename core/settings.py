"""The one typed settings object, read from ``SALESINBOX_*`` environment variables.

Every knob of the server lives here, with its default, so that a fresh install runs with no
configuration at all: an SQLite file and a generated key under the data directory.
"""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import invalid_input

ENV_PREFIX = "SALESINBOX_"

#: ``SALESINBOX_*`` variables read by the test suite and ``scripts/run-tests``, not by the
#: server: they are not settings, and not typos either
TEST_SUITE_VARIABLES = frozenset({
    "SALESINBOX_TEST_DATABASE_URL",  # tests/database.py: run the db tests on PostgreSQL
    "SALESINBOX_REQUIRE_SERVERS",  # tests/servers/fixtures.py: fail, not skip, without Dovecot…
    "SALESINBOX_FAULT_SEED",  # tests/faults.py: replay one fault-injection run
    "SALESINBOX_CHROMIUM",  # tests/test_graphiql.py: the headless browser to use
})

log = logging.getLogger("salesinbox.settings")


def _default_data_dir() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "salesinbox"


@dataclass(frozen=True)
class Settings:
    """Server configuration. Build it with :meth:`from_env`; tests use :meth:`with_overrides`.

    Each field ``name`` is read from the environment variable ``SALESINBOX_<NAME>``.
    """

    #: where the SQLite database and the generated key file live
    data_dir: Path = field(default_factory=_default_data_dir)
    #: a Tortoise database URL; empty means ``sqlite://<data_dir>/salesinbox.sqlite3``
    database_url: str = ""
    #: base64 Fernet key for secrets at rest; empty means the key file under ``data_dir``
    secret_key: str = ""
    #: where the generated key is kept when ``secret_key`` is empty
    secret_key_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    #: the address browsers reach this server at (behind a proxy: the proxy's https:// URL,
    #: with its path prefix); OAuth providers send users back to ``<public_url>/oauth/callback``
    public_url: str = "http://127.0.0.1:8000"
    #: seconds allowed for each IMAP/SMTP network operation
    mail_timeout: float = 20.0
    #: an extra CA bundle (PEM) trusted for IMAP/SMTP besides the system store
    extra_ca_file: Path | None = None
    #: allow mail servers that resolve to loopback/private addresses (SSRF guard off)
    allow_private_hosts: bool = False
    #: allow connections with no TLS at all
    allow_plaintext: bool = False
    #: largest message users may send (bodies + attachments), in bytes
    max_outgoing_bytes: int = 25 * 1024 * 1024
    #: run syncs from this server process (with ``sync_runner``); false: this process never
    #: syncs and ``syncNow`` is refused (e.g. a read-only replica)
    sync_enabled: bool = True
    #: who runs syncs: ``in-process`` (the server itself: the embedded default) or ``workers``
    #: (``salesinbox worker`` processes on PostgreSQL; the server hands them sync requests)
    sync_runner: str = "in-process"
    #: ``salesinbox worker``: sync passes one worker process runs at once
    worker_sync_concurrency: int = 4
    #: ``salesinbox worker``: the most mailboxes one worker process watches with IDLE
    worker_max_watched: int = 1000
    #: ``salesinbox worker``: the port of its ``/healthz``, ``/readyz`` and ``/metrics`` (0: none)
    worker_port: int = 8001
    #: ``salesinbox worker``: seconds between its heartbeats; a worker silent for 4 of them is
    #: presumed dead and its jobs go to the others
    worker_heartbeat_seconds: float = 1.0
    #: ``salesinbox worker``: minutes one IDLE-watching job lasts before it hands the mailbox
    #: back to the queue (so that watching spreads over workers started later)
    idle_job_minutes: float = 20.0
    #: seconds between sync passes of an account (IDLE wakes it earlier for new mail)
    sync_poll_interval: float = 300.0
    #: seconds between liveness probes of an IDLE connection (ending IDLE and starting it
    #: again): a connection that died silently is noticed within this plus ``mail_timeout``
    idle_probe_interval: float = 120.0
    #: GraphQL limits: nesting depth, tokens per document, aliases per document
    max_query_depth: int = 12
    max_query_tokens: int = 2000
    max_query_aliases: int = 30
    #: GraphQL: the largest estimated cost of one operation (values returned; a body counts 1000)
    max_query_cost: int = 200_000
    #: GraphQL: queries one server process executes at once, the others waiting in arrival
    #: order (0: no limit); mutations and subscriptions are not counted
    max_concurrent_queries: int = 4
    #: GraphQL: the most characters of message bodies (bodyText, bodyHtml) one response returns
    max_response_body_chars: int = 8_000_000
    #: seconds an authenticated API token is remembered by a server process (0: not at all);
    #: revocations and user changes made through this process apply at once regardless
    token_cache_seconds: float = 5.0
    #: largest HTTP request body and WebSocket message, in bytes; larger bodies get 413 before
    #: they are read. A request with a valid token may be larger, see ``max_request_bytes_with_token``
    max_request_bytes: int = 4 * 1024 * 1024
    #: seconds between re-checks of an open WebSocket's token (revoked, expired, user
    #: deactivated); a revocation through this process closes it at once
    ws_auth_recheck_seconds: float = 5.0
    #: serve GraphiQL at GET /graphql
    graphiql: bool = True
    #: the level of uvicorn's log lines under ``salesinbox serve``: DEBUG, INFO, WARNING, ERROR
    log_level: str = "INFO"
    #: longest log line, in characters (at least 256); longer ones are cut with a marker
    log_line_limit: int = 8192
    #: ``text`` (one line per record) or ``json`` (one JSON object per line)
    log_format: str = "text"
    #: the bearer token Prometheus sends to ``GET /metrics`` (at least 16 characters); empty:
    #: ``/metrics`` is off (404)
    metrics_token: str = ""
    #: provider plugins not to load, comma-separated: entry-point names or module names
    #: (``salesinbox.plugins.gmail``). A blocked plugin is not even imported, so a broken
    #: package named here no longer stops the server
    disabled_plugins: tuple[str, ...] = ()
    #: log which plugin answered each hook call (logger ``salesinbox.plugins.trace``)
    trace_hooks: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``); bad values raise
        ``INVALID_INPUT`` naming the variable."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, str(f.type), raw)
        return cls(**values)  # type: ignore[arg-type]

    def with_overrides(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied."""
        return replace(self, **changes)

    @property
    def effective_database_url(self) -> str:
        """The database URL in use: the configured one or the SQLite file under data_dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite://{self.data_dir / 'salesinbox.sqlite3'}"

    @property
    def max_request_bytes_with_token(self) -> int:
        """The body limit for a request with a valid token: room for a message of
        ``max_outgoing_bytes`` in base64 (sendEmail attachments), and never below
        ``max_request_bytes``."""
        return max(self.max_request_bytes, self.max_outgoing_bytes * 4 // 3 + 1024 * 1024)

    @property
    def syncs_in_workers(self) -> bool:
        """Whether syncs run in ``salesinbox worker`` processes (PostgreSQL only)."""
        return self.sync_runner == "workers"

    @property
    def effective_secret_key_file(self) -> Path:
        """Where the generated secret key is stored when none is given in the environment."""
        return self.secret_key_file or self.data_dir / "secret.key"


# Numbers for which 0 means "off" rather than nonsense.
_ZERO_ALLOWED = frozenset({"token_cache_seconds", "worker_port", "max_concurrent_queries"})
# Text settings with a fixed set of values (lower case).
_CHOICES = {"log_format": ("text", "json"), "sync_runner": ("in-process", "workers")}
#: the shortest ``SALESINBOX_METRICS_TOKEN`` accepted: a short one could be guessed
MIN_METRICS_TOKEN_CHARS = 16


def unknown_variables(environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """The ``SALESINBOX_*`` variables of ``environ`` (default ``os.environ``) that name no
    setting (nor a test-suite variable), each with the closest setting's variable, if any."""
    environ = os.environ if environ is None else environ
    settings = {f.name.upper() for f in fields(Settings)}
    unknown: dict[str, str | None] = {}
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX) or variable in TEST_SUITE_VARIABLES:
            continue
        name = variable.removeprefix(ENV_PREFIX)
        if name in settings:
            continue
        # Compared without the shared prefix, which would make every name look close.
        closest = difflib.get_close_matches(name, sorted(settings), n=1, cutoff=0.6)
        unknown[variable] = ENV_PREFIX + closest[0] if closest else None
    return unknown


def warn_about_unknown_variables(environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Log a warning for each unknown ``SALESINBOX_*`` variable (a typo would otherwise be
    ignored silently), naming the closest setting; called once at start.

    :return: what :func:`unknown_variables` found.
    """
    unknown = unknown_variables(environ)
    for variable, closest in unknown.items():
        hint = f"did you mean {closest}?" if closest else "no setting has a similar name"
        log.warning("%s is not a SalesInbox setting and is ignored: %s (the settings are listed "
                    "in README.md, Configuration)", variable, hint)
    return unknown


def _parse(name: str, type_name: str, raw: str) -> object:
    variable = ENV_PREFIX + name.upper()
    if type_name.startswith("tuple"):  # comma-separated names
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    if "bool" in type_name:
        lowered = raw.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise invalid_input(f"{variable} must be true or false, not {raw!r}.", field=variable)
    if "int" in type_name or "float" in type_name:
        try:
            number = float(raw) if "float" in type_name else int(raw)
        except ValueError:
            raise invalid_input(f"{variable} must be a number, not {raw!r}.", field=variable) from None
        if name in _ZERO_ALLOWED:
            if number < 0:
                raise invalid_input(f"{variable} must be zero or more.", field=variable)
        elif number <= 0:
            raise invalid_input(f"{variable} must be greater than zero.", field=variable)
        return number
    if "Path" in type_name:
        return Path(raw).expanduser()
    if name in _CHOICES:
        value = raw.strip().lower()
        if value not in _CHOICES[name]:
            raise invalid_input(f"{variable} must be one of {', '.join(_CHOICES[name])}, not {raw!r}.",
                                field=variable)
        return value
    if name == "metrics_token" and len(raw.strip()) < MIN_METRICS_TOKEN_CHARS:
        raise invalid_input(f"{variable} must be at least {MIN_METRICS_TOKEN_CHARS} characters long "
                            "(e.g. the output of 'openssl rand -hex 32'), or empty to turn /metrics off.",
                            field=variable)
    return raw.strip() if name == "metrics_token" else raw
