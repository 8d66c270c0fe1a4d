"""Whether a process may be sent traffic (``/readyz``): the database answers and its schema
is the one this code ships (every migration applied).

Liveness (``/healthz``) is another question: a process whose database is behind is alive
and should not be restarted, only kept out of rotation until ``salesinbox migrate`` ran.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tortoise import connections

from ..db.connection import pending_migrations

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Readiness:
    """The answer of :func:`check_readiness`: ``ready``, else ``reason`` (no secrets in it)."""

    ready: bool
    database: str  # "ok", "unreachable"
    pending_migrations: tuple[str, ...] = ()
    reason: str | None = None


async def check_readiness() -> Readiness:
    """Check the database connection (``SELECT 1``) and that every shipped migration is
    recorded as applied. Never raises."""
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception as error:  # noqa: BLE001 - any failure means "not ready"; said, not raised
        log.warning("Readiness check: database unreachable (%s)", type(error).__name__)
        return Readiness(False, "unreachable", reason="The database does not answer.")
    try:
        pending = tuple(await pending_migrations())
    except Exception as error:  # noqa: BLE001 - same: an unreadable schema is not ready
        log.warning("Readiness check: cannot read the applied migrations (%s)", type(error).__name__)
        return Readiness(False, "ok", reason="The applied migrations cannot be read.")
    if pending:
        return Readiness(False, "ok", pending, reason=(
            f"{len(pending)} migration(s) not applied ({', '.join(pending)}): run 'salesinbox migrate'."))
    return Readiness(True, "ok")
