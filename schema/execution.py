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

A second shortcut serves *prefetched* fields: a field with a resolver whose strawberry
metadata names an attribute (``PREFETCHED``: ``{"prefetched": "page_owner"}``) that, when set
on the source, is what the resolver would return (``Message.folder``, ``owner`` and
``linkedRecords`` on a page read by ``message_items``). When the attribute holds a value the
resolver is not called (no strawberry wrapper, argument parsing, ``Info`` nor awaitable
check: ≈ 100 calls on a page of 50) and graphql-core completes the value as it would the
resolver's, errors handled as its ``execute_field`` handles them.
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
from graphql.execution.executor import to_nodes
from graphql.pyutils import Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

_Shortcut = tuple[Any, GraphQLScalarType | GraphQLEnumType, bool]  # resolver, leaf type, non-null
#: The strawberry metadata key of a prefetched field: the source attribute holding its value.
PREFETCHED = "prefetched"
_DEFINITION = "strawberry-definition"  # strawberry's back-reference in a GraphQLField's extensions


def _prefetched_fields(schema: GraphQLSchema) -> dict[int, str]:
    """The prefetched fields of every object type (by ``id()`` of their definition): the attribute."""
    found: dict[int, str] = {}
    for named in schema.type_map.values():
        if not isinstance(named, GraphQLObjectType) or named.name.startswith("__"):
            continue
        for field in named.fields.values():
            definition = (field.extensions or {}).get(_DEFINITION)
            attribute = (getattr(definition, "metadata", None) or {}).get(PREFETCHED)
            if attribute and not field.args:
                found[id(field)] = attribute
    return found


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

    # The plain and prefetched fields of each schema, found on its first operation.
    _plans: WeakKeyDictionary[GraphQLSchema, dict[int, _Shortcut]] = WeakKeyDictionary()
    _prefetch_plans: WeakKeyDictionary[GraphQLSchema, dict[int, str]] = WeakKeyDictionary()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plain = self._plans.get(self.schema)
        if plain is None:
            plain = self._plans[self.schema] = _plain_fields(self.schema)
        # Strawberry always passes a manager; it wraps resolvers only when it has middleware.
        prefetched = self._prefetch_plans.get(self.schema)
        if prefetched is None:
            prefetched = self._prefetch_plans[self.schema] = _prefetched_fields(self.schema)
        middleware = self.middleware_manager.middlewares if self.middleware_manager else ()
        self._plain = {} if middleware else plain
        self._prefetched = {} if middleware else prefetched

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
        attribute = self._prefetched.get(id(field)) if field is not None and not node.arguments else None
        value = getattr(source, attribute, None) if attribute is not None else None
        if value is not None:
            assert field is not None
            info = self.build_resolve_info(field, to_nodes(field_details_list), parent_type, path)
            try:
                completed = self.complete_value(field.type, field_details_list, info, path, value, position_context)
            except Exception as error:  # noqa: BLE001 - as graphql-core's execute_field: located, or null
                self.handle_field_error(error, field.type, field_details_list, path)
                return None
            if self.is_awaitable(completed):  # not for the fields prefetched today
                return self._awaited(completed, field.type, field_details_list, path)
            return completed
        return super().execute_field(parent_type, source, field_details_list, path, position_context)

    async def _awaited(self, completed: Any, return_type: Any, field_details_list: Any, path: Path) -> Any:
        try:
            return await completed
        except Exception as error:  # noqa: BLE001 - as graphql-core's execute_field
            self.handle_field_error(error, return_type, field_details_list, path)
            return None
