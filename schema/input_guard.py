"""One guard for every string a client sends: no NUL character, no lone surrogate.

Neither can be stored: PostgreSQL text cannot hold NUL, no database driver can encode a lone
UTF-16 surrogate (JSON lets a client send ``"\\ud800"``), and SQLite's full-text search reads
NUL as the end of its query. Rather than each resolver remembering this, :class:`StringGuard`
looks at everything a client sends before the operation runs — every string literal of the
document and every string in its variables, at any depth of input objects and lists — and
answers ``INVALID_INPUT`` naming the argument or input field that holds the character.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from graphql.error import GraphQLError
from graphql.language import (
    ArgumentNode,
    DocumentNode,
    Node,
    ObjectFieldNode,
    StringValueNode,
    VariableDefinitionNode,
    VariableNode,
    Visitor,
    visit,
)
from strawberry.extensions import SchemaExtension
from strawberry.types.execution import ExecutionResult

from salesinbox.core.errors import SalesInboxError, invalid_input

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def check_text(value: str, field: str) -> None:
    """Raise ``INVALID_INPUT`` for ``field`` when ``value`` holds NUL or a lone surrogate.

    The message never repeats the value: it may be huge, and it is what cannot be encoded.
    """
    found = _UNSTORABLE.search(value)
    if found is None:
        return
    if found.group() == "\x00":
        raise invalid_input(f"{field} contains the NUL character (U+0000), which text cannot hold: remove it.",
                            field=field)
    raise invalid_input(
        f"{field} contains a lone UTF-16 surrogate (U+{ord(found.group()):04X}), which is not a character: "
        "send the text as valid Unicode.",
        field=field,
    )


def _field_name(chain: list[Any]) -> str | None:
    """The argument, input field or variable nearest to a value, from its AST ancestors."""
    for node in reversed(chain):
        if isinstance(node, ArgumentNode | ObjectFieldNode):
            return node.name.value
        if isinstance(node, VariableDefinitionNode):
            return node.variable.name.value
    return None


class _Literals(Visitor):
    """Checks the string literals of a document and notes where each variable is used."""

    def __init__(self) -> None:
        super().__init__()
        self.used_as: dict[str, str] = {}

    def enter_string_value(self, node: StringValueNode, _key: Any, parent: Any, _path: Any,
                           ancestors: list[Any]) -> None:
        check_text(node.value, _field_name([*ancestors, parent]) or "A string")

    def enter_variable(self, node: VariableNode, _key: Any, parent: Any, _path: Any,
                       ancestors: list[Any]) -> None:
        if not isinstance(parent, VariableDefinitionNode):  # a use, not the declaration
            name = _field_name([*ancestors, parent])
            if name is not None:
                self.used_as.setdefault(node.name.value, name)


def _strings(value: Any, field: str) -> Iterator[tuple[str, str]]:
    """Every string in a JSON value (object keys included), with the nearest field name."""
    pending = [(value, field)]
    while pending:  # a loop, not recursion: a client controls the depth
        item, name = pending.pop()
        if isinstance(item, str):
            yield item, name
        elif isinstance(item, dict):
            for key, child in item.items():
                yield str(key), name
                pending.append((child, str(key)))
        elif isinstance(item, list):
            pending.extend((child, name) for child in item)


# Documents whose literals passed, with where their variables are used, by id(): the parse
# cache of schema/graphql_schema.py hands the same document object to every request with the same text,
# and walking a document costs ≈ 100 µs. The document is kept, so its id is not reused.
_checked: OrderedDict[int, tuple[Node, dict[str, str]]] = OrderedDict()
_CHECKED_MAX = 256


def _checked_literals(document: Node) -> dict[str, str]:
    """Check the literals of ``document``; return where each of its variables is used."""
    known = _checked.get(id(document))
    if known is not None and known[0] is document:
        _checked.move_to_end(id(document))
        return known[1]
    literals = _Literals()
    visit(document, literals)
    _checked[id(document)] = (document, literals.used_as)
    if len(_checked) > _CHECKED_MAX:
        _checked.popitem(last=False)
    return literals.used_as


def check_operation(document: DocumentNode | Node, variables: dict[str, Any] | None) -> None:
    """Raise ``INVALID_INPUT`` for the first literal or variable string that cannot be stored."""
    used_as = _checked_literals(document)
    for name, value in (variables.items() if isinstance(variables, dict) else ()):
        check_text(name, "A variable name")
        for text, field in _strings(value, used_as.get(name, name)):
            check_text(text, field)


class StringGuard(SchemaExtension):
    """Refuses an operation whose input holds a string that cannot be stored (see the module
    docstring), before anything runs; nothing is half-done."""

    def on_operation(self) -> Iterator[None]:
        # strawberry answers an unknown operation name with a plain-text 400 that repeats
        # it, and cannot encode a lone surrogate there (a 500). Raised this early, the error
        # skips TypedErrors, so it carries its code itself.
        name = self.execution_context.operation_name
        if isinstance(name, str):
            try:
                check_text(name, "operationName")
            except SalesInboxError as error:
                raise GraphQLError(error.message, extensions={"code": error.code.value, "field": error.field}) from None
        yield

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        if context.result is None and context.graphql_document is not None:
            try:
                check_operation(context.graphql_document, context.variables)
            except SalesInboxError as error:
                context.result = ExecutionResult(data=None, errors=[GraphQLError(error.message, original_error=error)])
        yield
