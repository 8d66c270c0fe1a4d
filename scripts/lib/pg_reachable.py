"""Exit 0 when a PostgreSQL server answers at the URL given as the only argument."""

import asyncio
import sys

import asyncpg


async def _probe(url: str) -> None:
    connection = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1), timeout=3)
    await connection.close()


try:
    asyncio.run(_probe(sys.argv[1]))
except Exception:  # noqa: BLE001 - any failure means "not reachable"
    sys.exit(1)
