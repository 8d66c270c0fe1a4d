"""Leads and contacts: create, update, delete, list and bulk import (list input or CSV text).

Every user of the organisation may read records; the owner or an admin may change them.
Changing a record's emails relinks its mail at once.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from ..address_normalisation import normalise_optional_email
from ..db.models import CrmRecord, Profile, RecordKind, User
from ..db.orm_values import column_values
from ..db.raw_rows import decode, decoders, numbered
from ..errors import ErrorCode, SalesInboxError, invalid_input, not_found
from .linking import relink_record

MAX_IMPORT_ROWS = 10_000
MAX_LIST_LIMIT = 200
MAX_SEARCH_CHARS = 320  # the longest searched column: an email address
_MAX_REPORTED_ERRORS = 20


@dataclass(frozen=True)
class RecordInput:
    """The editable fields of a lead or contact, as given by a client (not yet validated)."""

    last_name: str
    first_name: str = ""
    company: str = ""
    primary_email: str | None = None
    secondary_email: str | None = None
    owner_id: int | None = None


@dataclass
class ImportResult:
    """What a bulk import did: created records and the rows skipped as duplicates."""

    created: list[CrmRecord] = field(default_factory=list)
    skipped_duplicate_rows: list[int] = field(default_factory=list)


def _text(value: str | None, label: str, *, required: bool = False, limit: int = 200) -> str:
    cleaned = " ".join((value or "").split())
    if required and not cleaned:
        raise invalid_input(f"{label} is required.", field=label)
    if len(cleaned) > limit:
        raise invalid_input(f"{label} is longer than {limit} characters.", field=label)
    return cleaned


def _validated_fields(data: RecordInput) -> dict[str, Any]:
    primary = normalise_optional_email(data.primary_email, field="primaryEmail")
    secondary = normalise_optional_email(data.secondary_email, field="secondaryEmail")
    if secondary and not primary:
        raise invalid_input(
            "A secondary email needs a primary email: fill in the primary one first.",
            field="secondaryEmail",
        )
    if secondary and secondary == primary:
        raise invalid_input(
            "The secondary email is the same as the primary one: leave it empty.",
            field="secondaryEmail",
        )
    return {
        "last_name": _text(data.last_name, "lastName", required=True),
        "first_name": _text(data.first_name, "firstName"),
        "company": _text(data.company, "company"),
        "primary_email": primary,
        "secondary_email": secondary,
    }


async def _resolve_owner(actor: User, owner_id: int | None) -> User:
    if owner_id is None or owner_id == actor.id:
        return actor
    if actor.profile != Profile.ADMIN:
        raise SalesInboxError(
            ErrorCode.FORBIDDEN, "Only an admin can give a record to another owner.", field="ownerId"
        )
    owner = await User.get_or_none(id=owner_id, organisation_id=actor.organisation_id)
    if owner is None:
        raise invalid_input(f"There is no user with id {owner_id}.", field="ownerId")
    return owner


def _check_can_change(actor: User, record: CrmRecord) -> None:
    if record.owner_id != actor.id and actor.profile != Profile.ADMIN:
        raise SalesInboxError(
            ErrorCode.FORBIDDEN, "Only the record's owner or an admin can change it."
        )


async def create_record(actor: User, kind: RecordKind, data: RecordInput) -> CrmRecord:
    """Create a lead or contact owned by ``data.owner_id`` (default: the actor) and link its mail."""
    values = _validated_fields(data)
    owner = await _resolve_owner(actor, data.owner_id)
    async with in_transaction():
        record = await CrmRecord.create(
            organisation_id=actor.organisation_id, kind=kind, owner=owner, **values
        )
        await relink_record(record)
    return record


async def get_record(actor: User, record_id: int, kind: RecordKind | None = None) -> CrmRecord:
    """One record of the actor's organisation (of ``kind`` when given), or ``NOT_FOUND``."""
    query = CrmRecord.filter(id=record_id, organisation_id=actor.organisation_id)
    if kind is not None:
        query = query.filter(kind=kind)
    record = await query.first()
    if record is None:
        raise not_found(kind.lower() if kind else "lead or contact")
    return record


