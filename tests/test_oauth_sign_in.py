"""The "Sign in with Google/Microsoft" consent flow (core/oauth_sign_in.py, schema/oauth_sign_in.py,
``GET /oauth/callback``) against the local OAuth server, the token-introspecting Dovecot and
SMTP server: in headless Chromium with the app under uvicorn, and over HTTP for every failure."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx
import pytest
from starlette.applications import Starlette

from salesinbox.core.models import MailAccount, Message, OAuthGrant, OAuthSignIn, SyncState, User
from salesinbox.core.oauth_clients import OAuthClientInput, redirect_url, set_oauth_client
from salesinbox.core.settings import Settings
from salesinbox.core.sync import sync_account

from .conftest import GraphQLClient
from .served import free_port, serve
from .servers.browser import ChromiumPage
from .servers.messages import build_message
from .servers.oauth import OAuthServer

if TYPE_CHECKING:
    from salesinbox.schema.context import Services

    from .servers.fixtures import MailAccount as TestMailbox
from .test_graphiql import find_chromium

pytestmark = [pytest.mark.dovecot, pytest.mark.db]

START = """mutation($input: StartOAuthSignInInput!) { startOAuthSignIn(input: $input) {
  authorizationUrl expiresAt
  signIn { id provider status errorCode errorMessage accountId expiresAt } } }"""
POLL = "query($id: ID!) { oauthSignIn(id: $id) { id status errorCode errorMessage accountId } }"
ACCOUNT = "query($id: ID!) { mailAccount(id: $id) { id email syncState syncError } }"


#: every built-in OAuth provider: a query parameter of its consent URL and a scope it asks
PROVIDERS = {
    "gmail": (("access_type", "offline"), "https://mail.google.com/"),
    "outlook": (("prompt", "select_account"), "https://outlook.office.com/IMAP.AccessAsUser.All"),
    "office365": (("prompt", "select_account"), "https://outlook.office.com/IMAP.AccessAsUser.All"),
}


async def configure(admin: User, server: OAuthServer, settings: Settings, services: Services,
                    frontend: str | None = None, provider: str = "gmail") -> None:
    """The admin points ``provider``'s OAuth client at ``server`` (every endpoint overridden,
    Microsoft's ``{tenant}`` URLs too), registered with our callback."""
    client = server.register_client(redirect_uris=(redirect_url(settings),))
    await set_oauth_client(admin, OAuthClientInput(
        provider=provider, client_id=client.client_id, client_secret=client.client_secret,
        authorization_url=server.url("/authorize"), token_url=server.url("/token"),
        revocation_url=server.url("/revoke"), userinfo_url=server.url("/userinfo"),
        frontend_redirect_url=frontend,
    ), registry=services.providers, secrets=services.secrets, settings=settings)


def servers_of(box: TestMailbox) -> dict:
    """The input pointing Gmail's preset at the test servers."""
    return {"incoming": {"host": "localhost", "port": box.dovecot.port, "security": "STARTTLS"},
            "outgoing": {"host": "localhost", "port": box.smtp.port, "security": "STARTTLS"}}


async def start(api: GraphQLClient, token: str, box: TestMailbox, provider: str = "gmail",
                **extra: object) -> dict:
    data = await api.ok(START, {"input": {"provider": provider, **servers_of(box), **extra}}, token)
    return data["startOAuthSignIn"]


def consent(url: str, decision: str = "approve", email: str | None = None) -> str:
    """Submit the IdP's consent form as the browser would; the callback URL it redirects to."""
    with httpx.Client(timeout=10) as http:
        page = http.get(url)
        assert page.status_code == 200, page.text
        form = {"decision": decision}
        if email is not None:
            form["email"] = email
        else:  # the pre-filled address (login_hint, else the fixture's current user)
            form["email"] = page.text.split('id="email" name="email" type="email" value="')[1].split('"')[0]
        answer = http.post(url, data=form)
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


async def callback(app: Starlette, location: str) -> httpx.Response:
    """Our callback, reached by the browser's redirect (in process)."""
    parts = urlsplit(location)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await http.get(f"{parts.path}?{parts.query}")


@pytest.fixture
def provider() -> str:
    """The provider the admin configures (tests parametrize it over :data:`PROVIDERS`)."""
    return "gmail"


