"""The "Sign in with Google/Microsoft" consent flow (core/oauth/oauth_sign_in.py, schema/oauth_sign_in.py,
``GET /oauth/callback``) against the local OAuth server, the token-introspecting Dovecot and
SMTP server: in headless Chromium with the app under uvicorn, and over HTTP for every failure."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx
import pytest
from starlette.applications import Starlette

from salesinbox.core.db.models import MailAccount, Message, OAuthGrant, OAuthSignIn, SyncState, User
from salesinbox.core.oauth.oauth_clients import OAuthClientInput, redirect_url, set_oauth_client
from salesinbox.core.oauth.oauth_launch import launch_sign_in
from salesinbox.core.settings import Settings
from salesinbox.core.sync.engine import sync_account

from .conftest import GraphQLClient
from .served import free_port, serve
from .servers.browser import ChromiumPage
from .servers.dovecot import DovecotServer
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
    """The admin points ``provider``'s OAuth client at ``server`` (every declared endpoint
    overridden, Microsoft's ``{tenant}`` URLs too), registered with our callback. Microsoft
    declares no userinfo endpoint (its address comes from the ID token), so none is set."""
    client = server.register_client(redirect_uris=(redirect_url(settings),))
    await set_oauth_client(admin, OAuthClientInput(
        provider=provider, client_id=client.client_id, client_secret=client.client_secret,
        authorization_url=server.url("/authorize"), token_url=server.url("/token"),
        revocation_url=server.url("/revoke"),
        userinfo_url=server.url("/userinfo") if provider == "gmail" else None,
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


class Browser:
    """One browser: its cookie jar for our app (in process) across the trip to the IdP."""

    def __init__(self, app: Starlette) -> None:
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")

    async def get(self, url: str) -> httpx.Response:
        parts = urlsplit(url)
        return await self.http.get(f"{parts.path}?{parts.query}")

    async def open(self, link: str) -> str:
        """Open the sign-in link startOAuthSignIn answered; the provider URL it redirects to."""
        answer = await self.get(link)
        assert answer.status_code == 303, answer.text
        return answer.headers["location"]

    async def approve(self, link: str, decision: str = "approve", email: str | None = None) -> str:
        """Open the link and answer the IdP's consent page; the callback URL it sends us to."""
        return consent(await self.open(link), decision, email)

    async def callback(self, location: str) -> httpx.Response:
        """Our callback, reached by the IdP's redirect."""
        return await self.get(location)


async def sign_in(app: Starlette, started: dict, decision: str = "approve",
                  email: str | None = None) -> httpx.Response:
    """The whole consent in a fresh browser: the callback's answer."""
    browser = Browser(app)
    return await browser.callback(await browser.approve(started["authorizationUrl"], decision, email))


async def failed_with(api: GraphQLClient, token: str, started: dict, code: str) -> dict:
    """The polled sign-in, which must have FAILED with ``code``."""
    polled = (await api.ok(POLL, {"id": started["signIn"]["id"]}, token))["oauthSignIn"]
    assert polled["status"] == "FAILED" and polled["errorCode"] == code, polled
    return polled


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
    assert started["authorizationUrl"].startswith(f"{db.public_url}/oauth/start?ticket=")
    browser = Browser(ready)
    consent_url = await browser.open(started["authorizationUrl"])
    assert urlsplit(consent_url).netloc == urlsplit(oauth_server.base_url).netloc
    query = parse_qs(urlsplit(consent_url).query)
    assert query["code_challenge_method"] == ["S256"] and query["login_hint"] == [oauth_account.address]
    (param, value), scope = PROVIDERS[provider]
    assert query[param] == [value] and scope in query["scope"][0].split()
    assert started["signIn"]["status"] == "PENDING" and started["signIn"]["provider"] == provider
    location = consent(consent_url)
    page = await browser.callback(location)
    assert page.status_code == 200, page.text
    assert "is connected" in page.text and "access_token" not in page.text
    assert oauth_server.userinfo_requests == 0  # the ID token named the mailbox
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
    assert "code_verifier" not in consent_url  # only its S256 challenge
    # the state is single use: the same return again is refused, the outcome stays
    again = await browser.callback(location)
    assert again.status_code == 400 and "OAUTH_STATE_INVALID" in again.text
    assert "already used" in again.text
    polled = (await api.ok(POLL, {"id": started["signIn"]["id"]}, rep_token))["oauthSignIn"]
    assert polled["status"] == "CONNECTED"


