"""The meta-check that every GraphQL field is selected by some test (tests/field_coverage.py)."""

from __future__ import annotations

from salesinbox.schema.graphql_schema import build_schema

from .field_coverage import FieldCoverage


def test_selected_fields_follow_fragments_and_interfaces() -> None:
    schema = build_schema()._schema
    coverage = FieldCoverage()
    coverage.record("query($id: ID!) { contact(id: $id) { ...C emails { items { id owner { name } } } } }"
                    " fragment C on CrmRecord { lastName ... on Contact { company } }")
    coverage.record("{ not valid")
    selected = coverage.selected(schema)
    assert {("Query", "contact"), ("Contact", "emails"), ("CrmRecord", "lastName"), ("Contact", "company"),
            ("MessagePage", "items"), ("Message", "id"), ("Message", "owner"), ("User", "name")} <= selected
    missing = coverage.missing(schema)
    # Selected on the interface: covered for Lead and Contact alike; never selected: missing.
    assert "Lead.lastName" not in missing and "Contact.emails" not in missing
    assert (
        "Lead.emails" in missing
        and "Lead.company" in missing
        and "User.email" in missing
        and "Message.subject" in missing
    )
