"""The gauges read from the database when ``/metrics`` is scraped: accounts per sync state
and the sync lag.

Read at scrape time, not kept by the sync, because the database is the one place that knows
every account whichever process syncs it; a scrape costs two small queries.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tortoise.functions import Count, Min
from tortoise.queryset import QuerySet

from ..db.models import MailAccount, SyncState
from .metrics import ACCOUNTS_BY_STATE, SYNC_LAG_MAX


async def refresh_database_gauges(now: datetime | None = None) -> None:
    """Set :data:`~.metrics.ACCOUNTS_BY_STATE` (every state, 0 included) and
    :data:`~.metrics.SYNC_LAG_MAX` from the database.

    The lag of an account is the time since its last successful pass, or since it was
    connected when it never had one; accounts in ``NEEDS_REAUTH`` are left out (nothing
    syncs them until the user gives new credentials: the state gauge counts them). No
    account: a lag of 0.
    """
    now = now or datetime.now(UTC)
    rows = await MailAccount.annotate(n=Count("id")).group_by("sync_state").values_list("sync_state", "n")
    counts = {str(state): int(n) for state, n in rows}
    for state in SyncState:
        ACCOUNTS_BY_STATE.labels(state.value).set(counts.get(state.value, 0))
    followed = MailAccount.exclude(sync_state=SyncState.NEEDS_REAUTH)
    oldest_pass = await _minimum(followed.filter(last_synced_at__isnull=False), "last_synced_at")
    oldest_new = await _minimum(followed.filter(last_synced_at__isnull=True), "created_at")
    since = [moment for moment in (oldest_pass, oldest_new) if moment is not None]
    SYNC_LAG_MAX.set(max((now - min(since)).total_seconds(), 0.0) if since else 0.0)


async def _minimum(query: QuerySet[MailAccount], column: str) -> datetime | None:
    rows: list[object] = list(await query.annotate(m=Min(column)).values_list("m", flat=True))
    value = rows[0] if rows else None
    if isinstance(value, str):  # SQLite hands aggregates back as text
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
