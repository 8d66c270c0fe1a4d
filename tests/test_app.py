"""The HTTP surface: authentication, typed and masked errors, limits, health, SDL snapshot."""

from __future__ import annotations

import logging
from typing import Any

import httpx2 as httpx
import pytest
from strawberry.schema import schema as strawberry_schema

from salesinbox.core.db.models import User
from salesinbox.core.settings import Settings
from salesinbox.schema import records as records_module
from salesinbox.schema.asgi_app import create_app
from salesinbox.schema.graphql_schema import SDL_PATH, export_sdl

from .conftest import GraphQLClient


async def test_operations_without_token_are_refused(api: GraphQLClient) -> None:
    error = await api.error("{ me { email } }")
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "Authorization: Bearer" in error["message"]


async def test_introspection_needs_a_token(api: GraphQLClient, rep_token: str) -> None:
    error = await api.error("{ __schema { queryType { name } } }")
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    data = await api.ok("{ __schema { queryType { name } } }", token=rep_token)
    assert data["__schema"]["queryType"]["name"] == "Query"


async def test_bad_token_and_bad_scheme(api: GraphQLClient) -> None:
    error = await api.error("{ me { email } }", token="sit_not-a-real-token")
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    response = await api.http.post("/graphql", json={"query": "{ me { email } }"},
                                   headers={"Authorization": "Basic abc"})
    assert response.json()["errors"][0]["message"].startswith("The Authorization header")


async def test_deactivated_user_is_refused(api: GraphQLClient, admin_token: str, rep: User, rep_token: str) -> None:
    await api.ok("mutation($id: ID!) { updateUser(id: $id, input: {isActive: false}) { isActive } }",
                 {"id": str(rep.id)}, token=admin_token)
    error = await api.error("{ me { email } }", token=rep_token)
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "deactivated" in error["message"]


async def test_unexpected_errors_are_masked_and_logged(
    api: GraphQLClient, rep_token: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals at /srv/db password=hunter2")

    monkeypatch.setattr(records_module.records, "list_records", broken)
    with caplog.at_level(logging.ERROR, logger="salesinbox.api"):
        error = await api.error("{ leads { total } }", token=rep_token)
    assert error["message"] == "Internal server error."
    assert error["extensions"] == {"code": "INTERNAL_ERROR"}
    assert "hunter2" in caplog.text  # the operator still sees what went wrong


async def test_depth_limit(db: Settings, rep_token: str) -> None:
    shallow = create_app(db.with_overrides(max_query_depth=1), open_db=False)
    async with shallow.router.lifespan_context(shallow):
        transport = httpx.ASGITransport(app=shallow)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            client = GraphQLClient(http)
            assert await client.ok("{ leads { total } }", token=rep_token)
            error = await client.error("{ leads { items { id } } }", token=rep_token)
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "depth" in error["message"]


async def test_alias_limit(api: GraphQLClient, rep_token: str) -> None:
    aliases = " ".join(f"a{i}: me {{ id }}" for i in range(40))
    error = await api.error("{ " + aliases + " }", token=rep_token)
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_token_limit(api: GraphQLClient, rep_token: str) -> None:
    error = await api.error("{ " + "me { id } " * 1000 + "}", token=rep_token)
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_syntax_error_is_typed(api: GraphQLClient, rep_token: str) -> None:
    error = await api.error("{ me { ", token=rep_token)
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_get_cannot_run_operations(api: GraphQLClient, rep_token: str) -> None:
    response = await api.http.get("/graphql", params={"query": "{ me { id } }"},
                                  headers={"Authorization": f"Bearer {rep_token}", "Accept": "application/json"})
    assert response.status_code in (400, 405)


async def test_healthz(api: GraphQLClient) -> None:
    response = await api.http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


async def test_graphiql_page_is_served_without_token(api: GraphQLClient) -> None:
    response = await api.http.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "/static/graphiql/" in response.text
    assert "unpkg.com" not in response.text


def test_sdl_snapshot_is_current() -> None:
    assert SDL_PATH.read_text(encoding="utf-8") == export_sdl(), (
        "schema/schema.graphql is stale: run `salesinbox export-schema`"
    )


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every query text strawberry's parser is given from now on."""
    texts: list[str] = []
    parse = strawberry_schema.parse

    def counting_parse(source: str, **options: Any) -> object:
        texts.append(source)
        return parse(source, **options)

    monkeypatch.setattr(strawberry_schema, "parse", counting_parse)
    return texts


async def test_a_repeated_query_is_parsed_once_and_syntax_errors_stay_typed(
    api: GraphQLClient, rep_token: str, parsed: list[str]
) -> None:
    query = "{ me { id name } }"
    for _ in range(3):
        assert (await api.ok(query, token=rep_token))["me"]["name"]
    assert parsed.count(query) == 1
    for _ in range(2):  # never cached: parsed (and refused) each time, with its code
        error = await api.error("{ me { ", token=rep_token)
        assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED" and "Syntax Error" in error["message"]
    assert parsed.count("{ me { ") == 2


async def test_the_parse_cache_is_bounded(api: GraphQLClient, rep_token: str, parsed: list[str]) -> None:
    texts = [f"{{ q{i}: me {{ id }} }}" for i in range(257)]  # one more than the cache holds
    for text in texts:
        await api.ok(text, token=rep_token)
    await api.ok(texts[-1], token=rep_token)  # the newest is still kept…
    await api.ok(texts[0], token=rep_token)   # …the oldest was dropped: parsed again
    assert parsed.count(texts[-1]) == 1 and parsed.count(texts[0]) == 2
