"""Threads of a lead or contact as the API shows them: pages of threads, pages of their messages."""

from __future__ import annotations

from datetime import datetime

import strawberry

from salesinbox.core.sharing import threads
from salesinbox.core.sharing.views import MAX_PAGE, Page, check_page_size, decode_cursor

from . import cost
from .context import Info
from .messages import MessagePage, MessageType

_MESSAGES = f"The thread's messages you may see, oldest first: `first` of them (1 to {MAX_PAGE})"


@strawberry.type(name="Thread", description="One conversation of a lead or contact: its mail you may see.")
class ThreadType:
    key: str
    subject: str = strawberry.field(description="The subject of its oldest message.")
    message_count: int = strawberry.field(description="How many messages it has (messages come in pages).")
    latest_date: datetime | None
    ref: strawberry.Private[threads.ThreadRef]

    @classmethod
    def from_core(cls, thread: threads.Thread) -> ThreadType:
        return cls(key=thread.ref.key, subject=thread.subject, message_count=thread.ref.message_count,
                   latest_date=thread.latest_date, ref=thread.ref)

    @strawberry.field(description=_MESSAGES + "; the rest with messagePage.", metadata=cost.paged(MAX_PAGE))
    async def messages(self, info: Info, first: int = 50) -> list[MessageType]:
        return [MessageType.from_model(m) for m in (await self._page(info, first, None)).items]

    @strawberry.field(description=_MESSAGES + ", after the cursor `after`, with the cursor of the next page.",
                      metadata=cost.paged(MAX_PAGE))
    async def message_page(self, info: Info, first: int = 50, after: str | None = None) -> MessagePage:
        page = await self._page(info, first, after)
        return MessagePage(items=[MessageType.from_model(m) for m in page.items], next_cursor=page.next_cursor)

    async def _page(self, info: Info, first: int, after: str | None) -> Page:
        check_page_size(first)  # refused here, not in the loader shared by the other threads
        if after:
            decode_cursor(after)
        # Messages are built without their relations: folder, owner and linkedRecords then
        # come from the request's loaders, one query each for all the threads of the page.
        return await info.context.loaders.thread_messages.load((self.ref, first, after))


@strawberry.type(description="A page of threads, most recently active first.")
class ThreadPage:
    items: list[ThreadType] = strawberry.field(metadata=cost.page_items())
    next_cursor: str | None = strawberry.field(description="Pass as `after` for the next page; null at the end.")


async def record_thread_page(
    info: Info, record_id: int, shared_by: int | None, first: int, after: str | None
) -> ThreadPage:
    """A page of the threads of a record the caller loaded from the viewer's organisation."""
    page = await threads.thread_page(info.context.user, record_id, shared_by=shared_by, first=first, after=after,
                                     record_verified=True)
    return ThreadPage(items=[ThreadType.from_core(t) for t in page.items], next_cursor=page.next_cursor)
