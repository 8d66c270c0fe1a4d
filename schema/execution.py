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

Two more remove per-object overhead on a page:

* ``execute_fields`` completes an object's plain fields, and its prefetched leaf fields whose
  attribute is set (``folder``), in one loop, reading the attribute directly (strawberry's
  default resolver is ``getattr``) without building a response path; only the other fields,
  and a plain one that is null where it may not be or fails, go through ``execute_field``.
* A value of an interface type whose class is exactly the origin of one (non-generic)
  strawberry object type, not cast, is completed as that type without calling the
  interface's ``resolve_type`` and the type's ``is_type_of`` (both would answer that type:
  ``linkedRecords`` on a page is ≈ 70 of them). Interfaces with their own ``resolve_type``
  are left to it.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any
from weakref import WeakKeyDictionary

from graphql import (
    GraphQLAbstractType,
    GraphQLEnumType,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
)
from graphql.execution.executor import gather_with_cancel, to_nodes
from graphql.pyutils import Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.base import StrawberryObjectDefinition
from strawberry.types.cast import get_strawberry_type_cast

# How a plain field is read from its source, its leaf type, and whether it is non-null.
_Shortcut = tuple[Callable[[Any], Any], GraphQLScalarType | GraphQLEnumType, bool]
# A field of a selection: response name, graphql-core's details, its shortcut (plain, or a
# prefetched leaf), and whether it is prefetched (then None means "not read": its resolver runs).
_Planned = tuple[str, Any, _Shortcut | None, bool]
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
                plain[id(field)] = (_reader(field, resolve), leaf, non_null)
    return plain


def _reader(field: GraphQLField, resolve: Any) -> Callable[[Any], Any]:
    """What strawberry's default resolver of ``field`` does: ``getattr`` of its Python name
    when that is the configured default resolver, else that resolver itself."""
    definition = (field.extensions or {}).get(_DEFINITION)
    if (definition is not None and definition.base_resolver is None
            and definition.default_resolver is getattr):
        return attrgetter(definition.python_name)
    return lambda source: resolve(source, None)


def _attribute_or_none(attribute: str) -> Callable[[Any], Any]:
    return lambda source: getattr(source, attribute, None)


def _concrete_types(schema: GraphQLSchema) -> dict[type, GraphQLObjectType]:
    """Classes that are the origin of exactly one non-generic strawberry object type: that type."""
    found: dict[type, GraphQLObjectType | None] = {}
    for named in schema.type_map.values():
        definition = (named.extensions or {}).get(_DEFINITION)
        if not isinstance(named, GraphQLObjectType) or not isinstance(definition, StrawberryObjectDefinition):
            continue
        if definition.is_graphql_generic or definition.concrete_of is not None or definition.is_type_of:
            continue  # a generic's specialisations, or a type with its own is_type_of: not by class
        origin = definition.origin
        found[origin] = None if origin in found else named  # two types of one class: ambiguous
    return {origin: named for origin, named in found.items() if named is not None}


def _resolved_by_class(abstract: GraphQLAbstractType) -> bool:
    """Whether strawberry's generated ``resolve_type`` decides ``abstract`` (no custom one)."""
    definition = (abstract.extensions or {}).get(_DEFINITION)
    return (isinstance(abstract, GraphQLInterfaceType) and isinstance(definition, StrawberryObjectDefinition)
            and definition.resolve_type is None)


class LeanExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context, plus the shortcut described in the module docstring."""

    # The plain and prefetched fields of each schema, found on its first operation.
    _plans: WeakKeyDictionary[GraphQLSchema, dict[int, _Shortcut]] = WeakKeyDictionary()
    _prefetch_plans: WeakKeyDictionary[GraphQLSchema, dict[int, str]] = WeakKeyDictionary()
    _concrete: WeakKeyDictionary[GraphQLSchema, dict[type, GraphQLObjectType]] = WeakKeyDictionary()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        plain = self._plans.get(self.schema)
        if plain is None:
            plain = self._plans[self.schema] = _plain_fields(self.schema)
        # Strawberry always passes a manager; it wraps resolvers only when it has middleware.
        prefetched = self._prefetch_plans.get(self.schema)
        if prefetched is None:
            prefetched = self._prefetch_plans[self.schema] = _prefetched_fields(self.schema)
        concrete = self._concrete.get(self.schema)
        if concrete is None:
            concrete = self._concrete[self.schema] = _concrete_types(self.schema)
        middleware = self.middleware_manager.middlewares if self.middleware_manager else ()
        self._plain = {} if middleware else plain
        self._prefetched = {} if middleware else prefetched
        self._by_class = {} if middleware else concrete
        # Per selection of this operation (graphql-core reuses one grouped field set for
        # every item of a list): each field's shortcut. The set is kept so its id stays its own.
        self._object_plans: dict[int, tuple[Any, list[_Planned]]] = {}
        self._possible: dict[tuple[str, str], bool] = {}

    def _object_plan(self, parent_type: GraphQLObjectType, grouped_field_set: Any) -> list[_Planned]:
        kept = self._object_plans.get(id(grouped_field_set))
        if kept is not None and kept[0] is grouped_field_set:
            return kept[1]
        plan = []
        for response_name, field_details_list in grouped_field_set.items():
            node = field_details_list[0].node
            field = parent_type.fields.get(node.name.value)
            shortcut, prefetched = None, False
            if field is not None and not node.arguments:
                shortcut = self._plain.get(id(field))
                attribute = self._prefetched.get(id(field))
                leaf = field.type.of_type if isinstance(field.type, GraphQLNonNull) else field.type
                if attribute is not None and isinstance(leaf, GraphQLScalarType | GraphQLEnumType):
                    # a prefetched leaf (Message.folder): its attribute when set, else its resolver
                    shortcut = (_attribute_or_none(attribute), leaf, isinstance(field.type, GraphQLNonNull))
                    prefetched = True
            plan.append((response_name, field_details_list, shortcut, prefetched))
        self._object_plans[id(grouped_field_set)] = (grouped_field_set, plan)
        return plan

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: Any,
        position_context: Any,
    ) -> Any:
        """graphql-core's ``execute_fields``, with plain fields read in the loop itself."""
        results: dict[str, Any] = {}
        awaitable_fields: list[str] = []
        try:
            for response_name, field_details_list, shortcut, prefetched in self._object_plan(
                    parent_type, grouped_field_set):
                execute = self.execute_field
                if shortcut is not None:
                    read, leaf, non_null = shortcut
                    try:
                        value = read(source_value)
                        if value is not None:
                            coerced = leaf.coerce_output_value(value)
                            if coerced is not None and coerced is not Undefined:
                                results[response_name] = coerced
                                continue
                            execute = super().execute_field  # odd value: graphql-core's own path
                        elif not prefetched:  # (a prefetched field not read: its resolver reads it)
                            if not non_null:
                                results[response_name] = None
                                continue
                            execute = super().execute_field
                    except Exception:  # noqa: BLE001 - graphql-core's path reports it, located
                        execute = super().execute_field
                result = execute(parent_type, source_value, field_details_list,
                                 Path(path, response_name, parent_type.name), position_context)
                if result is not Undefined:
                    results[response_name] = result
                    if self.is_awaitable(result):
                        awaitable_fields.append(response_name)
        except Exception:
            if awaitable_fields:  # as graphql-core: settle what other fields started
                self.settle_in_background([results[field] for field in awaitable_fields])
            raise
        if not awaitable_fields:
            return results
        return self._gathered(results, awaitable_fields)

    @staticmethod
    async def _gathered(results: dict[str, Any], awaitable_fields: list[str]) -> dict[str, Any]:
        if len(awaitable_fields) == 1:
            field = awaitable_fields[0]
            results[field] = await results[field]
        else:
            awaited = await gather_with_cancel(*(results[field] for field in awaitable_fields))
            results.update(zip(awaitable_fields, awaited, strict=True))
        return results

    def complete_abstract_value(
        self,
        return_type: GraphQLAbstractType,
        field_details_list: Any,
        info: Any,
        path: Path,
        result: Any,
        position_context: Any,
    ) -> Any:
        runtime_type = self._by_class.get(type(result))
        if (runtime_type is not None and get_strawberry_type_cast(result) is None
                and self._is_possible(return_type, runtime_type)):
            return self.collect_and_execute_subfields(runtime_type, field_details_list, path, result,
                                                      position_context)
        return super().complete_abstract_value(return_type, field_details_list, info, path, result,
                                               position_context)

    def _is_possible(self, abstract: GraphQLAbstractType, runtime_type: GraphQLObjectType) -> bool:
        key = (abstract.name, runtime_type.name)
        known = self._possible.get(key)
        if known is None:
            known = self._possible[key] = (_resolved_by_class(abstract)
                                           and self.schema.is_sub_type(abstract, runtime_type))
        return known

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Path,
        position_context: Any,
    ) -> Any:
        # (plain fields are read by execute_fields, before this is called)
        node = field_details_list[0].node
        field: GraphQLField | None = parent_type.fields.get(node.name.value)
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
