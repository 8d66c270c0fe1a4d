"""Fuzz every argument of every query and mutation: hostile input must get a typed error.

For each root field of ``Query`` and ``Mutation`` (and each argument of the fields selected
under it, such as ``CrmRecord.emails(after:)``) hypothesis generates variables from the
argument's GraphQL type, biased to what breaks servers: "", NUL, lone surrogates, strings of
100,000 and 1,000,000 characters, "²" and other IDs ``int()`` misreads, keys beyond the
database's integer range, out-of-range numbers, odd base64 cursors, broken CSV, CR/LF in
header-bound strings. Each operation goes through the real ASGI app over HTTP, as an admin
and as a standard user, against a seeded database (leads, contacts, a mail account with
linked mail); the test fails on a 5xx or an ``INTERNAL_ERROR``. Each example runs in a
transaction rolled back afterwards, so that examples are independent and reproducible.

Runs are derandomized (the same inputs every run): :data:`EXAMPLES` per root field and
profile. A failure prints the falsifying variables and a ``@reproduce_failure`` blob.
Mail servers are never reached: private hosts are refused (the SSRF guard is on here) and
the seeded account's servers do not resolve.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from graphql import (
    GraphQLArgument,
    GraphQLEnumType,
    GraphQLField,
    GraphQLInputField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    get_named_type,
    is_leaf_type,
)
from graphql.pyutils import Undefined
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tortoise.transactions import in_transaction

from salesinbox.core.credentials import SecretBox, generate_key
from salesinbox.core.db import open_database
from salesinbox.core.models import AddressRole, FromAddress, MailAccount, Profile, RecordKind
from salesinbox.core.records import RecordInput, create_record
from salesinbox.core.settings import Settings
from salesinbox.core.tokens import issue_token, token_cache
from salesinbox.core.users import create_user
from salesinbox.schema.api import build_schema
from salesinbox.schema.app import create_app

from .database import TemplateDatabase
from .test_policy import write_account, write_message

pytestmark = pytest.mark.db

#: Generated operations per root field and profile (≈ 50 fields × 2 profiles per backend).
EXAMPLES = 15
SCHEMA = build_schema()._schema
MAX_DEPTH = 3  # root field, a page, its items: deep enough for CrmRecord.emails(after:)
OMIT = object()  # a variable left out of the request: the argument's default applies


# --- Hostile values --------------------------------------------------------------------------

def _cursor(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode("utf-8", "surrogatepass")).decode().rstrip("=")


SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]
TEXT = [
    "", " ", "\x00", "a\x00b", *SURROGATES, "x\ud800y", "\ud83d\ude00", "é", "'", '"', "%", "_", "\\",
    "\r\n", "a\r\nBcc: x@rival.example", "\t", "\u2028", "\u202e", "Robert'); DROP TABLE app_user;--",
    "a" * 201, "b" * 501, "c" * 1000, "x" * 100_001, "y" * 1_000_000, "²", "١٢", "0", "-1", "9" * 30,
    "null", "<b>hi</b>", "ß" * 300,
]
EMAILS = [
    "jane@globex.example", "Jane <jane@globex.example>", "rep@acme.test", "admin@acme.test",
    "@", "a@", "a@b", "a@-b.example", "a" * 300 + "@x.example", "é@ü.example",
    "a@b.example, c@d.example", "x@[127.0.0.1]", "a@b.example\r\nBcc: c@d.example",
]
HOSTS = ["imap.globex.example", "127.0.0.1", "localhost", "[::1]", "10.0.0.1", "169.254.169.254",
         "imaps://x.example", "x.example:993", "-x.example", "a" * 300 + ".example", "xn--", "::ffff:7f00:1"]
DOMAINS = ["globex.example", "acme.test", "*.example", ".", "a..b", "-a.example", "a" * 64 + ".example",
           "localhost", "127.0.0.1", "ACME.TEST."]
CURSORS = [
    "", "=", "!!", "AAAA", _cursor("|"), _cursor("2024-01-01T00:00:00+00:00|1"),
    _cursor("2024-01-01T00:00:00|1"), _cursor("0001-01-01T00:00:00+14:00|1"),
    _cursor("9999-12-31T23:59:59-14:00|1"), _cursor("2024-01-01T00:00:00+00:00|" + str(2**63)),
    _cursor("2024-01-01T00:00:00+00:00|" + str(2**31)), _cursor("2024-01-01T00:00:00+00:00|-1"),
    _cursor("2024-01-01T00:00:00+00:00|²"), _cursor("2024-01-01T00:00:00+00:00|\x00"),
    _cursor("2024-01-01T00:00:00+00:00|1|2"), _cursor("\ud800|1"), "x" * 10_000,
]
CSVS = [
    "last_name\nDoe", "email,last_name\nann@x.example,Ann\nbob@x.example", "name,company\nDoe," + "x" * 131_073,
    'name\n"unterminated', "", ",,,", "last_name,last_name\nA,B", "last_name\nA,B,C", "\ufeffname\nDoe",
    "name\r\nDoe\r\n", "name\n" + "Doe\n" * 10_001, "name,phone\nDoe,1",
]
IDS = ["0", "1", "2", "3", "4", "5", "", " 1 ", "-1", "1.0", "0x10", "1e3", "²", "١٢", "9" * 30,
       str(2**31 - 1), str(2**31), str(2**63 - 1), str(2**63), "\x00", "\ud800"]
INTS = [0, 1, -1, 2, 50, 100, 101, 200, 201, 10_000, 2**31 - 1, -(2**31), 2**31, 2**63, -(2**63) - 1, 10**30]
BASE64 = ["aGk=", "%%%", "", "=", "aGk", "a" * 4_000, "aGk=\n"]
CONTENT_TYPES = ["text/plain", "application/pdf", "text/plain\r\nBcc: x@rival.example", "pdf", "text/", "/"]
PROVIDERS = ["gmail", "outlook", "office365", "yahoo", "zoho_mail", "custom_imap", "GMAIL", "nope"]

HOSTILE_BY_NAME = {
    "after": CURSORS, "csv": CSVS, "host": HOSTS, "domain": DOMAINS, "contentBase64": BASE64,
    "contentType": CONTENT_TYPES, "provider": PROVIDERS, "key": PROVIDERS,
}
# What a well-behaved client sends, so that the other arguments of an operation get past
# their checks and the hostile one reaches deep.
BENIGN_BY_NAME = {
    "after": [_cursor("2024-01-02T00:00:00+00:00|2")], "csv": ["last_name\nDoe", "name,email\nAnn,ann@x.example"],
    "host": ["imap.globex.example", "smtp.globex.example"], "domain": ["globex.example", "initech.example"],
    "contentBase64": ["aGk="], "contentType": ["text/plain", "application/pdf"], "filename": ["notes.txt"],
    "provider": PROVIDERS[:6], "key": PROVIDERS[:6], "password": ["Zebra-Password-1"],
    "value": ["eu", "com", "in"], "subject": ["Hello"], "text": ["Hi Bob"], "html": ["<p>Hi</p>"],
}
for _name in ("email", "to", "cc", "bcc", "fromAddress", "address", "confirmEmail", "primaryEmail",
              "secondaryEmail", "username"):
    HOSTILE_BY_NAME[_name] = EMAILS
    BENIGN_BY_NAME[_name] = ["jane@globex.example", "rep@acme.test", "new@globex.example", "Ann <ann@x.example>"]

_odd_text = st.text(max_size=40) | st.builds(
    lambda a, s, b: a + s + b, st.text(max_size=5), st.sampled_from(SURROGATES), st.text(max_size=5))
_plain_text = st.sampled_from(["Doe", "Jane", "Globex", "INBOX", "Sent", "a"]) | st.text(
    alphabet="abcdefghijklmnopqrstuvwxyz ABC-.'", min_size=1, max_size=20)


def strings(name: str, hostile: bool) -> st.SearchStrategy[str]:
    """A hostile argument gets what breaks servers, or what its parser expects (so that the
    hostile part can be deep inside); a benign one what a well-behaved client sends."""
    benign = st.sampled_from(BENIGN_BY_NAME[name]) if name in BENIGN_BY_NAME else _plain_text
    if not hostile:
        return benign
    known = HOSTILE_BY_NAME.get(name)
    return (st.sampled_from(known) if known else st.nothing()) | st.sampled_from(TEXT) | _odd_text | benign


def _scalar(scalar: GraphQLScalarType, name: str, hostile: bool) -> st.SearchStrategy[Any]:
    if scalar.name == "ID":
        benign_id = st.sampled_from(["1", "2", "3"]) | st.integers(1, 5)
        return st.sampled_from(IDS) | strings(name, True) | benign_id if hostile else benign_id
    if scalar.name in ("Int", "BigInt"):
        benign_int = st.sampled_from([1, 10, 50]) | st.integers(0, 100)
        return st.sampled_from(INTS) | st.integers(-1000, 1000) if hostile else benign_int
    if scalar.name == "Float":
        return st.floats(allow_nan=False) | st.sampled_from(INTS) if hostile else st.floats(0, 100)
    if scalar.name == "Boolean":
        return st.booleans()
    return strings(name, hostile)


def values(type_: GraphQLInputType, name: str, hostile: bool) -> st.SearchStrategy[Any]:
    """Values for an input field of ``type_`` (``None`` only where nullable)."""
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
            {n: values(f.type, n, hostile) for n, f in fields.items() if _required(f)},
            optional={n: values(f.type, n, hostile) for n, f in fields.items() if not _required(f)},
        ))
    assert isinstance(type_, GraphQLScalarType), type_
    return _scalar(type_, name, hostile)


def _required(field: GraphQLInputField | GraphQLArgument) -> bool:
    return isinstance(field.type, GraphQLNonNull) and field.default_value is Undefined


# --- Operations ------------------------------------------------------------------------------

@dataclass
class Variable:
    name: str  # in the document
    argument: str  # the argument it feeds, for the choice of values
    type: GraphQLInputType
    has_default: bool

    @property
    def declared(self) -> str:
        """Its type in the document: nullable when the argument has a default, so that
        leaving the variable out means "the default"."""
        if self.has_default and isinstance(self.type, GraphQLNonNull):
            return str(self.type.of_type)
        return str(self.type)

    def values(self, hostile: bool) -> st.SearchStrategy[Any]:
        """Its value, or :data:`OMIT`; ``None`` only where the argument is nullable."""
        value = values(self.type, self.argument, hostile)
        if isinstance(self.type, GraphQLNonNull) and not self.has_default:
            return value
        return st.just(OMIT) | value


def _arguments(field: GraphQLField, variables: list[Variable]) -> str:
    if not field.args:
        return ""
    parts = []
    for arg_name, arg in field.args.items():
        var = Variable(f"v{len(variables)}", arg_name, arg.type, arg.default_value is not Undefined)
        variables.append(var)
        parts.append(f"{arg_name}: ${var.name}")
    return "(" + ", ".join(parts) + ")"


def _has_arguments_within(type_: Any, depth: int) -> bool:
    named = get_named_type(type_)
    if depth > MAX_DEPTH or not isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
        return False
    return any(f.args or _has_arguments_within(f.type, depth + 1) for f in named.fields.values())


def _selection(type_: Any, depth: int, variables: list[Variable]) -> str:
    """Leaf fields of the type, plus the fields on the way to fields with arguments."""
    named = get_named_type(type_)
    if is_leaf_type(named):
        return ""
    parts = ["__typename"]
    if isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
        for name, field in named.fields.items():
            if is_leaf_type(get_named_type(field.type)):
                parts.append(name + _arguments(field, variables))
            elif depth < MAX_DEPTH and (field.args or _has_arguments_within(field.type, depth + 1)):
                arguments = _arguments(field, variables)
                parts.append(f"{name}{arguments} {_selection(field.type, depth + 1, variables)}")
    return "{ " + " ".join(parts) + " }"


@dataclass
class Operation:
    field: str
    document: str
    variables: list[Variable]

    def variable_values(self) -> st.SearchStrategy[dict[str, Any]]:
        """Benign values for every variable but one hostile one (or none, or all of them)."""
        return st.sampled_from([None, "one", "one", "one", "all"]).flatmap(self._with_hostility)

    def _with_hostility(self, mode: str | None) -> st.SearchStrategy[dict[str, Any]]:
        if mode == "one" and self.variables:
            return st.sampled_from(self.variables).flatmap(lambda focus: self._values(lambda v: v is focus))
        return self._values(lambda _: mode == "all")

    def _values(self, hostile: Any) -> st.SearchStrategy[dict[str, Any]]:
        drawn = st.fixed_dictionaries({v.name: v.values(hostile(v)) for v in self.variables})
        return drawn.map(lambda found: {k: v for k, v in found.items() if v is not OMIT})


def operation(kind: str, name: str) -> Operation:
    root = SCHEMA.query_type if kind == "query" else SCHEMA.mutation_type
    assert root is not None
    field = root.fields[name]
    variables: list[Variable] = []
    text = name + _arguments(field, variables) + " " + _selection(field.type, 1, variables)
    declared = ", ".join(f"${v.name}: {v.declared}" for v in variables)
    return Operation(name, f"{kind}{f'({declared})' if declared else ''} {{ {text} }}", variables)


ROOT_FIELDS = [("query", n) for n in SCHEMA.query_type.fields] + [  # type: ignore[union-attr]
    ("mutation", n) for n in SCHEMA.mutation_type.fields  # type: ignore[union-attr]
]


# --- The running app, seeded --------------------------------------------------------------------

@dataclass
class Server:
    runner: asyncio.Runner
    http: httpx.AsyncClient
    tokens: dict[str, str]  # by profile


async def _seed(settings: Settings) -> dict[str, str]:
    admin = await create_user(None, email="admin@acme.test", name="Ada Admin", profile=Profile.ADMIN)
    rep = await create_user(admin, email="rep@acme.test", name="Rex Rep")
    account = await write_account(rep, "CUSTOM", rep.email)
    secret = SecretBox.from_settings(settings).encrypt("Zebra-Password-1")
    await MailAccount.filter(id=account.id).update(imap_secret=secret, smtp_secret=secret)
    await FromAddress.create(account=account, address=rep.email, name="Rex", is_default=True)
    for uid in range(1, 4):
        await write_message(account, uid, datetime(2024, 1, uid, tzinfo=UTC), [
            (AddressRole.FROM, "jane@globex.example", True), (AddressRole.TO, rep.email, False)])
    await create_record(rep, RecordKind.LEAD, RecordInput(last_name="Doe", primary_email="jane@globex.example"))
    await create_record(admin, RecordKind.CONTACT, RecordInput(last_name="Roe", primary_email="jane@globex.example"))
    return {"ADMIN": (await issue_token(admin, "fuzz"))[1], "STANDARD": (await issue_token(rep, "fuzz"))[1]}


@pytest.fixture(scope="module")
def server(template_database: TemplateDatabase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The app on a seeded database of its own, in an event loop of our own (hypothesis
    tests are synchronous). The SSRF guard is on: no mail server is ever reached."""
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    with asyncio.Runner() as runner:
        url = runner.run(template_database.clone(workdir))
        settings = Settings(data_dir=workdir / "data", database_url=url, secret_key=generate_key(),
                            mail_timeout=2.0, sync_enabled=False, allow_private_hosts=False)
        database = open_database(settings, apply_migrations=False)
        runner.run(database.__aenter__())
        try:
            tokens = runner.run(_seed(settings))
            app = create_app(settings, open_db=False)
            lifespan = app.router.lifespan_context(app)
            runner.run(lifespan.__aenter__())
            http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
            try:
                yield Server(runner, http, tokens)
            finally:
                runner.run(http.aclose())
                runner.run(lifespan.__aexit__(None, None, None))
        finally:
            runner.run(database.__aexit__(None, None, None))
            runner.run(template_database.drop_clone(url))


