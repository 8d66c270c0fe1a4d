"""Database writes that a cancellation cannot cut in half.

A task is cancelled wherever it happens to await: a stopping scheduler, a WebSocket operation
ended by its client, a timeout. Inside a write that is the worst place: on PostgreSQL,
asyncpg's ``executemany`` cancelled mid-stream leaves its connection inside an open
transaction, the server waiting for the rest of the rows (``ClientRead``), and the task that
owned it stuck in the rollback (found by the fault injection stopping the scheduler). On
SQLite, see :mod:`.sqlite_transactions`.

:func:`uninterrupted` makes a write finish first: it runs in its own task; a cancelled caller
waits for it to commit or roll back (a batch takes milliseconds), then the cancellation goes
on. Only a second cancellation leaves the write to finish on its own.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def uninterrupted(write: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Decorate an ``async def`` database write so that, once started, it runs to its end
    even if its caller is cancelled; the caller then sees the cancellation, not the result."""

    @functools.wraps(write)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        task = asyncio.ensure_future(write(*args, **kwargs))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # retrieved: the caller is told of the cancellation instead
            raise

    return run