async def test_denied_consent_is_a_typed_error_page_and_failed_status(
    ready: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox,
) -> None:
    started = await start(api, rep_token, oauth_account)
    page = await sign_in(ready, started, decision="deny")
    assert page.status_code == 400 and "OAUTH_DENIED" in page.text and "approve" in page.text
    polled = await failed_with(api, rep_token, started, "OAUTH_DENIED")
    assert "start again" in polled["errorMessage"]
    assert not await MailAccount.exists(email=oauth_account.address)


async def test_expired_and_unknown_states(
    ready: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox,
) -> None:
    started = await start(api, rep_token, oauth_account)
    browser = Browser(ready)
    location = await browser.approve(started["authorizationUrl"])
    await OAuthSignIn.filter(id=int(started["signIn"]["id"])).update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1))
    page = await browser.callback(location)
    assert page.status_code == 400 and "OAUTH_STATE_EXPIRED" in page.text
    polled = (await api.ok(POLL, {"id": started["signIn"]["id"]}, rep_token))["oauthSignIn"]
    assert polled["errorCode"] == "OAUTH_STATE_EXPIRED"
    forged = location.replace("state=", "state=x")
    page = await browser.callback(forged)
    assert page.status_code == 400 and "OAUTH_STATE_INVALID" in page.text and "unknown" in page.text
    assert not await MailAccount.exists(email=oauth_account.address)


@pytest.mark.parametrize(("provider", "claims", "userinfo_requests"), [
    ("gmail", frozenset(), 1),  # no ID token: Google's userinfo endpoint names the mailbox
    ("office365", frozenset({"preferred_username"}), 0),  # a work account without `email`
])
async def test_where_the_address_comes_from(
    ready: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox,
    oauth_server: OAuthServer, provider: str, claims: frozenset[str], userinfo_requests: int,
) -> None:
    oauth_server.id_token_claims = claims
    page = await sign_in(ready, await start(api, rep_token, oauth_account, provider))
    assert page.status_code == 200, page.text
    assert oauth_server.userinfo_requests == userinfo_requests
    assert (await MailAccount.get(email=oauth_account.address)).provider == provider


async def test_no_claim_naming_the_mailbox_is_a_typed_error(
    admin: User, app: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox,
    oauth_server: OAuthServer, db: Settings,
) -> None:
    await configure(admin, oauth_server, db, app.state.services, provider="outlook")
    oauth_server.id_token_claims = frozenset()  # Microsoft answers no userinfo: nothing to ask
    started = await start(api, rep_token, oauth_account, "outlook")
    page = await sign_in(app, started)
    assert page.status_code == 400 and "AUTHENTICATION_FAILED" in page.text
    assert "did not tell which mailbox" in page.text and "openid and email" in page.text
    await failed_with(api, rep_token, started, "AUTHENTICATION_FAILED")
    assert not await MailAccount.exists(email=oauth_account.address)


async def test_the_consent_finishes_only_in_the_browser_that_opened_the_link(
    ready: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox,
) -> None:
    started = await start(api, rep_token, oauth_account)
    opener = Browser(ready)
    consent_url = await opener.open(started["authorizationUrl"])
    # the link is single use: another browser (the link passed on, or a reload) gets nothing
    second = await Browser(ready).get(started["authorizationUrl"])
    assert second.status_code == 400 and "OAUTH_STATE_INVALID" in second.text and "already opened" in second.text
    assert "location" not in second.headers and "set-cookie" not in second.headers
    # the provider's page passed on: the approval comes back to a browser without the binding
    location = consent(consent_url)
    forger = Browser(ready)
    forger.http.cookies.set(f"salesinbox_oauth_{started['signIn']['id']}", "guessed", domain="testserver",
                            path="/oauth")
    elsewhere = await forger.callback(location)
    assert elsewhere.status_code == 400 and "OAUTH_BROWSER_MISMATCH" in elsewhere.text
    assert "browser that opens the link" in elsewhere.text
    await failed_with(api, rep_token, started, "OAUTH_BROWSER_MISMATCH")
    assert not await MailAccount.exists(email=oauth_account.address)
    # the state is spent: the approval cannot be replayed, not even in the right browser
    page = await opener.callback(location)
    assert page.status_code == 400 and "OAUTH_STATE_INVALID" in page.text