class _Rollback(Exception):
    pass


async def _send(server: Server, profile: str, document: str, variables: dict[str, Any]) -> httpx.Response:
    """One operation in a transaction that is rolled back: every example sees the seed."""
    response: httpx.Response | None = None
    try:
        async with in_transaction():
            response = await server.http.post(
                "/graphql",
                # json.dumps escapes lone surrogates (\ud800), as a browser's JSON.stringify does
                content=json.dumps({"query": document, "variables": variables}),
                headers={"Authorization": f"Bearer {server.tokens[profile]}", "Content-Type": "application/json"},
            )
            raise _Rollback
    except _Rollback:
        pass
    finally:
        token_cache.clear()  # it may remember a user changed by the rolled-back operation
    assert response is not None
    return response


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:2000]
    body = response.json()
    for error in body.get("errors") or ():
        code = (error.get("extensions") or {}).get("code")
        event(f"error code {code}")
        assert code and code != "INTERNAL_ERROR", error
    if not body.get("errors"):
        event("no error")


@pytest.mark.parametrize("profile", ["ADMIN", "STANDARD"])
@pytest.mark.parametrize(("kind", "name"), ROOT_FIELDS, ids=[f"{k}.{n}" for k, n in ROOT_FIELDS])
def test_hostile_arguments_get_typed_errors(server: Server, kind: str, name: str, profile: str) -> None:
    op = operation(kind, name)

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None, print_blob=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(variables=op.variable_values())
    def fuzz(variables: dict[str, Any]) -> None:
        _check(server.runner.run(_send(server, profile, op.document, variables)))

    fuzz()
