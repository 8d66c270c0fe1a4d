"""The GraphQL views against the reference model of docs/sharing.md, on generated organisations:
each user, with their own token, sees exactly the model's mail in every related list, in
their SalesInbox, and message by message; and explainVisibility answers each of them, for
every message, what the model says they are told: a message they may not know of gets the
very response body a missing id gets."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx2 as httpx
import pytest
from hypothesis import HealthCheck, given, settings
from tortoise.transactions import in_transaction

from salesinbox.core.crm.api_tokens import issue_token
from salesinbox.core.db.connection import open_database
from salesinbox.core.settings import Settings
from salesinbox.schema.asgi_app import create_app

from . import policy_model as model
from .conftest import GraphQLClient
from .test_policy import Scenario, scenarios, write


class _Rollback(Exception):
    pass


@pytest.fixture
def api_runner(settings: Settings) -> Iterator[tuple[asyncio.Runner, GraphQLClient]]:
    """A loop of our own with the database, the app and an HTTP client, for hypothesis."""
    with asyncio.Runner() as runner:
        database = open_database(settings, apply_migrations=False)
        runner.run(database.__aenter__())
        app = create_app(settings, open_db=False)
        lifespan = app.router.lifespan_context(app)
        runner.run(lifespan.__aenter__())
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")
        try:
            yield runner, GraphQLClient(http)
        finally:
            runner.run(http.aclose())
            runner.run(lifespan.__aexit__(None, None, None))
            runner.run(database.__aexit__(None, None, None))


RELATED = "query($id: ID!) { %s(id: $id) { emails(first: 100) { items { id } } } }"
EXPLAIN = "query($id: ID!) { explainVisibility(messageId: $id) { visible code reason } }"


async def _check(api: GraphQLClient, scenario: Scenario) -> None:
    world = scenario.world
    db = await write(scenario)
    back = {v: k for k, v in db.messages.items()}
    for user in world.users:
        token = (await issue_token(db.users[user.id], "t"))[1]
        expected = model.visible_messages(world, user.id)
        missing = await api.post(EXPLAIN, {"id": str(max(db.messages.values(), default=0) + 1000)}, token=token)
        for message in world.messages:
            told = model.explanation_told(world, user.id, message, user.id)
            body = await api.post(EXPLAIN, {"id": str(db.messages[message.id])}, token=token)
            if told == "not_found":
                assert body == missing, (user.id, message.id)
            else:
                assert body["data"]["explainVisibility"]["code"] == told, (user.id, message.id)
        # (the records are all the main organisation's: another one's users may not open them)
        for record in (world.records if user.organisation == "main" else []):
            field = "lead" if record.kind == "LEAD" else "contact"
            data = await api.ok(RELATED % field, {"id": str(db.records[record.id])}, token=token)
            got = {back[int(item["id"])] for item in data[field]["emails"]["items"]}
            linked = {m.id for m in world.messages if record in model.records_linked_to(world, m)}
            assert got == expected & linked, (user.id, record.id)
        inbox = await api.ok("{ salesInbox(first: 100) { items { id } } }", token=token)
        own = {m.id for m in world.messages if model.account_of(world, m).owner == user.id}
        assert {back[int(i["id"])] for i in inbox["salesInbox"]["items"]} == own
        for message in world.messages:
            body = await api.post("query($id: ID!) { message(id: $id) { id } }",
                                  {"id": str(db.messages[message.id])}, token=token)
            if message.id in expected:
                assert body["data"]["message"]["id"] == str(db.messages[message.id])
            else:
                assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def _example(api: GraphQLClient, scenario: Scenario) -> None:
    try:
        async with in_transaction():
            await _check(api, scenario)
            raise _Rollback
    except _Rollback:
        pass


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(scenario=scenarios())
def test_graphql_views_agree_with_the_model(api_runner: tuple[asyncio.Runner, GraphQLClient],
                                            scenario: Scenario) -> None:
    runner, api = api_runner
    runner.run(_example(api, scenario))
