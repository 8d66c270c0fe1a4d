"""Leads and contacts through GraphQL: queries, CRUD, import."""

from __future__ import annotations

from salesinbox.core.db.models import CrmRecord, User

from .conftest import GraphQLClient

FIELDS = "id kind firstName lastName fullName company primaryEmail secondaryEmail ownerId createdAt updatedAt"


async def test_lead_lifecycle(api: GraphQLClient, rep: User, rep_token: str) -> None:
    created = await api.ok(
        f"mutation($i: RecordInput!) {{ createLead(input: $i) {{ {FIELDS} }} }}",
        {"i": {"firstName": "Jane", "lastName": "Doe", "company": "Globex", "primaryEmail": "JANE@globex.com",
               "secondaryEmail": "jane.doe@gmail.com"}},
        token=rep_token,
    )
    lead = created["createLead"]
    assert lead["kind"] == "LEAD" and lead["fullName"] == "Jane Doe" and lead["primaryEmail"] == "jane@globex.com"
    assert lead["ownerId"] == str(rep.id)

    fetched = await api.ok(
        "query($id: ID!) { lead(id: $id) { ... on Lead { lastName } } }", {"id": lead["id"]}, token=rep_token
    )
    assert fetched["lead"]["lastName"] == "Doe"
    # A lead is not a contact.
    error = await api.error("query($id: ID!) { contact(id: $id) { id } }", {"id": lead["id"]}, token=rep_token)
    assert error["extensions"]["code"] == "NOT_FOUND"

    updated = await api.ok(
        "mutation($id: ID!, $i: RecordInput!) { updateLead(id: $id, input: $i) { lastName primaryEmail } }",
        {"id": lead["id"], "i": {"lastName": "Roe", "primaryEmail": "jr@globex.com"}},
        token=rep_token,
    )
    assert updated["updateLead"] == {"lastName": "Roe", "primaryEmail": "jr@globex.com"}

    page = await api.ok("{ leads(search: \"globex\") { total items { id } } }", token=rep_token)
    assert page["leads"]["total"] == 1

    deleted = await api.ok("mutation($id: ID!) { deleteLead(id: $id) }", {"id": lead["id"]}, token=rep_token)
    assert deleted["deleteLead"] == lead["id"]
    assert await CrmRecord.all().count() == 0


async def test_contact_lifecycle(api: GraphQLClient, rep: User, rep_token: str, other_rep: User) -> None:
    created = await api.ok(
        f'mutation {{ createContact(input: {{lastName: "Smith", firstName: "Sam", company: "Initech", '
        f'primaryEmail: "s@initech.com"}}) {{ {FIELDS} }} }}',
        token=rep_token,
    )
    contact = created["createContact"]
    contact_id = contact["id"]
    assert {k: contact[k] for k in ("kind", "firstName", "fullName", "company", "ownerId", "secondaryEmail")} == {
        "kind": "CONTACT", "firstName": "Sam", "fullName": "Sam Smith", "company": "Initech", "ownerId": str(rep.id),
        "secondaryEmail": None}
    assert contact["createdAt"][:16] == contact["updatedAt"][:16] and contact["createdAt"].startswith("20")
    data = await api.ok("query($id: ID!) { contact(id: $id) { lastName } contacts { total items { lastName } } }",
                        {"id": contact_id}, token=rep_token)
    assert data["contact"]["lastName"] == "Smith" and data["contacts"]["total"] == 1
    data = await api.ok(
        'mutation($id: ID!) { updateContact(id: $id, input: {lastName: "Smyth"}) { lastName primaryEmail } }',
        {"id": contact_id},
        token=rep_token,
    )
    assert data["updateContact"] == {"lastName": "Smyth", "primaryEmail": None}
    await api.ok("mutation($id: ID!) { deleteContact(id: $id) }", {"id": contact_id}, token=rep_token)
    assert not await CrmRecord.exists(id=int(contact_id))


async def test_invalid_record_input_is_typed(api: GraphQLClient, rep_token: str) -> None:
    error = await api.error(
        'mutation { createLead(input: {lastName: "Doe", primaryEmail: "nope"}) { id } }', token=rep_token
    )
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": "primaryEmail"}
    assert await CrmRecord.all().count() == 0


async def test_other_users_cannot_edit(api: GraphQLClient, rep_token: str, admin: User) -> None:
    from salesinbox.core.crm.api_tokens import issue_token
    from salesinbox.core.crm.users import create_user

    colleague = await create_user(admin, email="colleague@acme.test", name="Col")
    colleague_token = (await issue_token(colleague, "t"))[1]
    lead = (await api.ok("mutation { createLead(input: {lastName: \"Doe\"}) { id } }", token=rep_token))["createLead"]
    error = await api.error("mutation($id: ID!) { deleteLead(id: $id) }", {"id": lead["id"]}, token=colleague_token)
    assert error["extensions"]["code"] == "FORBIDDEN"


async def test_import_csv_and_rows(api: GraphQLClient, rep_token: str) -> None:
    csv = "first_name,last_name,email,company\nJane,Doe,jane@globex.com,Globex\nJohn,Roe,john@initech.com,Initech\n"
    data = await api.ok(
        "mutation($csv: String!) { importLeads(csv: $csv) { createdCount skippedDuplicateRows created { lastName } } }",
        {"csv": csv},
        token=rep_token,
    )
    assert data["importLeads"]["createdCount"] == 2
    again = await api.ok("mutation($csv: String!) { importLeads(csv: $csv) { createdCount skippedDuplicateRows } }",
                         {"csv": csv}, token=rep_token)
    assert again["importLeads"] == {"createdCount": 0, "skippedDuplicateRows": [1, 2]}
    rows = await api.ok(
        'mutation { importContacts(rows: [{lastName: "A", primaryEmail: "a@x.com"}, {lastName: "B"}]) '
        "{ createdCount } }",
        token=rep_token,
    )
    assert rows["importContacts"]["createdCount"] == 2


async def test_import_needs_exactly_one_source(api: GraphQLClient, rep_token: str) -> None:
    error = await api.error("mutation { importContacts { createdCount } }", token=rep_token)
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": "csv"}


async def test_import_with_bad_row_saves_nothing(api: GraphQLClient, rep_token: str) -> None:
    error = await api.error(
        'mutation { importLeads(csv: "name,email\\nOk,ok@x.com\\nBad,bad\\n") { createdCount } }', token=rep_token
    )
    assert error["extensions"]["code"] == "INVALID_INPUT" and "row 2" in error["message"]
    assert await CrmRecord.all().count() == 0


async def test_shared_by_says_how_to_ask_for_all_users_mail(api: GraphQLClient, rep_token: str) -> None:
    data = await api.ok('{ __type(name: "CrmRecord") { fields { name args { name description } } } }',
                        token=rep_token)
    described = {(field["name"], arg["name"]): arg["description"]
                 for field in data["__type"]["fields"] for arg in field["args"]}
    for field in ("emails", "threads", "threadPage"):
        description = described[(field, "sharedBy")]
        assert "ALL" in description and "leave sharedBy out or pass null" in description, field
