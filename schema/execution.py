"""graphql-core's executor with a shortcut for the commonest field of a list view.

A page of 50 messages is ≈ 500 field resolutions, and for most of them graphql-core builds a
resolve-info object, calls strawberry's wrapper, then walks ``complete_value`` through the
NonNull wrapper to the scalar — ≈ 40 % of the execution time of the Emails related list
(bench/bench_views.py). Most of those fields are *plain*: a strawberry field without a
resolver (it reads an attribute), without arguments, of a scalar or enum type. For them this
executor reads the attribute and coerces it directly.

Anything unusual takes graphql-core's own path, unchanged: a null (so a non-null field still
gets its located error), an exception while reading or coercing, field middleware. The
results, errors included, are the same; ``tests/test_execution.py`` compares them.
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
)
from graphql.pyutils import Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

_Shortcut = tuple[Any, GraphQLScalarType | GraphQLEnumType, bool]  # resolver, leaf type, non-null


def _plain_fields(schema: GraphQLSchema) -> dict[int, _Shortcut]:
    """The plain leaf fields of every object type, by ``id()`` of their definition."""
    plain: dict[int, _Shortcut] = {}
    for named in schema.type_map.values():
        if not isinstance(named, GraphQLObjectType) or named.name.startswith("__"):
            continue
        for field in named.fields.values():
            resolve = field.resolve
            if resolve is None or not getattr(resolve, "_is_default", False) or field.args:
                continue
            leaf, non_null = field.type, isinstance(field.type, GraphQLNonNull)
            if non_null:
                leaf = leaf.of_type
            if isinstance(leaf, GraphQLScalarType | GraphQLEnumType):
                plain[id(field)] = (resolve, leaf, non_null)
    return plain


class LeanExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, plus the shortcut described in the module docstring."""

    # The plain fields of each schema, found on its first operation.
    _plans: WeakKeyDictionary[GraphQLSchema, dict[int, _Shortcut]] = WeakKeyDictionary()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plain = self._plans.get(self.schema)
        if plain is None:
            plain = self._plans[self.schema] = _plain_fields(self.schema)
        # Strawberry always passes a manager; it wraps resolvers only when it has middleware.
        middleware = self.middleware_manager.middlewares if self.middleware_manager else ()
        self._plain = {} if middleware else plain

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Path,
        position_context: Any,
    ) -> Any:
        node = field_details_list[0].node
        field: GraphQLField | None = parent_type.fields.get(node.name.value)
        shortcut = self._plain.get(id(field)) if field is not None and not node.arguments else None
        if shortcut is not None:
            resolve, leaf, non_null = shortcut
            try:
                value = resolve(source, None)
                if value is not None:
                    coerced = leaf.coerce_output_value(value)
                    if coerced is not None and coerced is not Undefined:
                        return coerced
                elif not non_null:
                    return None
            except Exception:  # noqa: BLE001 - graphql-core's path reports it, located
                pass
        return super().execute_field(parent_type, source, field_details_list, path, position_context)