async def test_the_link_sets_a_digested_httponly_binding_that_the_callback_clears(
    ready: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox, db: Settings,
    oauth_server: OAuthServer,
) -> None:
    started = await start(api, rep_token, oauth_account)
    ticket = parse_qs(urlsplit(started["authorizationUrl"]).query)["ticket"][0]
    browser = Browser(ready)
    opened = await browser.get(started["authorizationUrl"])
    assert opened.status_code == 303 and opened.headers["cache-control"] == "no-store"
    assert opened.headers["referrer-policy"] == "no-referrer"
    name = f"salesinbox_oauth_{started['signIn']['id']}"
    set_cookie = opened.headers["set-cookie"]
    assert set_cookie.startswith(f"{name}=") and "HttpOnly" in set_cookie and "Path=/oauth" in set_cookie
    assert "SameSite=lax" in set_cookie and "Secure" not in set_cookie  # http://…: no Secure
    secret = browser.http.cookies[name]
    row = await OAuthSignIn.get(id=int(started["signIn"]["id"]))
    # the database holds digests only: neither the link nor the cookie can be rebuilt from it
    assert row.launch_ticket == hashlib.sha256(ticket.encode()).hexdigest() != ticket
    assert row.browser_binding == hashlib.sha256(secret.encode()).hexdigest() != secret
    page = await browser.callback(consent(opened.headers["location"]))
    assert page.status_code == 200, page.text
    assert name not in browser.http.cookies  # the callback told the browser to forget it
    # an https server marks it Secure; a path prefix scopes it
    again = await start(api, rep_token, oauth_account)
    launch = await launch_sign_in(parse_qs(urlsplit(again["authorizationUrl"]).query)["ticket"][0],
                                  replace(db, public_url="https://crm.example.test/inbox/"))
    assert launch.binding.secure and launch.binding.path == "/inbox/oauth"
    assert launch.provider_url.startswith(oauth_server.url("/authorize") + "?")


async def test_unknown_and_expired_links(
    ready: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox, db: Settings,
) -> None:
    unknown = await Browser(ready).get(f"{db.public_url}/oauth/start?ticket=nope")
    assert unknown.status_code == 400 and "OAUTH_STATE_INVALID" in unknown.text and "unknown" in unknown.text
    missing = await Browser(ready).get(f"{db.public_url}/oauth/start?")
    assert missing.status_code == 400 and "OAUTH_STATE_INVALID" in missing.text
    started = await start(api, rep_token, oauth_account)
    await OAuthSignIn.filter(id=int(started["signIn"]["id"])).update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1))
    expired = await Browser(ready).get(started["authorizationUrl"])
    assert expired.status_code == 400 and "OAUTH_STATE_EXPIRED" in expired.text and "start" in expired.text.lower()


async def test_sign_ins_that_ended_a_week_ago_are_deleted(
    ready: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox,
) -> None:
    old, recent = [int((await start(api, rep_token, oauth_account))["signIn"]["id"]) for _ in range(2)]
    now = datetime.now(UTC)
    await OAuthSignIn.filter(id=old).update(expires_at=now - timedelta(days=7, minutes=1))
    await OAuthSignIn.filter(id=recent).update(expires_at=now - timedelta(days=6))
    newest = int((await start(api, rep_token, oauth_account))["signIn"]["id"])
    assert sorted(await OAuthSignIn.all().values_list("id", flat=True)) == [recent, newest]
    error = await api.error(POLL, {"id": str(old)}, rep_token)
    assert error["extensions"]["code"] == "NOT_FOUND"


async def test_token_endpoint_down_is_a_retryable_error(
    ready: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox,
    oauth_server: OAuthServer,
) -> None:
    started = await start(api, rep_token, oauth_account)
    browser = Browser(ready)
    location = await browser.approve(started["authorizationUrl"])
    oauth_server.token_endpoint_down = True
    page = await browser.callback(location)
    assert page.status_code == 400 and "CONNECTION_FAILED" in page.text and "try again" in page.text
    await failed_with(api, rep_token, started, "CONNECTION_FAILED")


async def signed_in_account(ready: Starlette, api: GraphQLClient, token: str, box: TestMailbox) -> MailAccount:
    started = await start(api, token, box)
    page = await sign_in(ready, started)
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
    browser = Browser(ready)
    consent_url = await browser.open(started["authorizationUrl"])
    assert parse_qs(urlsplit(consent_url).query)["login_hint"] == [oauth_account.address]
    page = await browser.callback(consent(consent_url))
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
    page = await sign_in(ready, started, email="someone.else@example.test")
    assert page.status_code == 400 and "WRONG_MAILBOX" in page.text
    assert "someone.else@example.test" in page.text and oauth_account.address in page.text
    polled = (await api.ok(POLL, {"id": started["signIn"]["id"]}, rep_token))["oauthSignIn"]
    assert polled["errorCode"] == "WRONG_MAILBOX"


