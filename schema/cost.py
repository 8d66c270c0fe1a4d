"""The query cost limit: what an operation would return, estimated before it runs.

An operation's cost is the number of values it would return, at most: every field of every
object counts 1, and a list counts its items. The length of a paginated list (``first``, or
``limit`` of leads/contacts) is its argument after variables and defaults, and multiplies
everything selected under it: ``threads`` (20) of ``messages`` (50) with two fields is about
20 × 50 × 2. An argument above the field's maximum counts as the maximum (the resolver refuses
it with ``INVALID_INPUT``, which is the more useful answer). Lists that are not paginated are
short by nature (recipients, attachments, a provider's options…) and count
:data:`UNPAGED_ITEMS` items. A message body (``bodyText``, ``bodyHtml``) counts
:data:`BODY_COST`: it may be megabytes where another field is a few bytes. Introspection
(``__schema``, ``__type``, ``__typename``) counts nothing: its size is fixed by the schema.

A field declares how it counts with ``metadata=`` from :func:`paged`, :func:`page_items` or
:func:`body`; fields without it count as described above. Over ``SALESINBOX_MAX_QUERY_COST``
the operation is refused before any resolver runs, with ``QUERY_TOO_COSTLY`` naming the cost,
the limit and how to lower it. The estimate bounds how many values are returned, not how
large each body is: ``loaders.BodyReader`` bounds the characters of bodies actually returned.

Not a library: graphql-complexity 1.0 (the one found) ignores schema defaults of ``first``,
does not see a non-null list (``[Message!]!``) as a list, fails on a variable without
default, and raises an untyped error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLIncludeDirective,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSkipDirective,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
    get_operation_ast,
)
from graphql.execution.values import get_argument_values, get_directive_values, get_variable_values
from strawberry.extensions import SchemaExtension
from strawberry.types.execution import ExecutionResult

from salesinbox.core.errors import ErrorCode, SalesInboxError
from salesinbox.core.settings import Settings

#: what one message body counts (a field counts 1): bodies are stored up to 2 MB each
BODY_COST = 1000
#: the assumed length of a list that is not paginated
UNPAGED_ITEMS = 10

_METADATA_KEY = "salesinbox.cost"


@dataclass(frozen=True)
class FieldCost:
    """How one field counts (see the module docstring)."""

    #: what the field itself counts, per item when it is a list
    weight: int = 1
    #: the argument giving the length of a paginated field, and that argument's maximum
    page_argument: str | None = None
    max_items: int = 0
    #: a fixed length: 1 for the ``items`` of a page (its length is the page field's)
    items: int | None = None


def paged(max_items: int, argument: str = "first") -> dict[str, FieldCost]:
    """Field metadata: a paginated field, ``argument`` items (at most ``max_items``) of its selection."""
    return {_METADATA_KEY: FieldCost(page_argument=argument, max_items=max_items)}


def page_items() -> dict[str, FieldCost]:
    """Field metadata: the ``items`` of a page, counted by the field that returned the page."""
    return {_METADATA_KEY: FieldCost(items=1)}


def body() -> dict[str, FieldCost]:
    """Field metadata: a message body, counting :data:`BODY_COST`."""
    return {_METADATA_KEY: FieldCost(weight=BODY_COST)}


_DEFAULT = FieldCost()


def _declared(field: GraphQLField) -> FieldCost:
    definition = (field.extensions or {}).get("strawberry-definition")
    metadata: Mapping[str, Any] = getattr(definition, "metadata", None) or {}
    return metadata.get(_METADATA_KEY, _DEFAULT)


class _Estimate:
    """The walk over one operation's selections, with its variables already coerced."""

    def __init__(self, schema: GraphQLSchema, fragments: dict[str, FragmentDefinitionNode], variables: Any) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        # A fragment costs the same wherever it is spread: computed once, so that fragments
        # spreading fragments cannot make the walk itself exponential.
        self.fragment_costs: dict[str, int] = {}

    def selections(self, selection_set: SelectionSetNode, parent: GraphQLNamedType) -> int:
        total = 0
        for node in selection_set.selections:
            if not self._included(node):
                continue
            if isinstance(node, FieldNode):
                total += self.field(node, parent)
            elif isinstance(node, InlineFragmentNode):
                condition = node.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                total += self.selections(node.selection_set, inner or parent)
            elif isinstance(node, FragmentSpreadNode):
                total += self.fragment(node.name.value)
        return total

    def fragment(self, name: str) -> int:
        if name not in self.fragment_costs:
            self.fragment_costs[name] = 0  # validation refuses cycles; this only guards the walk
            definition = self.fragments[name]
            condition = self.schema.get_type(definition.type_condition.name.value)
            self.fragment_costs[name] = self.selections(definition.selection_set, condition)  # type: ignore[arg-type]
        return self.fragment_costs[name]

    def field(self, node: FieldNode, parent: GraphQLNamedType) -> int:
        name = node.name.value
        fields = getattr(parent, "fields", None)
        if name.startswith("__") or not fields or name not in fields:
            return 0  # introspection, or (validated away) an unknown field
        definition: GraphQLField = fields[name]
        declared = _declared(definition)
        inner = self.selections(node.selection_set, get_named_type(definition.type)) if node.selection_set else 0
        per_item = declared.weight + inner
        if declared.page_argument is not None:
            return self._page_length(definition, node, declared, declared.page_argument) * per_item
        if declared.items is not None:
            return declared.items * per_item
        return (UNPAGED_ITEMS if _is_list(definition.type) else 1) * per_item

    def _page_length(self, definition: GraphQLField, node: FieldNode, declared: FieldCost, argument: str) -> int:
        try:
            value = get_argument_values(definition, node, self.variables).get(argument)
        except GraphQLError:
            value = None  # execution reports it; count the most the field could return
        if not isinstance(value, int):
            return declared.max_items
        return min(max(value, 1), declared.max_items)

    def _included(self, node: Any) -> bool:
        skip = get_directive_values(GraphQLSkipDirective, node, self.variables)
        if skip is not None and skip.get("if") is True:
            return False
        include = get_directive_values(GraphQLIncludeDirective, node, self.variables)
        return include is None or include.get("if") is not False


