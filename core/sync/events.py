"""In-process publish/subscribe of mail events, feeding GraphQL subscriptions.

The sync engine publishes; each subscriber gets its own bounded queue. A subscriber that
falls behind loses the oldest events rather than slowing the sync (it can re-query).
Processes sharing a PostgreSQL database use its subclass
:class:`~salesinbox.core.scale_out.notify_relay.NotifyRelay`, which relays events over
LISTEN/NOTIFY behind the same two methods.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

QUEUE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class MailEvent:
    """Something changed in an account: ``kind`` is NEW_MESSAGES, FLAGS_CHANGED,
    MESSAGES_REMOVED or SYNC_STATE."""

    kind: str
    account_id: int
    user_id: int
    message_ids: tuple[int, ...] = ()
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


class EventBus:
    """Fan-out of :class:`MailEvent` to subscribers on the same event loop."""

    def __init__(self) -> None:
        self._queues: set[tuple[asyncio.Queue[MailEvent], Callable[[MailEvent], bool]]] = set()

    def publish(self, event: MailEvent) -> None:
        """Deliver ``event`` to every subscriber whose filter accepts it. Never blocks."""
        for queue, accepts in list(self._queues):
            if not accepts(event):
                continue
            if queue.full():
                queue.get_nowait()  # drop the oldest: the sync must never wait on a client
            queue.put_nowait(event)

    @asynccontextmanager
    async def subscribe(
        self, accepts: Callable[[MailEvent], bool]
    ) -> AsyncIterator[asyncio.Queue[MailEvent]]:
        """A queue receiving the events ``accepts`` lets through, for the block's duration."""
        entry: tuple[asyncio.Queue[MailEvent], Callable[[MailEvent], bool]] = (
            asyncio.Queue(QUEUE_SIZE),
            accepts,
        )
        self._queues.add(entry)
        try:
            yield entry[0]
        finally:
            self._queues.discard(entry)

    @property
    def subscriber_count(self) -> int:
        return len(self._queues)