async def test_a_new_connection_to_another_mailbox_than_declared_is_refused(
    ready: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox,
) -> None:
    started = await start(api, rep_token, oauth_account, email=oauth_account.address)
    page = await sign_in(ready, started, email="someone.else@example.test")
    assert page.status_code == 400 and "WRONG_MAILBOX" in page.text
    assert "someone.else@example.test" in page.text and oauth_account.address in page.text
    assert await MailAccount.filter(email="someone.else@example.test").count() == 0


async def test_frontend_redirect_mode(
    admin: User, app: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox,
    oauth_server: OAuthServer, db: Settings,
) -> None:
    await configure(admin, oauth_server, db, app.state.services, frontend="https://crm.example.test/connected")
    started = await start(api, rep_token, oauth_account)
    page = await sign_in(app, started)
    assert page.status_code == 303
    account = await MailAccount.get(email=oauth_account.address)
    assert page.headers["location"] == f"https://crm.example.test/connected?status=connected&accountId={account.id}"
    started = await start(api, rep_token, oauth_account)
    page = await sign_in(app, started, decision="deny")
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


@pytest.mark.parametrize(("provider", "refusal", "code", "fix"), [
    # Gmail says why (Google Workspace admin, or the user's Gmail settings)
    ("gmail", "Your account is not enabled for IMAP use. Please visit your Gmail settings page and "
     "enable your account for IMAP access.", "IMAP_DISABLED", "Enable IMAP access"),
    # Exchange Online answers a bare refusal to a live token of a mailbox without IMAP
    ("office365", None, "AUTHENTICATION_FAILED", "Set-CASMailbox"),
])
async def test_a_tenant_with_imap_switched_off(
    ready: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox,
    oauth_server: OAuthServer, dovecot_factory: Callable[..., DovecotServer], provider: str,
    refusal: str | None, code: str, fix: str,
) -> None:
    resource = oauth_server.resource_client
    switched_off = dovecot_factory(oauth2_introspection_url=oauth_server.introspection_url,
                                   oauth2_client_id=resource.client_id,
                                   oauth2_client_secret=resource.client_secret, oauth2_refuse_all=True)
    if refusal:
        oauth_server.introspection_extra = {"imap_refusal": refusal}
    incoming = {"host": "localhost", "port": switched_off.port, "security": "STARTTLS"}
    started = await start(api, rep_token, oauth_account, provider, incoming=incoming)
    page = await sign_in(ready, started)
    assert page.status_code == 400 and code in page.text and fix in page.text, page.text
    assert oauth_server.introspections >= 1  # the token was live: the tenant refused it
    if code == "AUTHENTICATION_FAILED":  # not "the username or password": there was none
        assert "refused the sign-in token (OAuth2)" in page.text and "password" not in page.text.lower()
    polled = await failed_with(api, rep_token, started, code)
    assert fix in polled["errorMessage"]
    assert not await MailAccount.exists(email=oauth_account.address)
    assert not await OAuthGrant.exists()


async def test_a_server_refusing_the_new_token_saves_nothing(
    ready: Starlette, api: GraphQLClient, rep_token: str, oauth_account: TestMailbox,
) -> None:
    closed = {"host": "localhost", "port": free_port(), "security": "STARTTLS"}
    started = await start(api, rep_token, oauth_account, outgoing=closed)
    page = await sign_in(ready, started)
    assert page.status_code == 400 and "CONNECTION_FAILED" in page.text
    await failed_with(api, rep_token, started, "CONNECTION_FAILED")
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
    page = await sign_in(ready, started)
    assert page.status_code == 200, page.text
    account = await MailAccount.get(email=oauth_account.address)
    assert account.id == account_id and account.imap_auth_kind == account.smtp_auth_kind == "XOAUTH2"
    assert await OAuthGrant.exists(account_id=account_id)
    oauth_account.dovecot.append(oauth_account.user, "INBOX", build_message(subject="switched"))
    assert (await sync_account(account_id, ready.state.services.sync_services())).state == SyncState.COMPLETE
    assert await Message.filter(account_id=account_id).count() == 1
