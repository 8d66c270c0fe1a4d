"""The SalesInbox view, one message, and why a message is visible or not."""

from __future__ import annotations

from enum import Enum

import strawberry

from salesinbox.core.sharing import views
from salesinbox.core.sharing.explanations import explain

from . import cost
from .context import Info
from .ids import parse_id
from .messages import DirectionEnum, MessagePage, MessageType, message_items


@strawberry.enum(description="Mail linked to leads, to contacts, or to no record.")
class LinkedFilter(Enum):
    LEADS = "LEADS"
    CONTACTS = "CONTACTS"
    NONE = "NONE"


@strawberry.input(description="SalesInbox filters; omitted means any.")
class InboxFilterInput:
    folder: str | None = None
    direction: DirectionEnum | None = None  # type: ignore[valid-type]
    seen: bool | None = None
    linked: LinkedFilter | None = None
    search: str | None = strawberry.field(default=None, description="In subject, sender name and address.")

    def to_core(self) -> views.InboxFilter:
        return views.InboxFilter(
            folder=self.folder, direction=self.direction, seen=self.seen,
            linked=self.linked.value if self.linked is not None else None, search=self.search,
        )


@strawberry.type(description="Whether a user may see a message and why (never its content). A message the "
                  "asker may not know of gets the same answer as an id that does not exist: `not_found`.")
class Visibility:
    visible: bool
    code: str = strawberry.field(description="Stable, for programs: owner, shared_public, shared_custom, not_found, "
                                 "hidden_private, hidden_unlinked, hidden_company_domain, hidden_org_excluded_domain, "
                                 "hidden_account_excluded_domain, hidden_not_shared.")
    reason: str = strawberry.field(description="For people; names a listed domain only to the owner and admins.")


@strawberry.type
class ViewQueries:
    @strawberry.field(description="Your own mail, newest first, with filters and cursor pagination.",
                      metadata=cost.paged(views.MAX_PAGE))
    async def sales_inbox(self, info: Info, filter: InboxFilterInput | None = None, first: int = 50,
                          after: str | None = None) -> MessagePage:
        filters = filter.to_core() if filter else views.InboxFilter()
        page = await views.inbox_page(info.context.user, filters, first=first, after=after)
        return MessagePage(items=await message_items(info, page.items), next_cursor=page.next_cursor)

    @strawberry.field(description="One message you may see, with bodies and attachments.")
    async def message(self, info: Info, id: strawberry.ID) -> MessageType:
        return MessageType.from_model(await views.get_message(info.context.user, parse_id(id, big=True)))

    @strawberry.field(description="Why you (or, for the message's owner and admins, the user `viewerId`) may or may "
                      "not see a message. Reasons for hidden mail go only to its owner and to admins of the owner's "
                      "organisation; anyone else gets `not_found` for it, as for an id that does not exist.")
    async def explain_visibility(self, info: Info, message_id: strawberry.ID,
                                 viewer_id: strawberry.ID | None = None) -> Visibility:
        viewer = parse_id(viewer_id, field="viewerId") if viewer_id is not None else None
        result = await explain(info.context.user, parse_id(message_id, field="messageId", big=True), viewer=viewer)
        return Visibility(visible=result.visible, code=result.code, reason=result.reason)
