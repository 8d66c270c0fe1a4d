"""Fuzz every argument of every query and mutation: hostile input must get a typed error.

For each root field of ``Query`` and ``Mutation`` an operation is built from the schema by
introspection: every argument is a variable, and the selection takes the leaf fields of the
result plus the fields on the way to nested fields with arguments (``leads { items {
emails(first:, after:, sharedBy:) … } }``), whose arguments are variables too. Values come
from ``tests/graphql_inputs.py``: a sweep of every killer value at every slot (NUL, lone
surrogates, 100,001 characters, CR/LF, IDs "²"/2³¹/2⁶³, 32-bit extremes, broken cursors and
CSV), then :data:`EXAMPLES` hypothesis examples with larger pools (1 MB strings, odd base64
cursors, out-of-range numbers…). Each operation goes through the real ASGI app over HTTP, as
an admin and as a standard user, against a seeded database (users, a lead, a contact, a mail
account with linked mail); the test fails on a 5xx or an ``INTERNAL_ERROR``. Each request runs
in a transaction rolled back afterwards, so that examples are independent and reproducible.

Runs are derandomized (the same inputs every run). A failing swept value is reported as a
"falsifying explicit example"; a failing generated one is shrunk and printed with a
``@reproduce_failure`` blob. Mail servers are never reached: private hosts are refused (the
SSRF guard is on, and every name resolves to a loopback address here).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx2 as httpx
import pytest
from graphql import GraphQLField, GraphQLInterfaceType, GraphQLObjectType, get_named_type, is_leaf_type
from graphql.pyutils import Undefined
from hypothesis import HealthCheck, example, given, settings
from tortoise.transactions import in_transaction

from salesinbox.core.credentials import SecretBox, generate_key
from salesinbox.core.crm.api_tokens import issue_token, token_cache
from salesinbox.core.crm.records import RecordInput, create_record
from salesinbox.core.crm.users import create_user
from salesinbox.core.db.connection import open_database
from salesinbox.core.db.models import AddressRole, FromAddress, MailAccount, Profile, RecordKind
from salesinbox.core.settings import Settings
from salesinbox.core.transport import netguard
from salesinbox.schema.asgi_app import create_app
from salesinbox.schema.graphql_schema import build_schema

from .database import TemplateDatabase
from .graphql_inputs import Variable, sweep, variables
from .test_policy import write_account, write_message

pytestmark = pytest.mark.db

#: Generated examples per root field and profile, on top of the sweep.
EXAMPLES = 10
SCHEMA = build_schema()._schema
MAX_DEPTH = 3  # root field, a page, its items: deep enough for CrmRecord.emails(after:)


# --- Operations from the schema ----------------------------------------------------------------

def _arguments(field: GraphQLField, declared: list[Variable]) -> str:
    if not field.args:
        return ""
    parts = []
    for name, argument in field.args.items():
        variable = Variable(f"v{len(declared)}", name, argument.type, argument.default_value is not Undefined)
        declared.append(variable)
        parts.append(f"{name}: ${variable.name}")
    return "(" + ", ".join(parts) + ")"


def _has_arguments_within(type_: Any, depth: int) -> bool:
    named = get_named_type(type_)
    if depth > MAX_DEPTH or not isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
        return False
    return any(f.args or _has_arguments_within(f.type, depth + 1) for f in named.fields.values())


def _selection(type_: Any, depth: int, declared: list[Variable]) -> str:
    """Leaf fields of the type, plus the fields on the way to fields with arguments."""
    named = get_named_type(type_)
    if is_leaf_type(named):
        return ""
    parts = ["__typename"]
    if isinstance(named, GraphQLObjectType | GraphQLInterfaceType):
        for name, field in named.fields.items():
            if is_leaf_type(get_named_type(field.type)):
                parts.append(name + _arguments(field, declared))
            elif depth < MAX_DEPTH and (field.args or _has_arguments_within(field.type, depth + 1)):
                arguments = _arguments(field, declared)
                parts.append(f"{name}{arguments} {_selection(field.type, depth + 1, declared)}")
    return "{ " + " ".join(parts) + " }"


@dataclass
class Operation:
    document: str
    variables: list[Variable]


def operation(kind: str, name: str) -> Operation:
    """``query``/``mutation`` of the root field ``name`` with every argument a variable."""
    root = SCHEMA.query_type if kind == "query" else SCHEMA.mutation_type
    assert root is not None
    field = root.fields[name]
    declared: list[Variable] = []
    text = name + _arguments(field, declared) + " " + _selection(field.type, 1, declared)
    signature = ", ".join(f"${v.name}: {v.declared}" for v in declared)
    return Operation(f"{kind}{f'({signature})' if signature else ''} {{ {text} }}", declared)


ROOT_FIELDS = [("query", n) for n in SCHEMA.query_type.fields] + [
    ("mutation", n) for n in SCHEMA.mutation_type.fields
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


class _LoopbackDns:
    """The ``socket`` module as netguard sees it here: every name resolves to 127.0.0.1, which
    the SSRF guard (on) refuses. Provider presets name real servers: none is ever contacted."""

    def __getattr__(self, name: str) -> Any:
        return getattr(socket, name)

    @staticmethod
    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", port))]


@pytest.fixture(scope="module")
def server(template_database: TemplateDatabase, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The app on a seeded database of its own, in an event loop of our own (hypothesis
    tests are synchronous), with no way to reach a mail server (:class:`_LoopbackDns`)."""
    workdir = tmp_path_factory.mktemp("fuzz")
    with asyncio.Runner() as runner, pytest.MonkeyPatch.context() as patch:
        patch.setattr(netguard, "socket", _LoopbackDns())
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


async def _send(server: Server, profile: str, document: str, values: dict[str, Any]) -> httpx.Response:
    """One operation in a transaction that is rolled back: every example sees the seed."""
    response: httpx.Response | None = None
    try:
        async with in_transaction():
            response = await server.http.post(
                "/graphql",
                # json.dumps escapes lone surrogates (\ud800), as a browser's JSON.stringify does
                content=json.dumps({"query": document, "variables": values}),
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
    for error in response.json().get("errors") or ():
        code = (error.get("extensions") or {}).get("code")
        assert code and code != "INTERNAL_ERROR", error


@pytest.mark.parametrize("profile", ["ADMIN", "STANDARD"])
@pytest.mark.parametrize(("kind", "name"), ROOT_FIELDS, ids=[f"{k}.{n}" for k, n in ROOT_FIELDS])
def test_hostile_arguments_get_typed_errors(server: Server, kind: str, name: str, profile: str) -> None:
    op = operation(kind, name)

    def fuzz(values: dict[str, Any]) -> None:
        _check(server.runner.run(_send(server, profile, op.document, values)))

    test = given(values=variables(op.variables))(fuzz)
    for swept in sweep(op.variables):
        test = example(values=swept)(test)
    settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None, print_blob=True,
             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
             )(test)()
