"""Which fields of the GraphQL schema the test-suite's operations select.

The standard is that every GraphQL field has a test. ``tests/conftest.py`` records every
document the app executes during the run (HTTP, WebSocket, ``schema.execute``); at the
end of a complete run (the whole suite, nothing deselected, everything passed) it fails the
run if a field of the schema was never selected, naming it. A field declared by an interface
(``CrmRecord.emails``) counts for every type implementing it when selected on the interface.
"""

from __future__ import annotations

from graphql import (
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    get_named_type,
    parse,
    visit,
)
from graphql.language import FieldNode


class _Collect(Visitor):
    def __init__(self, type_info: TypeInfo, seen: set[tuple[str, str]]) -> None:
        super().__init__()
        self.type_info, self.seen = type_info, seen

    def enter_field(self, node: FieldNode, *_: object) -> None:
        parent = self.type_info.get_parent_type()
        if parent is not None and self.type_info.get_field_def() is not None:
            self.seen.add((get_named_type(parent).name, node.name.value))


class FieldCoverage:
    """Documents seen during a run, and the schema fields none of them selected."""

    def __init__(self) -> None:
        self.documents: set[str] = set()

    def record(self, document: str | None) -> None:
        """Remember a document the app was asked to execute (syntax errors are ignored later)."""
        if document:
            self.documents.add(document)

    def selected(self, schema: GraphQLSchema) -> set[tuple[str, str]]:
        """(type name, field name) of every field the recorded documents select."""
        seen: set[tuple[str, str]] = set()
        for document in self.documents:
            try:
                tree = parse(document)
            except GraphQLError:
                continue
            type_info = TypeInfo(schema)
            visit(tree, TypeInfoVisitor(type_info, _Collect(type_info, seen)))
        return seen

    def missing(self, schema: GraphQLSchema) -> list[str]:
        """``Type.field`` of every field of the schema's object types that no document selects."""
        seen = self.selected(schema)
        missing: list[str] = []
        for named in schema.type_map.values():
            if not isinstance(named, GraphQLObjectType) or named.name.startswith("__"):
                continue
            via = [named.name] + [i.name for i in named.interfaces if isinstance(i, GraphQLInterfaceType)]
            missing.extend(
                f"{named.name}.{field}" for field in named.fields
                if not any((owner, field) in seen for owner in via)
            )
        return sorted(missing)