async def get_record_values(
    actor: User, record_id: int, kind: RecordKind, columns: tuple[str, ...]
) -> dict[str, Any]:
    """:func:`get_record`'s record as ``{column: value}`` (the ORM's Python values) of
    ``columns``, or ``NOT_FOUND``: the same rule, one statement kept per shape instead of a
    query built per call (the Emails related list starts with it)."""
    client = CrmRecord._meta.db
    dialect = client.capabilities.dialect
    _, rows = await client.execute_query(_record_sql(dialect, columns), [record_id, actor.organisation_id, kind.value])
    if not rows:
        raise not_found(kind.lower())
    return {column: decode(value, decoder) for column, value, decoder
            in zip(columns, tuple(rows[0]), decoders(CrmRecord, columns, dialect), strict=True)}


@cache
def _record_sql(dialect: str, columns: tuple[str, ...]) -> str:
    return numbered(f'SELECT {", ".join(columns)} FROM crm_record WHERE id = {{}} AND organisation_id = {{}} '
                    "AND kind = {}", dialect)


async def update_record(
    actor: User, record_id: int, kind: RecordKind, data: RecordInput
) -> CrmRecord:
    """Replace a record's editable fields; relinks its mail when its emails changed."""
    record = await get_record(actor, record_id, kind)
    _check_can_change(actor, record)
    values = _validated_fields(data)
    owner = await _resolve_owner(actor, data.owner_id) if data.owner_id else None
    emails_changed = (values["primary_email"], values["secondary_email"]) != (
        record.primary_email,
        record.secondary_email,
    )
    async with in_transaction():
        record.update_from_dict(values)
        if owner is not None:
            record.owner = owner
        await record.save()
        if emails_changed:
            await relink_record(record)
    return record


async def delete_record(actor: User, record_id: int, kind: RecordKind) -> None:
    """Delete a record with its links and Share Email flags (the mail itself stays)."""
    record = await get_record(actor, record_id, kind)
    _check_can_change(actor, record)
    await record.delete()


async def list_records(
    actor: User,
    kind: RecordKind,
    *,
    search: str | None = None,
    owner_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[CrmRecord], int]:
    """A page of records of ``kind`` by last name, and the total matching count.

    ``search`` matches names, company and emails, case-insensitively.
    """
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise invalid_input(f"limit must be between 1 and {MAX_LIST_LIMIT}.", field="limit")
    if offset < 0:
        raise invalid_input("offset cannot be negative.", field="offset")
    query = CrmRecord.filter(organisation_id=actor.organisation_id, kind=kind)
    if owner_id is not None:
        query = query.filter(owner_id=owner_id)
    if search and search.strip():
        term = search.strip()
        # Nothing longer can match, and SQLite refuses LIKE patterns over 50,000 bytes.
        if len(term) > MAX_SEARCH_CHARS:
            raise invalid_input(
                f"search is longer than {MAX_SEARCH_CHARS} characters, the longest field it looks in: shorten it.",
                field="search",
            )
        query = query.filter(
            Q(first_name__icontains=term)
            | Q(last_name__icontains=term)
            | Q(company__icontains=term)
            | Q(primary_email__icontains=term.lower())
            | Q(secondary_email__icontains=term.lower())
        )
    total = await query.count()
    rows = await query.order_by("last_name", "first_name", "id").offset(offset).limit(limit)
    return rows, total


_CSV_COLUMNS = {
    "last_name": {"last_name", "lastname", "last name", "name"},
    "first_name": {"first_name", "firstname", "first name"},
    "company": {"company", "company name", "account"},
    "primary_email": {"primary_email", "primaryemail", "email", "primary email"},
    "secondary_email": {"secondary_email", "secondaryemail", "secondary email"},
}


