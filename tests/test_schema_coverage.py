"""Every root field of the GraphQL API is exercised by a test that sends it over HTTP."""

from __future__ import annotations

import re
from pathlib import Path

from salesinbox.schema.api import build_schema

TESTS = Path(__file__).parent


def _operations_sent_by_tests() -> str:
    # The GraphQL documents live in the tests that post them through GraphQLClient.
    return "\n".join(p.read_text(encoding="utf-8") for p in TESTS.glob("test_*.py") if p.name != Path(__file__).name)


def test_every_root_field_has_a_test() -> None:
    schema = build_schema()._schema
    text = _operations_sent_by_tests()
    missing = [
        f"{root.name}.{name}"
        for root in (schema.query_type, schema.mutation_type)
        if root is not None
        for name in root.fields
        if not re.search(rf"[{{\s]{name}\s*[({{]", text)
    ]
    assert not missing, f"root fields no test sends: {missing}"
