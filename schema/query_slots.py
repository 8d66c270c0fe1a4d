"""At most N queries of one server process executing at once, the others waiting in order.

Under load, an asyncio server interleaves every request in flight at each ``await``: with 20
clients each page waits behind slices of the 19 others, and the slowest requests wait behind
many. Admitting queries in arrival order, a few at a time, gives the same throughput (the
process is bound by its core either way) and the same mean latency, but a tighter tail: a
request runs nearly alone once admitted (bench/README.md, bench_api_scale). A few run at once
so that one's database round trip overlaps another's work.

Only queries wait: a mutation may wait seconds on a mail server (connecting an account,
sending), and subscriptions live long; neither takes a slot. Parsing and validation (cached)
happen before; the wait counts in the request's time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType


def query_slots(slots: int) -> type[SchemaExtension] | None:
    """An extension admitting at most ``slots`` queries at once, FIFO; ``None`` for 0 (no limit).

    One semaphore per schema (per process); since Python 3.10 it binds to the event loop on
    first use, not when made."""
    if slots <= 0:
        return None
    semaphore = asyncio.Semaphore(slots)

    class QuerySlots(SchemaExtension):
        async def on_execute(self) -> AsyncIterator[None]:
            if self.execution_context.operation_type is not OperationType.QUERY:
                yield
                return
            async with semaphore:
                yield

    return QuerySlots