def _is_list(type_: Any) -> bool:
    if isinstance(type_, GraphQLNonNull):
        type_ = type_.of_type
    return isinstance(type_, GraphQLList)


def estimate_cost(schema: GraphQLSchema, document: Any, operation_name: str | None,
                  variables: dict[str, Any] | None) -> int | None:
    """The estimated cost of the operation of a validated ``document``, or ``None`` when it
    cannot be run (no such operation, variables that do not coerce): execution then reports why."""
    operation = get_operation_ast(document, operation_name)
    if not isinstance(operation, OperationDefinitionNode):
        return None
    coerced = get_variable_values(schema, operation.variable_definitions or (), variables or {})
    if isinstance(coerced, list):
        return None
    root: GraphQLObjectType | None = schema.get_root_type(operation.operation)
    if root is None:
        return None
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    return _Estimate(schema, fragments, coerced).selections(operation.selection_set, root)


def query_too_costly(cost: int, limit: int) -> SalesInboxError:
    """The ``QUERY_TOO_COSTLY`` error for an operation estimated at ``cost`` over ``limit``."""
    return SalesInboxError(
        ErrorCode.QUERY_TOO_COSTLY,
        f"This query would return about {cost} values, over the limit of {limit} "
        "(SALESINBOX_MAX_QUERY_COST). Ask for less in one request: a lower `first` on lists "
        f"(threads, messages, emails, salesInbox), fewer aliases, fewer fields, and message bodies "
        f"(bodyText, bodyHtml: {BODY_COST} each) for fewer messages at a time.",
    )


def cost_limit(settings: Settings) -> type[SchemaExtension]:
    """The extension refusing operations over ``settings.max_query_cost`` before they run."""
    limit = settings.max_query_cost

    class CostLimit(SchemaExtension):
        def on_execute(self) -> Iterator[None]:  # (not async: strawberry runs a plain generator faster)
            context = self.execution_context
            # Runs after authentication (an earlier extension): a refused token stays UNAUTHENTICATED.
            if context.result is None and context.graphql_document is not None:
                cost = estimate_cost(context.schema._schema, context.graphql_document,
                                     context.operation_name, context.variables)
                if cost is not None and cost > limit:
                    error = query_too_costly(cost, limit)
                    # Setting a result makes strawberry skip execution.
                    context.result = ExecutionResult(
                        data=None, errors=[GraphQLError(error.message, original_error=error)]
                    )
            yield

    return CostLimit
