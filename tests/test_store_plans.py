"""PostgreSQL: the sync's store transactions plan each statement for its own values."""

from __future__ import annotations

from tortoise import connections
from tortoise.transactions import in_transaction

from salesinbox.core.settings import Settings
from salesinbox.core.sync.store import plan_for_values


async def test_plan_for_values_applies_to_the_transaction_only(db: Settings) -> None:
    async with in_transaction() as connection:
        await plan_for_values(connection)  # a no-op on SQLite
        if not db.effective_database_url.startswith("postgres"):
            return
        inside = await connection.execute_query_dict("SHOW plan_cache_mode")
    outside = await connections.get("default").execute_query_dict("SHOW plan_cache_mode")
    assert inside == [{"plan_cache_mode": "force_custom_plan"}]
    assert outside == [{"plan_cache_mode": "auto"}]
