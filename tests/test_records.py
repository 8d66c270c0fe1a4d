"""Leads and contacts: validation, permissions, listing, CSV/list import and relinking."""

from __future__ import annotations

import pytest

from salesinbox.core.crm.records import (
    RecordInput,
    create_record,
    delete_record,
    get_record,
    get_record_values,
    import_records,
    list_records,
    parse_csv,
    update_record,
)
from salesinbox.core.db.models import CrmRecord, Organisation, RecordKind, User
from salesinbox.core.errors import ErrorCode, SalesInboxError


async def test_create_normalises_emails_and_defaults_owner(rep: User) -> None:
    record = await create_record(
        rep, RecordKind.LEAD, RecordInput(last_name=" Doe ", first_name="Jane", primary_email=" Jane@ACME.com ")
    )
    assert record.primary_email == "jane@acme.com"
    assert record.last_name == "Doe"
    assert record.owner_id == rep.id


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (RecordInput(last_name=""), "lastName"),
        (RecordInput(last_name="Doe", primary_email="not-an-address"), "primaryEmail"),
        (RecordInput(last_name="Doe", secondary_email="a@b.com"), "secondaryEmail"),
        (RecordInput(last_name="Doe", primary_email="a@b.com", secondary_email="A@B.com"), "secondaryEmail"),
    ],
)
async def test_bad_input_is_refused_and_nothing_saved(rep: User, data: RecordInput, field: str) -> None:
    with pytest.raises(SalesInboxError) as caught:
        await create_record(rep, RecordKind.CONTACT, data)
    assert caught.value.code == ErrorCode.INVALID_INPUT
    assert caught.value.field == field
    assert await CrmRecord.all().count() == 0


async def test_only_owner_or_admin_changes_a_record(rep: User, other_rep: User, admin: User) -> None:
    record = await create_record(rep, RecordKind.CONTACT, RecordInput(last_name="Doe"))
    with pytest.raises(SalesInboxError) as caught:
        await update_record(other_rep, record.id, RecordKind.CONTACT, RecordInput(last_name="X"))
    assert caught.value.code == ErrorCode.FORBIDDEN
    updated = await update_record(admin, record.id, RecordKind.CONTACT, RecordInput(last_name="Roe"))
    assert updated.last_name == "Roe"
    with pytest.raises(SalesInboxError):
        await delete_record(other_rep, record.id, RecordKind.CONTACT)
    await delete_record(rep, record.id, RecordKind.CONTACT)
    assert not await CrmRecord.exists(id=record.id)


async def test_standard_user_cannot_assign_another_owner(rep: User, other_rep: User, admin: User) -> None:
    with pytest.raises(SalesInboxError) as caught:
        await create_record(rep, RecordKind.LEAD, RecordInput(last_name="Doe", owner_id=other_rep.id))
    assert caught.value.code == ErrorCode.FORBIDDEN
    record = await create_record(admin, RecordKind.LEAD, RecordInput(last_name="Doe", owner_id=other_rep.id))
    assert record.owner_id == other_rep.id


async def test_kind_is_part_of_identity(rep: User) -> None:
    lead = await create_record(rep, RecordKind.LEAD, RecordInput(last_name="Doe"))
    with pytest.raises(SalesInboxError) as caught:
        await update_record(rep, lead.id, RecordKind.CONTACT, RecordInput(last_name="X"))
    assert caught.value.code == ErrorCode.NOT_FOUND


COLUMNS = ("id", "kind", "first_name", "last_name", "company", "primary_email", "secondary_email",
           "owner_id", "created_at", "updated_at")


async def test_record_values_are_the_models_and_follow_the_same_rule(rep: User) -> None:
    lead = await create_record(rep, RecordKind.LEAD, RecordInput(first_name="Jo", last_name="Doe", company="Acme",
                                                                 primary_email="jo@cust.test"))
    contact = await create_record(rep, RecordKind.CONTACT, RecordInput(last_name="Roe"))
    for record in (lead, contact):
        model = await get_record(rep, record.id, record.kind)
        values = await get_record_values(rep, record.id, record.kind, COLUMNS)
        assert values == {column: getattr(model, column) for column in COLUMNS}
        assert values["kind"] == record.kind and values["created_at"].tzinfo is not None
    # one organisation per deployment today; the rule still scopes by it
    elsewhere = await Organisation.create(name="Elsewhere")
    stranger = await User.create(organisation=elsewhere, email="boss@elsewhere.test", name="Other Org")
    for actor, record_id, kind in ((rep, lead.id, RecordKind.CONTACT), (stranger, lead.id, RecordKind.LEAD),
                                   (rep, contact.id + 1000, RecordKind.CONTACT)):
        with pytest.raises(SalesInboxError) as caught:
            await get_record_values(actor, record_id, kind, COLUMNS)
        assert caught.value.code == ErrorCode.NOT_FOUND


async def test_list_searches_and_pages(rep: User) -> None:
    for name in ["Alpha", "Bravo", "Charlie"]:
        await create_record(rep, RecordKind.LEAD, RecordInput(last_name=name, primary_email=f"{name}@x.com"))
    await create_record(rep, RecordKind.CONTACT, RecordInput(last_name="Delta"))
    rows, total = await list_records(rep, RecordKind.LEAD, limit=2)
    assert total == 3 and [r.last_name for r in rows] == ["Alpha", "Bravo"]
    rows, total = await list_records(rep, RecordKind.LEAD, search="CHARLIE@x")
    assert total == 1 and rows[0].last_name == "Charlie"
    with pytest.raises(SalesInboxError):
        await list_records(rep, RecordKind.LEAD, limit=0)


def test_parse_csv_accepts_common_headers() -> None:
    rows = parse_csv("First Name,Last Name,Email,Company\nJane,Doe,jane@acme.com,Acme\n,,,\n")
    assert rows == [RecordInput(first_name="Jane", last_name="Doe", primary_email="jane@acme.com", company="Acme")]


def test_parse_csv_refuses_unknown_column() -> None:
    with pytest.raises(SalesInboxError) as caught:
        parse_csv("last_name,phone\nDoe,123\n")
    assert "phone" in caught.value.message


async def test_import_is_all_or_nothing(rep: User) -> None:
    rows = [RecordInput(last_name="Ok", primary_email="ok@x.com"), RecordInput(last_name="Bad", primary_email="bad")]
    with pytest.raises(SalesInboxError) as caught:
        await import_records(rep, RecordKind.CONTACT, rows)
    assert "row 2" in caught.value.message
    assert await CrmRecord.all().count() == 0


async def test_import_skips_duplicates(rep: User) -> None:
    await create_record(rep, RecordKind.CONTACT, RecordInput(last_name="Old", primary_email="old@x.com"))
    rows = parse_csv("name,email\nA,a@x.com\nB,OLD@x.com\nC,a@x.com\nD,\n")
    result = await import_records(rep, RecordKind.CONTACT, rows)
    assert [r.last_name for r in result.created] == ["A", "D"]
    assert result.skipped_duplicate_rows == [2, 3]
    assert await CrmRecord.filter(kind=RecordKind.CONTACT).count() == 3
