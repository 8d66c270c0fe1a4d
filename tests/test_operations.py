"""What an operator watches: /metrics (Prometheus) after real GraphQL requests and a real sync
against Dovecot, its token, /readyz against a database missing a migration, the sync's log
lines, JSON logs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import httpx2 as httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from tortoise import connections

from salesinbox.core.db.connection import pending_migrations, shipped_migrations
from salesinbox.core.db.models import MailAccount, SyncState, User
from salesinbox.core.errors import SalesInboxError
from salesinbox.core.log_limits import JsonFormatter
from salesinbox.core.settings import Settings
from salesinbox.core.sync.engine import SyncServices
from salesinbox.schema import metrics_instrumentation
from salesinbox.schema.asgi_app import create_app

from .served import serve
from .servers.messages import generate_messages
from .test_idle import TIMING, watching
from .test_oauth_tokens import signed_in, wait_until_expired
from .test_sync import connect

if TYPE_CHECKING:
    from .servers.fixtures import MailAccount as TestMailbox
    from .servers.oauth import OAuthServer

METRICS_TOKEN = "scrape-me-0123456789abcdef"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by (name, labels)."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
async def ops_app(db: Settings) -> AsyncIterator[Starlette]:
    application = create_app(db.with_overrides(metrics_token=METRICS_TOKEN), open_db=False)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(ops_app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ops_app), base_url="http://t") as client:
        yield client


async def scrape(http: httpx.AsyncClient) -> Samples:
    response = await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def graphql(http: httpx.AsyncClient, body: object, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await http.post("/graphql", json=body, headers=headers)


# -- /metrics: who may read it -------------------------------------------------------------------


async def test_metrics_are_off_unless_a_token_is_set(api: object, app: Starlette) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for headers in ({}, {"Authorization": "Bearer anything-at-all-1234567"}):
            response = await client.get("/metrics", headers=headers)
            assert response.status_code == 404
            error = response.json()["errors"][0]
            assert error["extensions"]["code"] == "NOT_FOUND" and "SALESINBOX_METRICS_TOKEN" in error["message"]


async def test_metrics_need_the_bearer_token(http: httpx.AsyncClient, rep_token: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": METRICS_TOKEN},
                    {"Authorization": f"Bearer {rep_token}"}):  # an API token opens the API, not this
        response = await http.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
        assert METRICS_TOKEN not in response.text
    assert (await http.get("/metrics", headers={"Authorization": f"bearer {METRICS_TOKEN}"})).status_code == 200


@pytest.mark.parametrize(("variable", "raw"), [("SALESINBOX_METRICS_TOKEN", "short-secret"),
                                               ("SALESINBOX_LOG_FORMAT", "xml"),
                                               ("SALESINBOX_SYNC_RUNNER", "celery"),
                                               ("SALESINBOX_WORKER_SYNC_CONCURRENCY", "0")])
def test_bad_operations_settings_are_refused(variable: str, raw: str) -> None:
    with pytest.raises(SalesInboxError) as caught:
        Settings.from_env({variable: raw})
    assert caught.value.field == variable
    if variable == "SALESINBOX_METRICS_TOKEN":
        assert raw not in caught.value.message  # a secret, even a bad one, is not repeated


# -- /metrics: what it says after real requests ---------------------------------------------------


async def test_requests_operations_and_errors_are_counted(http: httpx.AsyncClient, rep_token: str) -> None:
    before = await scrape(http)
    for _ in range(3):
        assert (await graphql(http, {"query": "query Me { me { id } }"}, rep_token)).json()["data"]
    assert (await graphql(http, {"query": "{ me { id } }"}, rep_token)).json()["data"]
    two = "query First { me { id } } query Second { me { email } }"
    assert (await graphql(http, {"query": two, "operationName": "Second"}, rep_token)).json()["data"]
    refused = await graphql(http, {"query": "query SneakyName { me { id } }"})  # no token
    assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    invalid = await graphql(http, {"query": "query Broken { me { nope } }"}, rep_token)
    assert invalid.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    unlisted = await graphql(http, {"query": "query Listed { me { id } }", "operationName": "Unlisted"}, rep_token)
    assert unlisted.status_code == 400  # refused before it runs: no operation, a BAD_REQUEST
    not_json = await http.post("/graphql", content=b"{", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400
    assert (await http.get("/messages/1/original")).status_code == 401
    assert (await http.get("/no/such/path")).status_code == 404
    after = await scrape(http)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ops = "salesinbox_graphql_operations_total"
    assert delta(ops, operation="Me", type="query") == 3
    assert delta("salesinbox_graphql_operation_duration_seconds_count", operation="Me", type="query") == 3
    assert delta(ops, operation="anonymous", type="query") == 1
    assert delta(ops, operation="Second", type="query") == 1
    assert delta(ops, operation="Broken", type="query") == 1
    assert delta(ops, operation="unauthenticated", type="query") == 1  # its name is not kept
    names = {dict(labels).get("operation") for (_, labels) in after}
    assert "SneakyName" not in names and "Unlisted" not in names
    assert delta("salesinbox_errors_total", code="UNAUTHENTICATED") == 2  # GraphQL and the download
    assert delta("salesinbox_errors_total", code="GRAPHQL_VALIDATION_FAILED") == 1
    assert delta("salesinbox_errors_total", code="BAD_REQUEST") == 2
    http_total = "salesinbox_http_requests_total"
    assert delta(http_total, route="/graphql", method="POST", status="200") == 7
    assert delta(http_total, route="/graphql", method="POST", status="400") == 2
    assert delta(http_total, route="/messages/{message_id}/original", method="GET", status="401") == 1
    assert delta(http_total, route="unmatched", method="GET", status="404") == 1
    assert delta("salesinbox_http_request_duration_seconds_count", route="/graphql", method="POST") == 9
    assert value(after, "process_resident_memory_bytes") > 0  # prometheus-client's process metrics


def test_operation_names_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_instrumentation, "MAX_OPERATION_NAMES", 2)
    monkeypatch.setattr(metrics_instrumentation, "_operation_names", set())
    label = metrics_instrumentation.operation_label
    declared = {"A", "B", "C", "x" * 65, "Bad-Name"}
    assert [label(n, authenticated=True, declared=declared) for n in ("A", "B", "C", "A")] == ["A", "B", "other", "A"]
    assert label("x" * 65, authenticated=True, declared=declared) == "other"
    assert label("A", authenticated=False, declared=declared) == "unauthenticated"
    assert label("Z", authenticated=True, declared=declared) == "other"  # not an operation of the document
    assert label(None, authenticated=True, declared=declared) == "anonymous"
    assert metrics_instrumentation.error_code_label("MADE_UP") == "OTHER"
    assert metrics_instrumentation.error_code_label("NOT_FOUND") == "NOT_FOUND"


# -- a real sync against Dovecot ---------------------------------------------------------------------


@pytest.mark.dovecot
async def test_a_real_sync_shows_in_the_metrics_and_the_log(
    rep: User, mail_account: TestMailbox, services: SyncServices, http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from salesinbox.core.sync.scheduler import InProcessScheduler

    box = mail_account
    box.dovecot.append_many(box.user, "INBOX", generate_messages(25, seed=3, rep=("Rex", box.address)))
    box.dovecot.append_many(box.user, "Sent", generate_messages(5, seed=4, rep=("Rex", box.address)))
    account = await connect(rep, box, services)
    before = await scrape(http)
    assert value(before, "salesinbox_mail_accounts", state="NEW") == 1
    scheduler = InProcessScheduler(services, poll_interval=3600, idle_timing=TIMING)
    caplog.set_level(logging.INFO, logger="salesinbox.core.sync.engine")
    await scheduler.start()
    try:
        watcher = await watching(account.id)
        during = await scrape(http)
    finally:
        await scheduler.stop()
    await asyncio.to_thread(watcher.join, 5.0)
    after = await scrape(http)

    def delta(samples: Samples, name: str, **labels: str) -> float:
        return value(samples, name, **labels) - value(before, name, **labels)

    assert delta(during, "salesinbox_sync_messages_stored_total") == 30
    assert delta(during, "salesinbox_sync_passes_total", outcome="complete") >= 1
    assert delta(during, "salesinbox_sync_pass_duration_seconds_count") >= 1
    assert value(during, "salesinbox_mail_accounts", state="COMPLETE") == 1
    assert value(during, "salesinbox_mail_accounts", state="NEW") == 0
    assert 0 <= value(during, "salesinbox_sync_lag_max_seconds") < 60
    assert delta(during, "salesinbox_idle_connections") == 1
    assert delta(after, "salesinbox_idle_connections") == 0  # the watcher ended with the scheduler

    lines = [r.getMessage() for r in caplog.records if r.name == "salesinbox.core.sync.engine"]
    assert f"Sync of account {account.id} started: initial sync of 2 folder(s)" in lines
    done = [line for line in lines if line.startswith(f"Sync of account {account.id} done in ")]
    assert "(initial): 30 new message(s) in 2 folder(s); state COMPLETE" in done[0]
    assert all(r.levelno == logging.INFO for r in caplog.records if r.getMessage() in (done[0], lines[0]))
    text = "\n".join(lines)
    assert box.address not in text and box.password not in text

    # the lag: the account's last pass an hour ago; an account waiting for credentials is left out
    await MailAccount.filter(id=account.id).update(last_synced_at=datetime.now(UTC) - timedelta(hours=1))
    assert 3600 <= value(await scrape(http), "salesinbox_sync_lag_max_seconds") < 3700
    await MailAccount.filter(id=account.id).update(sync_state=SyncState.NEEDS_REAUTH)
    samples = await scrape(http)
    assert value(samples, "salesinbox_sync_lag_max_seconds") == 0
    assert value(samples, "salesinbox_mail_accounts", state="NEEDS_REAUTH") == 1


@pytest.mark.dovecot
async def test_a_refused_login_is_counted_and_logged(
    rep: User, mail_account: TestMailbox, services: SyncServices, http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from salesinbox.core.sync.engine import sync_account

    account = await connect(rep, mail_account, services)
    await MailAccount.filter(id=account.id).update(imap_secret=services.secrets.encrypt("old-password"))
    before = await scrape(http)
    with caplog.at_level(logging.INFO, logger="salesinbox.core.sync.engine"):
        assert (await sync_account(account.id, services)).state == SyncState.NEEDS_REAUTH
    after = await scrape(http)
    name = "salesinbox_sync_passes_total"
    assert value(after, name, outcome="needs_reauth") - value(before, name, outcome="needs_reauth") == 1
    assert f"Sync of account {account.id} stopped: the mail server refused the login" in caplog.text
    assert "old-password" not in caplog.text and mail_account.password not in caplog.text


@pytest.mark.dovecot
async def test_token_refreshes_are_counted_by_outcome(
    admin: User, rep: User, oauth_account: TestMailbox, oauth_server: OAuthServer, services: SyncServices,
    db: Settings, http: httpx.AsyncClient,
) -> None:
    from salesinbox.core.oauth.oauth_tokens import OAuthReconnectNeeded, OAuthTokens, TokenEndpointUnavailable

    tokens = OAuthTokens(secrets=services.secrets, registry=services.registry, settings=db, policy=services.policy)
    oauth_server.access_token_lifetime = 2
    account = await signed_in(admin, rep, oauth_account, oauth_server, services, db)
    before = await scrape(http)
    await wait_until_expired(account.id)
    assert await tokens.current_access_token(account.id) is not None  # refreshed
    await wait_until_expired(account.id)
    oauth_server.token_endpoint_down = True
    with pytest.raises(TokenEndpointUnavailable):
        await tokens.current_access_token(account.id)  # failed
    oauth_server.token_endpoint_down = False
    oauth_server.revoke_grants(oauth_account.address)
    with pytest.raises(OAuthReconnectNeeded):
        await tokens.current_access_token(account.id)  # refused
    after = await scrape(http)
    name = "salesinbox_oauth_token_refreshes_total"
    assert {outcome: value(after, name, outcome=outcome) - value(before, name, outcome=outcome)
            for outcome in ("refreshed", "failed", "refused")} == {"refreshed": 1, "failed": 1, "refused": 1}
    assert value(after, "salesinbox_mail_accounts", state="NEEDS_REAUTH") == 1


# -- /readyz -------------------------------------------------------------------------------------


async def test_readyz_wants_the_database_and_every_migration(
    http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    ready = await http.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "database": "ok"}
    assert await pending_migrations() == []

    last = shipped_migrations()[-1]
    connection = connections.get("default")
    placeholder = "$1" if connection.capabilities.dialect == "postgres" else "?"
    await connection.execute_query(f'DELETE FROM "tortoise_migrations" WHERE "name" = {placeholder}', [last])
    missing = await http.get("/readyz")
    assert missing.status_code == 503
    body = missing.json()
    assert body["status"] == "not ready" and body["pendingMigrations"] == [last]
    assert "salesinbox migrate" in body["reason"]
    assert (await http.get("/healthz")).status_code == 200  # alive all the same: no restart wanted

    async def unreachable(*args: object, **kwargs: object) -> None:
        raise ConnectionRefusedError("connection refused")

    monkeypatch.setattr(type(connection), "execute_query", unreachable)
    down = await http.get("/readyz")
    assert down.status_code == 503 and down.json()["database"] == "unreachable"


# -- logs --------------------------------------------------------------------------------------------


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(line_limit=300))
    logger = logging.getLogger("salesinbox.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, stream
    logger.removeHandler(handler)


def test_json_log_lines_are_json_and_bounded(json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = json_log
    logger.warning("plain %s", "line")
    logger.info("a \"quoted\"\nmultiline é message " + "x" * 5000)
    try:
        raise ValueError("boom " + "y" * 5000)
    except ValueError:
        logger.exception("it failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # one record, one line, whatever its newlines
    plain, huge, failed = (json.loads(line) for line in lines)
    assert {"time", "level", "logger", "message", "process"} <= plain.keys() and "exception" not in plain
    assert plain["level"] == "WARNING" and plain["logger"] == "salesinbox.test.json"
    assert plain["message"] == "plain line"
    assert datetime.fromisoformat(plain["time"]).tzinfo is not None
    assert huge["message"].startswith("a \"quoted\"\nmultiline é") and len(huge["message"]) == 300
    assert "[truncated" in huge["message"]
    assert failed["message"] == "it failed"
    assert failed["exception"].startswith("Traceback") and "ValueError: boom" in failed["exception"]
    assert len(failed["exception"]) <= 3 * 300
    assert all(len(line) <= 4 * 300 + 200 for line in lines)


async def test_served_process_in_multiprocess_mode_with_json_logs(
    db: Settings, rep_token: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The real `salesinbox serve` with PROMETHEUS_MULTIPROC_DIR (as several processes will
    run) and JSON logs: its operations reach /metrics through the directory's files, and
    every line it logs is one JSON object."""
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    log_file = tmp_path / "served.log"
    async with serve(db, log_file, metrics_token=METRICS_TOKEN, log_format="json", log_level="INFO") as served:
        async with httpx.AsyncClient(base_url=served.http_url) as client:
            for _ in range(2):
                body = (await graphql(client, {"query": "query WhoAmI { me { id } }"}, rep_token)).json()
                assert body["data"]["me"]["id"]
            assert (await client.get("/readyz")).json()["status"] == "ready"
            response = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    samples = parse(response.text)
    assert value(samples, "salesinbox_graphql_operations_total", operation="WhoAmI", type="query") == 2
    assert value(samples, "salesinbox_http_requests_total", route="/readyz", method="GET", status="200") >= 1
    assert any(path.suffix == ".db" for path in metrics_dir.iterdir())  # the processes' value files
    # served.py writes stdout and stderr to one file; the log is stderr, stdout has one banner
    lines = [line for line in log_file.read_text().splitlines()
             if line.strip() and not line.startswith("SalesInbox: GraphQL and GraphiQL at ")]
    assert lines, "the server logged nothing at INFO"
    entries = [json.loads(line) for line in lines]  # every line, uvicorn's included
    assert any(e["logger"] == "salesinbox.server" and "ready" in e["message"] for e in entries)
    assert any(e["logger"].startswith("uvicorn") for e in entries)