def parse_csv(text: str) -> list[RecordInput]:
    """Parse CSV text with a header row into record inputs.

    Recognised headers (any case): last_name/name, first_name, company, primary_email/email,
    secondary_email. ``last_name`` is required; unknown or repeated columns are an error so
    that a typo does not silently drop data, and so is a row with more filled cells than the
    header has columns. A shorter row leaves its last columns empty, as spreadsheets write them.
    Anything the CSV reader cannot read (a cell over its 131,072-character limit, usually an
    unclosed quote) is ``INVALID_INPUT`` naming the line.
    """
    reader = csv.reader(io.StringIO(text.strip()))
    try:
        return _csv_rows(reader)
    except csv.Error as error:
        raise invalid_input(
            f"The CSV could not be read at line {reader.line_num}: {error}. "
            "Check that every quote that opens a cell closes it.",
            field="csv",
        ) from None


def _csv_rows(reader: Any) -> list[RecordInput]:
    header = next(reader, None)
    if not header:
        raise invalid_input("The CSV is empty: the first line must name the columns.", field="csv")
    columns: list[str] = []
    for raw in header:
        name = raw.strip().lower()
        match = next((key for key, aliases in _CSV_COLUMNS.items() if name in aliases), None)
        if match is None:
            known = ", ".join(_CSV_COLUMNS)
            shown = repr(raw) if len(raw) <= 40 else repr(raw[:40]) + "…"
            raise invalid_input(f"Unknown CSV column {shown}: use {known}.", field="csv")
        if match in columns:
            raise invalid_input(f"The CSV names the {match} column twice: keep one.", field="csv")
        columns.append(match)
    if "last_name" not in columns:
        raise invalid_input("The CSV needs a last_name (or name) column.", field="csv")
    rows = []
    for line in reader:
        cells = [cell.strip() for cell in line]
        if not any(cells):
            continue
        if any(cells[len(columns):]):
            raise invalid_input(
                f"Line {reader.line_num} has more cells than the header has columns ({len(columns)}): "
                "quote cells that contain commas.",
                field="csv",
            )
        cells += [""] * (len(columns) - len(cells))
        rows.append(RecordInput(**dict(zip(columns, cells, strict=False))))
    return rows


async def import_records(actor: User, kind: RecordKind, rows: list[RecordInput]) -> ImportResult:
    """Create many records at once: all or nothing.

    Every row is validated first; any invalid row fails the whole import with an
    ``INVALID_INPUT`` that lists the faulty rows (1-based). Rows whose primary email is already
    used by a record of the same kind (or by an earlier row) are skipped and reported.
    """
    if not rows:
        raise invalid_input("Nothing to import: give at least one row.", field="rows")
    if len(rows) > MAX_IMPORT_ROWS:
        raise invalid_input(
            f"At most {MAX_IMPORT_ROWS} rows per import: split the file.", field="rows"
        )
    prepared: list[tuple[int, dict[str, Any], User]] = []
    errors: list[str] = []
    for number, row in enumerate(rows, start=1):
        try:
            prepared.append((number, _validated_fields(row), await _resolve_owner(actor, row.owner_id)))
        except SalesInboxError as error:
            errors.append(f"row {number}: {error.message}")
    if errors:
        shown = "; ".join(errors[:_MAX_REPORTED_ERRORS])
        more = f" (and {len(errors) - _MAX_REPORTED_ERRORS} more)" if len(errors) > _MAX_REPORTED_ERRORS else ""
        raise invalid_input(f"Nothing was imported. Fix these rows: {shown}{more}.", field="rows")

    existing = set(
        await column_values(
            CrmRecord.filter(organisation_id=actor.organisation_id, kind=kind, primary_email__not_isnull=True),
            "primary_email",
        )
    )
    result = ImportResult()
    async with in_transaction():
        for number, values, owner in prepared:
            email = values["primary_email"]
            if email is not None and email in existing:
                result.skipped_duplicate_rows.append(number)
                continue
            if email is not None:
                existing.add(email)
            record = await CrmRecord.create(
                organisation_id=actor.organisation_id, kind=kind, owner=owner, **values
            )
            await relink_record(record)
            result.created.append(record)
    return result
