"""Values for GraphQL arguments: hostile and benign, generated (hypothesis) or swept.

Used by ``tests/test_schema_fuzz.py``. A *slot* is one leaf position a client can fill: an
argument, or a field of an input object (``input.attachments[].filename``). Two sources:

- :func:`sweep`: for every slot, each *killer* of its kind (NUL, a lone surrogate, 100,001
  characters, CR/LF, SQL/LIKE metacharacters; IDs "²", 2³¹, 2⁶³; 32-bit extremes; broken
  cursors and CSV) with every other slot benign, so that the hostile value reaches as deep
  as a well-behaved request would. Deterministic and complete for these classes.
- :func:`variables`: hypothesis strategies over the same types with larger pools, mixing
  benign requests, one hostile argument, and everything hostile at once.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
)
from graphql.pyutils import Undefined
from hypothesis import strategies as st

OMIT = object()  # a variable left out of the request: the argument's default applies


def cursor(raw: str) -> str:
    """A cursor as the API encodes them, around any text."""
    return base64.urlsafe_b64encode(raw.encode("utf-8", "surrogatepass")).decode().rstrip("=")


_DAY = "2024-01-02T00:00:00+00:00"

# --- Killers: every slot of a kind gets each of them once (sweep) ------------------------------

KILLERS: dict[str, list[Any]] = {
    "ID": ["²", str(2**31), str(2**63), "\x00"],
    "String": ["\x00", "\ud800", "x" * 100_001, "a\r\nBcc: x@rival.example", "%_\\'\"; --"],
    "Int": [-1, 2**31 - 1, -(2**31)],
    "BigInt": [-1, str(2**63 - 1), str(-(2**63))],
}
KILLERS_BY_NAME: dict[str, list[Any]] = {
    "after": [cursor(f"{_DAY}|{2**63}"), cursor(f"{_DAY}|²"), cursor("2024-01-02T00:00:00|2"),
              cursor("0001-01-01T00:00:00+14:00|2")],
    "csv": ["email,last_name\nann@x.example,Ann\nbob@x.example", "name,company\nDoe," + "x" * 131_073,
            'name\n"unterminated', "last_name,name\nA,B"],
}

# --- Larger pools, for the generated examples -------------------------------------------------

SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]
TEXT = [
    "", " ", "\x00", "a\x00b", *SURROGATES, "x\ud800y", "\ud83d\ude00", "é", "'", '"', "%", "_", "\\",
    "\r\n", "a\r\nBcc: x@rival.example", "\t", "\u2028", "\u202e", "Robert'); DROP TABLE app_user;--",
    "a" * 201, "b" * 501, "c" * 1000, "x" * 100_001, "y" * 1_000_000, "²", "١٢", "0", "-1", "9" * 30,
    "null", "<b>hi</b>", "ß" * 300,
]
EMAILS = [
    "Jane <jane@globex.example>", "@", "a@", "a@b", "a@-b.example", "a" * 300 + "@x.example", "é@ü.example",
    "a@b.example, c@d.example", "x@[127.0.0.1]", "a@b.example\r\nBcc: c@d.example",
]
HOSTS = ["127.0.0.1", "localhost", "[::1]", "10.0.0.1", "169.254.169.254", "imaps://x.example",
         "x.example:993", "-x.example", "a" * 300 + ".example", "xn--", "::ffff:7f00:1"]
DOMAINS = ["*.example", ".", "a..b", "-a.example", "a" * 64 + ".example", "localhost", "127.0.0.1", "ACME.TEST."]
CURSORS = [
    "", "=", "!!", "AAAA", cursor("|"), cursor(f"{_DAY}|1|2"), cursor(f"{_DAY}|-1"), cursor(f"{_DAY}|{2**31}"),
    cursor(f"{_DAY}|\x00"), cursor("9999-12-31T23:59:59-14:00|1"), cursor("\ud800|1"), "x" * 10_000,
    *KILLERS_BY_NAME["after"],
]
CSVS = ["", ",,,", "last_name\nA,B,C", "\ufeffname\nDoe", "name\r\nDoe\r\n", "name\n" + "Doe\n" * 10_001,
        "name,phone\nDoe,1", *KILLERS_BY_NAME["csv"]]
IDS = ["0", "", " 1 ", "-1", "1.0", "0x10", "1e3", "١٢", "9" * 30, str(2**31 - 1), str(2**63 - 1), "\ud800",
       *KILLERS["ID"]]
INTS = [0, -1, 101, 201, 10_000, 2**31 - 1, -(2**31), 2**31, 2**63, -(2**63) - 1, 10**30]
PROVIDERS = ["gmail", "outlook", "office365", "yahoo", "zoho_mail", "custom_imap"]

HOSTILE_BY_NAME: dict[str, list[str]] = {
    "after": CURSORS, "csv": CSVS, "host": HOSTS, "domain": DOMAINS, "provider": [*PROVIDERS, "GMAIL", "nope"],
    "contentBase64": ["%%%", "", "=", "aGk", "a" * 4_000, "aGk=\n"],
    "contentType": ["text/plain\r\nBcc: x@rival.example", "pdf", "text/", "/", "text/plain; charset=utf-8"],
}
# What a well-behaved client sends: the first value is the one the sweep uses.
BENIGN_BY_NAME: dict[str, list[Any]] = {
    "after": [cursor(f"{_DAY}|2")], "csv": ["last_name\nDoe", "name,email\nAnn,ann@x.example"],
    "host": ["imap.globex.example", "smtp.globex.example"], "domain": ["globex.example", "initech.example"],
    "contentBase64": ["aGk="], "contentType": ["text/plain", "application/pdf"], "filename": ["notes.txt"],
    "provider": PROVIDERS, "key": PROVIDERS, "password": ["Zebra-Password-1"], "outgoingPassword": ["Zebra-2"],
    "value": ["eu", "com"], "subject": ["Hello"], "text": ["Hi Bob"], "html": ["<p>Hi</p>"],
    "port": [993, 465], "first": [10, 1], "limit": [10, 1], "offset": [0, 1], "syncDaysLimit": [30],
    "expiresInDays": [30], "name": ["Jane", "Globex"], "lastName": ["Doe"], "displayName": ["Rex"],
}
for _name in ("email", "to", "cc", "bcc", "fromAddress", "address", "confirmEmail", "primaryEmail",
              "secondaryEmail", "username"):
    HOSTILE_BY_NAME[_name] = EMAILS
    BENIGN_BY_NAME[_name] = ["rep@acme.test", "jane@globex.example", "new@globex.example"]


def required(field: GraphQLInputField | GraphQLArgument) -> bool:
    """Whether a client must give it: non-null without a default."""
    return isinstance(field.type, GraphQLNonNull) and field.default_value is Undefined


# --- The sweep --------------------------------------------------------------------------------

def _benign(type_: GraphQLInputType, name: str) -> Any:
    """One deterministic well-behaved value: the required fields of input objects only."""
    if isinstance(type_, GraphQLNonNull):
        return _benign(type_.of_type, name)
    if isinstance(type_, GraphQLList):
        return [_benign(type_.of_type, name)]
    if isinstance(type_, GraphQLEnumType):
        return next(iter(type_.values))
    if isinstance(type_, GraphQLInputObjectType):
        return {n: _benign(f.type, n) for n, f in type_.fields.items() if required(f)}
    if name in BENIGN_BY_NAME:
        return BENIGN_BY_NAME[name][0]
    return {"ID": "1", "Int": 10, "BigInt": "10", "Float": 1.0, "Boolean": True}.get(type_.name, "Doe")


def _slots(type_: GraphQLInputType, name: str, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str, str]]:
    """(path, name, scalar type name) of every leaf that is not an enum or a Boolean."""
    if isinstance(type_, GraphQLNonNull | GraphQLList):
        yield from _slots(type_.of_type, name, path)
    elif isinstance(type_, GraphQLInputObjectType):
        for field_name, field in type_.fields.items():
            yield from _slots(field.type, field_name, (*path, field_name))
    elif isinstance(type_, GraphQLScalarType) and type_.name not in ("Boolean", "Float"):
        yield path, name, type_.name


def _with(type_: GraphQLInputType, name: str, path: tuple[str, ...], killer: Any) -> Any:
    """The benign value of ``type_`` with ``killer`` at ``path`` (through lists and objects)."""
    if isinstance(type_, GraphQLNonNull):
        return _with(type_.of_type, name, path, killer)
    if isinstance(type_, GraphQLList):
        return [_with(type_.of_type, name, path, killer)]
    if not path:
        return killer
    assert isinstance(type_, GraphQLInputObjectType)
    value = _benign(type_, name)
    field = type_.fields[path[0]]
    value[path[0]] = _with(field.type, path[0], path[1:], killer)
    return value


@dataclass
class Variable:
    """A variable of a generated operation, feeding one argument."""

    name: str  # in the document
    argument: str
    type: GraphQLInputType
    has_default: bool

    @property
    def declared(self) -> str:
        """Its type in the document: nullable when the argument has a default, so that
        leaving the variable out means "the default"."""
        if self.has_default and isinstance(self.type, GraphQLNonNull):
            return str(self.type.of_type)
        return str(self.type)

    @property
    def must_send(self) -> bool:
        return isinstance(self.type, GraphQLNonNull) and not self.has_default


def sweep(variables: list[Variable]) -> Iterator[dict[str, Any]]:
    """Every killer at every slot, one at a time, with the required variables benign."""
    baseline = {v.name: _benign(v.type, v.argument) for v in variables if v.must_send}
    for variable in variables:
        for path, name, kind in _slots(variable.type, variable.argument, ()):
            for killer in KILLERS_BY_NAME.get(name, []) + KILLERS.get(kind, []):
                yield {**baseline, variable.name: _with(variable.type, variable.argument, path, killer)}


# --- The generated examples ---------------------------------------------------------------------

_odd_text = st.text(max_size=40) | st.builds(
    lambda a, s, b: a + s + b, st.text(max_size=5), st.sampled_from(SURROGATES), st.text(max_size=5))
_plain_text = st.sampled_from(["Doe", "Jane", "Globex", "INBOX", "Sent", "a"]) | st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz ABC-.'", min_size=1, max_size=20)


def _strings(name: str, hostile: bool) -> st.SearchStrategy[Any]:
    benign = st.sampled_from(BENIGN_BY_NAME[name]) if name in BENIGN_BY_NAME else _plain_text
    if not hostile:
        return benign
    known = st.sampled_from(HOSTILE_BY_NAME[name]) if name in HOSTILE_BY_NAME else st.nothing()
    return known | st.sampled_from(TEXT) | _odd_text | benign


def _scalar(scalar: GraphQLScalarType, name: str, hostile: bool) -> st.SearchStrategy[Any]:
    if scalar.name == "ID":
        benign_id = st.sampled_from(["1", "2", "3"]) | st.integers(1, 5)
        return st.sampled_from(IDS) | _strings(name, True) | benign_id if hostile else benign_id
    if scalar.name in ("Int", "BigInt"):
        benign_int = st.sampled_from(BENIGN_BY_NAME.get(name, [10])) | st.integers(0, 100)
        return st.sampled_from(INTS) | st.integers(-1000, 1000) if hostile else benign_int
    if scalar.name == "Float":
        return st.floats(allow_nan=False) | st.sampled_from(INTS) if hostile else st.floats(0, 100)
    if scalar.name == "Boolean":
        return st.booleans()
    return _strings(name, hostile)


def values(type_: GraphQLInputType, name: str, hostile: bool) -> st.SearchStrategy[Any]:
    """Values for an input of ``type_`` (``None`` only where nullable); input objects get
    their required fields and any of the others."""
    if isinstance(type_, GraphQLNonNull):
        return _non_null(type_.of_type, name, hostile)
    return st.none() | _non_null(type_, name, hostile)


def _non_null(type_: GraphQLInputType, name: str, hostile: bool) -> st.SearchStrategy[Any]:
    if isinstance(type_, GraphQLList):
        item = values(type_.of_type, name, hostile)
        return st.lists(item, max_size=3) | item  # a single value is coerced to a list
    if isinstance(type_, GraphQLEnumType):
        return st.sampled_from(list(type_.values))
    if isinstance(type_, GraphQLInputObjectType):
        fields = type_.fields
        return st.deferred(lambda: st.fixed_dictionaries(
            {n: values(f.type, n, hostile) for n, f in fields.items() if required(f)},
            optional={n: values(f.type, n, hostile) for n, f in fields.items() if not required(f)},
        ))
    assert isinstance(type_, GraphQLScalarType), type_
    return _scalar(type_, name, hostile)


def variables(declared: list[Variable]) -> st.SearchStrategy[dict[str, Any]]:
    """Variables of an operation: all benign, one hostile (most often), or all hostile.
    Optional ones are sometimes left out, sometimes null."""

    def of(hostile: Any) -> st.SearchStrategy[dict[str, Any]]:
        drawn = st.fixed_dictionaries({
            v.name: values(v.type, v.argument, hostile(v)) if v.must_send
            else st.just(OMIT) | values(v.type, v.argument, hostile(v))
            for v in declared
        })
        return drawn.map(lambda found: {k: v for k, v in found.items() if v is not OMIT})

    def with_mode(mode: str) -> st.SearchStrategy[dict[str, Any]]:
        if mode == "one" and declared:
            return st.sampled_from(declared).flatmap(lambda focus: of(lambda v: v is focus))
        return of(lambda _: mode == "all")

    return st.sampled_from(["benign", "one", "one", "one", "all"]).flatmap(with_mode)
