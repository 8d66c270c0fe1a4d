"""Leads and contacts: queries, CRUD mutations and bulk import."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any

import strawberry

from salesinbox.core.crm import records
from salesinbox.core.db.models import CrmRecord, RecordKind
from salesinbox.core.errors import invalid_input
from salesinbox.core.sharing import views

from . import cost
from .context import Info
from .ids import parse_id, to_id
from .loaders import RECORD_FIELDS
from .messages import MessagePage, message_items
from .threads import ThreadPage, ThreadType, record_thread_page

RecordKindEnum = strawberry.enum(RecordKind, name="RecordKind", description="Lead or contact.")

#: the ``sharedBy`` argument of a record's mail lists
SharedBy = Annotated[strawberry.ID | None, strawberry.argument(
    description="Only the mail of this user (a user id; yours: only your own mail). For ALL the "
    "mail you may see, every user's, leave sharedBy out or pass null."
)]


@strawberry.interface(name="CrmRecord", description="A lead or a contact.")
class CrmRecordType:
    id: strawberry.ID
    kind: RecordKindEnum  # type: ignore[valid-type]
    first_name: str
    last_name: str
    full_name: str
    company: str
    primary_email: str | None
    secondary_email: str | None
    owner_id: strawberry.ID
    created_at: datetime
    updated_at: datetime

    @strawberry.field(description="Emails related list: linked mail you may see, newest first; "
                      "sharedBy limits it to one user's mail (left out: all users' mail).",
                      metadata=cost.paged(views.MAX_PAGE))
    async def emails(self, info: Info, first: int = 50, after: str | None = None,
                     shared_by: SharedBy = None) -> MessagePage:
        # This record came from a query scoped to the viewer's organisation: no second check.
        page = await views.related_page(
            info.context.user, int(self.id), shared_by=_optional_id(shared_by, "sharedBy"), first=first,
            after=after, record_verified=True,
        )
        return MessagePage(items=await message_items(info, page.items), next_cursor=page.next_cursor)

    @strawberry.field(description="The same mail grouped by conversation, most recently active first: the first "
                      f"`first` threads (1 to {views.MAX_PAGE}); all of them, page by page, with threadPage.",
                      metadata=cost.paged(views.MAX_PAGE))
    async def threads(self, info: Info, first: int = 20, shared_by: SharedBy = None) -> list[ThreadType]:
        return (await record_thread_page(info, int(self.id), _optional_id(shared_by, "sharedBy"), first, None)).items

    @strawberry.field(description="The same mail grouped by conversation, most recently active first, in pages of "
                      f"`first` threads (1 to {views.MAX_PAGE}) after the cursor `after`.",
                      metadata=cost.paged(views.MAX_PAGE))
    async def thread_page(self, info: Info, first: int = 20, after: str | None = None,
                          shared_by: SharedBy = None) -> ThreadPage:
        return await record_thread_page(info, int(self.id), _optional_id(shared_by, "sharedBy"), first, after)

    @strawberry.field(description="Whether you ticked Share Email on it (meaningful when your account is CUSTOM).")
    async def share_email(self, info: Info) -> bool:
        return await info.context.loaders.share_email.load(int(self.id))

    @staticmethod
    def from_model(row: CrmRecord) -> CrmRecordType:
        return CrmRecordType.from_values({f: getattr(row, f) for f in RECORD_FIELDS})

    @staticmethod
    def from_values(row: Mapping[str, Any]) -> CrmRecordType:
        """From a ``values()`` row with the columns of ``loaders.RECORD_FIELDS``."""
        cls = LeadType if row["kind"] == RecordKind.LEAD else ContactType
        first, last = row["first_name"], row["last_name"]
        return cls(
            id=to_id(row["id"]),
            kind=row["kind"],
            first_name=first,
            last_name=last,
            full_name=f"{first} {last}" if first and last else first or last,
            company=row["company"],
            primary_email=row["primary_email"],
            secondary_email=row["secondary_email"],
            owner_id=to_id(row["owner_id"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


@strawberry.type(name="Lead", description="A prospective customer.")
class LeadType(CrmRecordType):
    pass


@strawberry.type(name="Contact", description="A person at a customer.")
class ContactType(CrmRecordType):
    pass


@strawberry.type(description="A page of leads or contacts, and how many match in all.")
class RecordPage:
    items: list[CrmRecordType] = strawberry.field(metadata=cost.page_items())
    total: int


@strawberry.input(description="The fields of a lead or contact.")
class RecordInput:
    last_name: str
    first_name: str = ""
    company: str = ""
    primary_email: str | None = None
    secondary_email: str | None = None
    owner_id: strawberry.ID | None = strawberry.field(
        default=None, description="Default: you. Only admins may give records to others."
    )

    def to_core(self) -> records.RecordInput:
        return records.RecordInput(
            last_name=self.last_name,
            first_name=self.first_name,
            company=self.company,
            primary_email=self.primary_email,
            secondary_email=self.secondary_email,
            owner_id=parse_id(self.owner_id, field="ownerId") if self.owner_id else None,
        )


@strawberry.type(description="What a bulk import created and which rows it skipped.")
class ImportResult:
    created: list[CrmRecordType]
    created_count: int
    skipped_duplicate_rows: list[int] = strawberry.field(
        description="1-based row numbers whose primary email already belongs to a record."
    )


def _optional_id(value: strawberry.ID | None, field: str) -> int | None:
    return parse_id(value, field=field) if value is not None else None


async def _page(info: Info, kind: RecordKind, search: str | None, owner_id: strawberry.ID | None,
                limit: int, offset: int) -> RecordPage:
    owner = _optional_id(owner_id, "ownerId")
    rows, total = await records.list_records(
        info.context.user, kind, search=search, owner_id=owner, limit=limit, offset=offset
    )
    return RecordPage(items=[CrmRecordType.from_model(r) for r in rows], total=total)


async def _import(info: Info, kind: RecordKind, csv: str | None, rows: list[RecordInput] | None
                  ) -> ImportResult:
    if (csv is None) == (rows is None):
        raise invalid_input("Give either csv or rows, not both or neither.", field="csv")
    inputs = records.parse_csv(csv) if csv is not None else [r.to_core() for r in rows or []]
    result = await records.import_records(info.context.user, kind, inputs)
    return ImportResult(
        created=[CrmRecordType.from_model(r) for r in result.created],
        created_count=len(result.created),
        skipped_duplicate_rows=result.skipped_duplicate_rows,
    )


_SEARCH = "Matches names, company and emails, case-insensitively."
_RECORD_PAGE = cost.paged(records.MAX_LIST_LIMIT, argument="limit")


@strawberry.type
class RecordQueries:
    @strawberry.field(description="Leads by last name. " + _SEARCH, metadata=_RECORD_PAGE)
    async def leads(self, info: Info, search: str | None = None, owner_id: strawberry.ID | None = None,
                    limit: int = 50, offset: int = 0) -> RecordPage:
        return await _page(info, RecordKind.LEAD, search, owner_id, limit, offset)

    @strawberry.field(description="Contacts by last name. " + _SEARCH, metadata=_RECORD_PAGE)
    async def contacts(self, info: Info, search: str | None = None, owner_id: strawberry.ID | None = None,
                       limit: int = 50, offset: int = 0) -> RecordPage:
        return await _page(info, RecordKind.CONTACT, search, owner_id, limit, offset)

    @strawberry.field(description="One lead.")
    async def lead(self, info: Info, id: strawberry.ID) -> LeadType:
        row = await records.get_record_values(info.context.user, parse_id(id), RecordKind.LEAD, RECORD_FIELDS)
        return CrmRecordType.from_values(row)  # type: ignore[return-value]

    @strawberry.field(description="One contact.")
    async def contact(self, info: Info, id: strawberry.ID) -> ContactType:
        row = await records.get_record_values(info.context.user, parse_id(id), RecordKind.CONTACT, RECORD_FIELDS)
        return CrmRecordType.from_values(row)  # type: ignore[return-value]


@strawberry.type
class RecordMutations:
    @strawberry.mutation(description="Create a lead; its existing mail is linked at once.")
    async def create_lead(self, info: Info, input: RecordInput) -> LeadType:
        row = await records.create_record(info.context.user, RecordKind.LEAD, input.to_core())
        return CrmRecordType.from_model(row)  # type: ignore[return-value]

    @strawberry.mutation(description="Create a contact; its existing mail is linked at once.")
    async def create_contact(self, info: Info, input: RecordInput) -> ContactType:
        row = await records.create_record(info.context.user, RecordKind.CONTACT, input.to_core())
        return CrmRecordType.from_model(row)  # type: ignore[return-value]

    @strawberry.mutation(description="Replace a lead's fields (owner or admin).")
    async def update_lead(self, info: Info, id: strawberry.ID, input: RecordInput) -> LeadType:
        row = await records.update_record(info.context.user, parse_id(id), RecordKind.LEAD, input.to_core())
        return CrmRecordType.from_model(row)  # type: ignore[return-value]

    @strawberry.mutation(description="Replace a contact's fields (owner or admin).")
    async def update_contact(self, info: Info, id: strawberry.ID, input: RecordInput) -> ContactType:
        row = await records.update_record(info.context.user, parse_id(id), RecordKind.CONTACT, input.to_core())
        return CrmRecordType.from_model(row)  # type: ignore[return-value]

    @strawberry.mutation(description="Delete a lead (owner or admin). Its mail stays.")
    async def delete_lead(self, info: Info, id: strawberry.ID) -> strawberry.ID:
        await records.delete_record(info.context.user, parse_id(id), RecordKind.LEAD)
        return id

    @strawberry.mutation(description="Delete a contact (owner or admin). Its mail stays.")
    async def delete_contact(self, info: Info, id: strawberry.ID) -> strawberry.ID:
        await records.delete_record(info.context.user, parse_id(id), RecordKind.CONTACT)
        return id

    @strawberry.mutation(description="Import leads from CSV text (header row) or a list; all or nothing.")
    async def import_leads(self, info: Info, csv: str | None = None,
                           rows: list[RecordInput] | None = None) -> ImportResult:
        return await _import(info, RecordKind.LEAD, csv, rows)

    @strawberry.mutation(description="Import contacts from CSV text (header row) or a list; all or nothing.")
    async def import_contacts(self, info: Info, csv: str | None = None,
                              rows: list[RecordInput] | None = None) -> ImportResult:
        return await _import(info, RecordKind.CONTACT, csv, rows)
