"""Shared fixtures: settings, a fresh migrated database per test, users with tokens, the app."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from starlette.applications import Starlette

from salesinbox.core.credentials import SecretBox, generate_key
from salesinbox.core.crm.api_tokens import issue_token, token_cache
from salesinbox.core.crm.users import create_user
from salesinbox.core.db.connection import open_database
from salesinbox.core.db.models import Profile, User
from salesinbox.core.plugin_host.plugins import get_plugin_manager
from salesinbox.core.plugin_host.provider_registry import ProviderRegistry
from salesinbox.core.settings import Settings
from salesinbox.core.sync.engine import SyncServices
from salesinbox.core.sync.events import EventBus
from salesinbox.core.transport.server_login import ConnectPolicy
from salesinbox.schema.asgi_app import create_app
from salesinbox.schema.graphql_schema import SalesInboxSchema, build_schema

from .database import TemplateDatabase, configured_backend
from .faults import FAULTS
from .field_coverage import FieldCoverage
from .servers.certs import CertBundle

pytest_plugins = ["tests.servers.fixtures"]


def pytest_report_header() -> str:
    return f"salesinbox database backend: {configured_backend()}"


# Every GraphQL field must be selected by some test (tests/field_coverage.py).
_field_coverage = FieldCoverage()
_deselected = 0


def pytest_configure(config: pytest.Config) -> None:
    for name in ("execute", "subscribe", "stream"):  # HTTP, schema.subscribe, WebSocket
        original = getattr(SalesInboxSchema, name)

        @functools.wraps(original)
        def recording(self: SalesInboxSchema, query: str | None, *args: object, _original=original,
                      **kwargs: object) -> object:
            _field_coverage.record(query)
            return _original(self, query, *args, **kwargs)

        setattr(SalesInboxSchema, name, recording)
        config.add_cleanup(functools.partial(setattr, SalesInboxSchema, name, original))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    line = FAULTS.summary()
    if line:
        terminalreporter.write_line(line)


def pytest_deselected(items: list[pytest.Item]) -> None:
    global _deselected
    _deselected += len(items)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After a complete, green run of the whole suite, fail it if a GraphQL field went untested."""
    config = session.config
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    # Tests of PostgreSQL's own mechanisms skip on SQLite by design; any other skip means
    # some test did not run, and the coverage of the fields cannot be judged.
    skipped = [r for r in (reporter.stats.get("skipped", []) if reporter else [])
               if "postgres_only" not in r.keywords]
    complete = (
        exitstatus == pytest.ExitCode.OK and _deselected == 0 and not config.option.keyword
        and config.args_source != pytest.Config.ArgsSource.ARGS
        and not skipped
    )
    if not complete:
        return
    missing = _field_coverage.missing(build_schema()._schema)
    if missing:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if reporter:
            reporter.write_line(f"GraphQL fields that no test selects ({len(missing)}): {', '.join(missing)}", red=True)
    elif reporter:
        reporter.write_line("field coverage: every GraphQL field is selected by some test")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test that touches the database is marked, so the PostgreSQL run can select them.
    on_sqlite = configured_backend() == "sqlite"
    for item in items:
        if on_sqlite and item.get_closest_marker("postgres_only"):
            item.add_marker(pytest.mark.skip(reason="tests a PostgreSQL mechanism"))
        if "database_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.db)


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> Iterator[None]:
    """Each test starts with the process-wide token cache empty (its databases are new)."""
    token_cache.clear()
    token_cache.ttl = 5.0
    yield
    token_cache.clear()


@pytest.fixture(scope="session")
def template_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemplateDatabase]:
    workdir = tmp_path_factory.mktemp("db-template")
    template = asyncio.run(TemplateDatabase.create(workdir))
    yield template
    asyncio.run(template.destroy())


@pytest.fixture
async def database_url(template_database: TemplateDatabase, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a fresh, migrated database for this test only."""
    url = await template_database.clone(tmp_path)
    yield url
    await template_database.drop_clone(url)


@pytest.fixture
def settings(database_url: str, tmp_path: Path, server_certs: CertBundle) -> Settings:
    """Settings for one test: its own data dir and database, a fixed key, the test servers'
    CA trusted, private (loopback) hosts allowed, and no background sync unless a test
    turns it on."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key=generate_key(),
        allow_private_hosts=True,
        extra_ca_file=server_certs.ca_cert,
        mail_timeout=5.0,
        sync_enabled=False,
    )


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Settings]:
    """The ORM connected to this test's database (for tests of the core)."""
    async with open_database(settings, apply_migrations=False):
        yield settings


@pytest.fixture
def services(db: Settings) -> SyncServices:
    """What the sync engine needs, with the built-in plugins only and a private event bus."""
    return SyncServices(
        secrets=SecretBox.from_settings(db),
        registry=ProviderRegistry(get_plugin_manager(load_entrypoints=False)),
        policy=ConnectPolicy.from_settings(db),
        events=EventBus(),
    )


@pytest.fixture
async def admin(db: Settings) -> User:
    return await create_user(None, email="admin@acme.test", name="Ada Admin", profile=Profile.ADMIN)


@pytest.fixture
async def rep(admin: User) -> User:
    return await create_user(admin, email="rep@acme.test", name="Rex Rep")


@pytest.fixture
async def other_rep(admin: User) -> User:
    return await create_user(admin, email="other@acme.test", name="Olga Other")


@pytest.fixture
async def admin_token(admin: User) -> str:
    return (await issue_token(admin, "tests"))[1]


@pytest.fixture
async def rep_token(rep: User) -> str:
    return (await issue_token(rep, "tests"))[1]


class GraphQLClient:
    """Posts GraphQL operations to the app in-process, as a frontend would over HTTP."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def post(self, query: str, variables: dict | None = None, token: str | None = None) -> dict:
        """Return the whole JSON response (``data`` and ``errors``)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def ok(self, query: str, variables: dict | None = None, token: str | None = None) -> dict:
        """Return ``data``, failing the test if there are errors."""
        body = await self.post(query, variables, token)
        assert "errors" not in body, body["errors"]
        return body["data"]

    async def error(self, query: str, variables: dict | None = None, token: str | None = None) -> dict:
        """Return the single error of a failing operation."""
        body = await self.post(query, variables, token)
        assert body.get("errors"), f"expected an error, got {body}"
        assert len(body["errors"]) == 1, body["errors"]
        return body["errors"][0]


@pytest.fixture
async def app(db: Settings) -> AsyncIterator[Starlette]:
    application = create_app(db, open_db=False)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def api(app: Starlette) -> AsyncIterator[GraphQLClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield GraphQLClient(http)