@pytest.fixture
async def ready(admin: User, oauth_server: OAuthServer, app: Starlette, db: Settings,
                provider: str) -> Starlette:
    await configure(admin, oauth_server, db, app.state.services, provider=provider)
    return app


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
async def test_sign_in_connects_the_account_with_a_grant_and_it_syncs(
    ready: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox,
    oauth_server: OAuthServer, db: Settings, caplog: pytest.LogCaptureFixture, provider: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    started = await start(api, rep_token, oauth_account, provider, email=oauth_account.address,
                          displayName="Rex G", sharing="PRIVATE", syncDaysLimit=30, options=[])
    assert urlsplit(started["authorizationUrl"]).netloc == urlsplit(oauth_server.base_url).netloc
    query = parse_qs(urlsplit(started["authorizationUrl"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["login_hint"] == [oauth_account.address]
    (param, value), scope = PROVIDERS[provider]
    assert query[param] == [value] and scope in query["scope"][0].split()
    assert started["signIn"]["status"] == "PENDING" and started["signIn"]["provider"] == provider
    page = await callback(ready, consent(started["authorizationUrl"]))
    assert page.status_code == 200, page.text
    assert "is connected" in page.text and "access_token" not in page.text
    polled = (await api.ok(POLL, {"id": started["signIn"]["id"]}, rep_token))["oauthSignIn"]
    assert polled["status"] == "CONNECTED" and polled["errorCode"] is None
    account = await MailAccount.get(id=int(polled["accountId"]))
    assert account.email == oauth_account.address and account.display_name == "Rex G"
    assert account.provider == provider and await OAuthGrant.exists(account_id=account.id, provider=provider)
    oauth_account.dovecot.append(oauth_account.user, "INBOX", build_message(subject="hello"))
    await sync_account(account.id, ready.state.services.sync_services())
    assert await Message.filter(account_id=account.id).count() == 1
    row = await OAuthSignIn.get(id=int(started["signIn"]["id"]))
    issued = [t.value for t in oauth_server.tokens_of(oauth_account.address)]
    assert issued
    for token in issued:
        assert token not in page.text and token not in str(row.request)
        # every log line but the test IdP's own (Authlib's server logs what it issues)
        assert not [r.name for r in caplog.records if token in r.getMessage() and not r.name.startswith("authlib")]
    assert "code_verifier" not in started["authorizationUrl"]  # only its S256 challenge
    # the state is single use: the same return again is refused, the outcome stays
    again = await callback(ready, consent(started["authorizationUrl"]))
    assert again.status_code == 400 and "OAUTH_STATE_INVALID" in again.text
    assert "already used" in again.text
    polled = (await api.ok(POLL, {"id": started["signIn"]["id"]}, rep_token))["oauthSignIn"]
    assert polled["status"] == "CONNECTED"


async def test_denied_consent_is_a_typed_error_page_and_failed_status(
    ready: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox,
) -> None:
    started = await start(api, rep_token, oauth_account)
    page = await callback(ready, consent(started["authorizationUrl"], decision="deny"))
    assert page.status_code == 400 and "OAUTH_DENIED" in page.text and "approve" in page.text
    polled = (await api.ok(POLL, {"id": started["signIn"]["id"]}, rep_token))["oauthSignIn"]
    assert polled["status"] == "FAILED" and polled["errorCode"] == "OAUTH_DENIED"
    assert "start again" in polled["errorMessage"]
    assert not await MailAccount.exists(email=oauth_account.address)


async def test_expired_and_unknown_states(
    ready: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox,
) -> None:
    started = await start(api, rep_token, oauth_account)
    location = consent(started["authorizationUrl"])
    await OAuthSignIn.filter(id=int(started["signIn"]["id"])).update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1))
    page = await callback(ready, location)
    assert page.status_code == 400 and "OAUTH_STATE_EXPIRED" in page.text
    polled = (await api.ok(POLL, {"id": started["signIn"]["id"]}, rep_token))["oauthSignIn"]
    assert polled["errorCode"] == "OAUTH_STATE_EXPIRED"
    forged = location.replace("state=", "state=x")
    page = await callback(ready, forged)
    assert page.status_code == 400 and "OAUTH_STATE_INVALID" in page.text and "unknown" in page.text
    assert not await MailAccount.exists(email=oauth_account.address)


async def test_token_endpoint_down_is_a_retryable_error(
    ready: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox,
    oauth_server: OAuthServer,
) -> None:
    started = await start(api, rep_token, oauth_account)
    location = consent(started["authorizationUrl"])
    oauth_server.token_endpoint_down = True
    page = await callback(ready, location)
    assert page.status_code == 400 and "CONNECTION_FAILED" in page.text and "try again" in page.text
    polled = (await api.ok(POLL, {"id": started["signIn"]["id"]}, rep_token))["oauthSignIn"]
    assert polled["status"] == "FAILED" and polled["errorCode"] == "CONNECTION_FAILED"


async def signed_in_account(ready: Starlette, api: GraphQLClient, token: str, box: TestMailbox) -> MailAccount:
    started = await start(api, token, box)
    page = await callback(ready, consent(started["authorizationUrl"]))
    assert page.status_code == 200, page.text
    return await MailAccount.get(email=box.address)


async def test_reconnect_clears_needs_reauth_and_resumes_without_duplicates(
    ready: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox,
    oauth_server: OAuthServer,
) -> None:
    account = await signed_in_account(ready, api, rep_token, oauth_account)
    services = ready.state.services.sync_services()
    oauth_account.dovecot.append(oauth_account.user, "INBOX", build_message(subject="before"))
    await sync_account(account.id, services)
    oauth_server.revoke_grants(oauth_account.address)
    # the stored token is due: the refresh finds the grant refused (invalid_grant)
    await OAuthGrant.filter(account_id=account.id).update(
        access_token_expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert (await sync_account(account.id, services)).state == SyncState.NEEDS_REAUTH
    shown = (await api.ok(ACCOUNT, {"id": str(account.id)}, rep_token))["mailAccount"]
    assert shown["syncState"] == "NEEDS_REAUTH"
    assert "startOAuthSignIn" in shown["syncError"] and f'accountId "{account.id}"' in shown["syncError"]
    started = await start(api, rep_token, oauth_account, accountId=str(account.id))
    assert parse_qs(urlsplit(started["authorizationUrl"]).query)["login_hint"] == [oauth_account.address]
    page = await callback(ready, consent(started["authorizationUrl"]))
    assert page.status_code == 200, page.text
    assert await MailAccount.filter(email=oauth_account.address).count() == 1
    await account.refresh_from_db()
    assert account.sync_state != SyncState.NEEDS_REAUTH
    oauth_account.dovecot.append(oauth_account.user, "INBOX", build_message(subject="after"))
    assert (await sync_account(account.id, services)).state == SyncState.COMPLETE
    assert await Message.filter(account_id=account.id).count() == 2


async def test_reconnect_to_another_mailbox_is_refused(
    ready: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox,
) -> None:
    account = await signed_in_account(ready, api, rep_token, oauth_account)
    started = await start(api, rep_token, oauth_account, accountId=str(account.id))
    page = await callback(ready, consent(started["authorizationUrl"], email="someone.else@example.test"))
    assert page.status_code == 400 and "WRONG_MAILBOX" in page.text
    assert "someone.else@example.test" in page.text and oauth_account.address in page.text
    polled = (await api.ok(POLL, {"id": started["signIn"]["id"]}, rep_token))["oauthSignIn"]
    assert polled["errorCode"] == "WRONG_MAILBOX"


async def test_a_new_connection_to_another_mailbox_than_declared_is_refused(
    ready: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox,
) -> None:
    started = await start(api, rep_token, oauth_account, email=oauth_account.address)
    page = await callback(ready, consent(started["authorizationUrl"], email="someone.else@example.test"))
    assert page.status_code == 400 and "WRONG_MAILBOX" in page.text
    assert "someone.else@example.test" in page.text and oauth_account.address in page.text
    assert await MailAccount.filter(email="someone.else@example.test").count() == 0


async def test_frontend_redirect_mode(
    admin: User, app: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox,
    oauth_server: OAuthServer, db: Settings,
) -> None:
    await configure(admin, oauth_server, db, app.state.services, frontend="https://crm.example.test/connected")
    started = await start(api, rep_token, oauth_account)
    page = await callback(app, consent(started["authorizationUrl"]))
    assert page.status_code == 303
    account = await MailAccount.get(email=oauth_account.address)
    assert page.headers["location"] == f"https://crm.example.test/connected?status=connected&accountId={account.id}"
    started = await start(api, rep_token, oauth_account)
    page = await callback(app, consent(started["authorizationUrl"], decision="deny"))
    assert page.headers["location"] == "https://crm.example.test/connected?status=error&code=OAUTH_DENIED"


async def test_start_refuses_providers_without_oauth_or_client(
    app: Starlette, api: GraphQLClient, rep_token: str,
) -> None:
    error = await api.error(START, {"input": {"provider": "gmail"}}, rep_token)
    assert error["extensions"]["code"] == "NOT_FOUND" and "setOAuthClient" in error["message"]
    error = await api.error(START, {"input": {"provider": "yahoo"}}, rep_token)
    assert error["extensions"]["code"] == "INVALID_INPUT"


@pytest.mark.browser
async def test_sign_in_in_chromium_with_the_app_under_uvicorn(
    admin: User, rep_token: str, oauth_account: TestMailbox, oauth_server: OAuthServer,
    app: Starlette, db: Settings, tmp_path: Path,
) -> None:
    chromium = find_chromium()
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    served_settings = replace(db, public_url=public)
    await configure(admin, oauth_server, served_settings, app.state.services)
    async with serve(db, tmp_path / "served.log", port=port, public_url=public,
                     allow_private_hosts="true", extra_ca_file=str(db.extra_ca_file)) as served:
        async with httpx.AsyncClient(base_url=served.http_url, timeout=20) as http:
            answer = await http.post("/graphql", headers={"Authorization": f"Bearer {rep_token}"}, json={
                "query": START, "variables": {"input": {"provider": "gmail", **servers_of(oauth_account)}}})
        started = answer.json()["data"]["startOAuthSignIn"]
        with ChromiumPage(chromium, tmp_path / "profile") as page:
            page.open(started["authorizationUrl"])
            page.evaluate("document.getElementById('approve').click()")
            callback_url = json.dumps(f"{public}/oauth/callback?")
            page.wait_for(f"location.href.startsWith({callback_url}) && document.readyState === 'complete'"
                          " && !!document.getElementById('message')")
            shown = page.evaluate("document.getElementById('message').textContent")
    assert "is connected" in shown
    account = await MailAccount.get(email=oauth_account.address)
    assert await OAuthGrant.exists(account_id=account.id)
    oauth_account.dovecot.append(oauth_account.user, "INBOX", build_message(subject="via chromium"))
    await sync_account(account.id, app.state.services.sync_services())
    assert await Message.filter(account_id=account.id).count() == 1


async def test_a_server_refusing_the_new_token_saves_nothing(
    ready: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox,
) -> None:
    closed = {"host": "localhost", "port": free_port(), "security": "STARTTLS"}
    started = await start(api, rep_token, oauth_account, outgoing=closed)
    page = await callback(ready, consent(started["authorizationUrl"]))
    assert page.status_code == 400 and "CONNECTION_FAILED" in page.text
    polled = (await api.ok(POLL, {"id": started["signIn"]["id"]}, rep_token))["oauthSignIn"]
    assert polled["status"] == "FAILED" and polled["errorCode"] == "CONNECTION_FAILED"
    assert not await MailAccount.exists(email=oauth_account.address)
    assert not await OAuthGrant.exists()


async def test_signing_in_to_a_password_account_switches_it_to_oauth(
    ready: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox,
) -> None:
    connect = """mutation($input: ConnectMailAccountInput!) { connectMailAccount(input: $input) { id } }"""
    data = await api.ok(connect, {"input": {
        "provider": "gmail", "email": oauth_account.address, "password": oauth_account.user.password,
        "authKind": "APP_PASSWORD", **servers_of(oauth_account)}}, rep_token)
    account_id = int(data["connectMailAccount"]["id"])
    started = await start(api, rep_token, oauth_account)
    page = await callback(ready, consent(started["authorizationUrl"]))
    assert page.status_code == 200, page.text
    account = await MailAccount.get(email=oauth_account.address)
    assert account.id == account_id and account.imap_auth_kind == account.smtp_auth_kind == "XOAUTH2"
    assert await OAuthGrant.exists(account_id=account_id)
    oauth_account.dovecot.append(oauth_account.user, "INBOX", build_message(subject="switched"))
    assert (await sync_account(account_id, ready.state.services.sync_services())).state == SyncState.COMPLETE
    assert await Message.filter(account_id=account_id).count() == 1
