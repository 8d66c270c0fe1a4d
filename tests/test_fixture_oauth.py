"""The local OAuth2 authorisation server (tests/servers/oauth.py) and the mail servers that
validate its tokens: the code flow with PKCE over HTTP, refresh-token rotation, expiry,
revocation, the test switches; then IMAP (Dovecot) and SMTP (aiosmtpd) logins with
XOAUTH2/OAUTHBEARER, and a consent clicked in headless Chromium."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import smtplib
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2 as httpx
import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from tests.servers.browser import ChromiumPage
from tests.servers.fixtures import MailAccount
from tests.servers.oauth import OAuthServer, pkce_pair
from tests.servers.smtp import SmtpServer
from tests.test_graphiql import find_chromium

SCOPE = "email https://mail.example.test/"


# ------------------------------------------------------------------ helpers


def authorize_params(server: OAuthServer, challenge: str, **extra: str) -> dict[str, str]:
    params = {"response_type": "code", "client_id": server.client.client_id,
              "redirect_uri": server.url("/callback"), "scope": SCOPE, "state": "st-42",
              "code_challenge": challenge, "code_challenge_method": "S256"}
    params.update(extra)
    return {k: v for k, v in params.items() if v != ""}


def consent(http: httpx.Client, server: OAuthServer, params: dict[str, str],
            decision: str = "approve", email: str = "ann@example.test") -> dict[str, str]:
    """GET the consent page, submit its form; return the redirect's query parameters."""
    page = http.get(server.url("/authorize"), params=params)
    assert page.status_code == 200, page.text
    assert 'value="approve">Approve</button>' in page.text
    assert 'value="deny">Deny</button>' in page.text
    answer = http.post(f"{server.url('/authorize')}?{urlencode(params)}",
                       data={"email": email, "decision": decision})
    assert answer.status_code == 302, answer.text
    location = urlsplit(answer.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == server.url("/callback")
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def sign_in(http: httpx.Client, server: OAuthServer, email: str = "ann@example.test") -> dict:
    """The whole code flow (PKCE, client_secret_basic); the token response."""
    verifier, challenge = pkce_pair()
    code = consent(http, server, authorize_params(server, challenge), email=email)["code"]
    response = http.post(server.url("/token"), auth=client_auth(server), data={
        "grant_type": "authorization_code", "code": code,
        "redirect_uri": server.url("/callback"), "code_verifier": verifier})
    assert response.status_code == 200, response.text
    return response.json()


def client_auth(server: OAuthServer) -> tuple[str, str]:
    return server.client.client_id, server.client.client_secret


def refresh(http: httpx.Client, server: OAuthServer, refresh_token: str) -> httpx.Response:
    """A refresh with client_secret_post."""
    return http.post(server.url("/token"), data={
        "grant_type": "refresh_token", "refresh_token": refresh_token,
        "client_id": server.client.client_id, "client_secret": server.client.client_secret})


def introspect(http: httpx.Client, server: OAuthServer, token: str) -> dict:
    resource = server.resource_client
    response = http.post(server.introspection_url, data={"token": token},
                         auth=(resource.client_id, resource.client_secret))
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


# --------------------------------------------------------- the server over HTTP


def test_code_flow_with_pkce(http: httpx.Client, oauth_server: OAuthServer) -> None:
    verifier, challenge = pkce_pair()
    redirect = consent(http, oauth_server, authorize_params(oauth_server, challenge))
    assert redirect["state"] == "st-42"
    token_request = {"grant_type": "authorization_code", "code": redirect["code"],
                     "redirect_uri": oauth_server.url("/callback"), "code_verifier": verifier}
    wrong = http.post(oauth_server.url("/token"), auth=client_auth(oauth_server),
                      data={**token_request, "code_verifier": pkce_pair()[0]})
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    # (a failed verifier check leaves the code usable: Authlib deletes it only on success)
    token = http.post(oauth_server.url("/token"), auth=client_auth(oauth_server),
                      data=token_request)
    assert token.status_code == 200, token.text
    body = token.json()
    assert body["token_type"] == "Bearer" and body["scope"] == SCOPE
    assert body["expires_in"] == 3600 and body["refresh_token"] != body["access_token"]
    assert token.headers["cache-control"] == "no-store"
    again = http.post(oauth_server.url("/token"), auth=client_auth(oauth_server),
                      data=token_request)
    assert again.json()["error"] == "invalid_grant"  # codes are single-use
    info = http.get(oauth_server.url("/userinfo"),
                    headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.json() == {"email": "ann@example.test",
                           "sub": oauth_server.tokens_of("ann@example.test")[0].user.sub}
    assert oauth_server.token_requests == {"authorization_code": 3}
    assert oauth_server.consents == {"approve": 1}


def test_openid_scope_adds_a_signed_id_token(http: httpx.Client, oauth_server: OAuthServer) -> None:
    verifier, challenge = pkce_pair()
    params = authorize_params(oauth_server, challenge, scope=f"openid {SCOPE}")
    code = consent(http, oauth_server, params, email="Ann@Example.test")["code"]
    body = http.post(oauth_server.url("/token"), auth=client_auth(oauth_server), data={
        "grant_type": "authorization_code", "code": code,
        "redirect_uri": oauth_server.url("/callback"), "code_verifier": verifier}).json()
    header, payload, signature = body["id_token"].split(".")
    expected = hmac.new(oauth_server.client.client_secret.encode(), f"{header}.{payload}".encode(),
                        hashlib.sha256).digest()
    assert base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)) == expected
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["email"] == claims["preferred_username"] == "ann@example.test"
    assert claims["aud"] == oauth_server.client.client_id and claims["iss"] == oauth_server.base_url
    # without openid, or with the claims switched off, there is none
    assert "id_token" not in sign_in(http, oauth_server)
    oauth_server.id_token_claims = frozenset()
    verifier, challenge = pkce_pair()
    code = consent(http, oauth_server, authorize_params(oauth_server, challenge, scope=f"openid {SCOPE}"))["code"]
    body = http.post(oauth_server.url("/token"), auth=client_auth(oauth_server), data={
        "grant_type": "authorization_code", "code": code,
        "redirect_uri": oauth_server.url("/callback"), "code_verifier": verifier}).json()
    assert "id_token" not in body and body["access_token"]


@pytest.mark.parametrize("change", [{"code_challenge_method": ""},
                                    {"code_challenge": "", "code_challenge_method": ""},
                                    {"code_challenge_method": "plain"}])
def test_pkce_s256_is_required(http: httpx.Client, oauth_server: OAuthServer,
                               change: dict[str, str]) -> None:
    params = authorize_params(oauth_server, pkce_pair()[1], **change)
    answer = http.get(oauth_server.url("/authorize"), params=params)
    assert answer.status_code == 302  # the redirect_uri is registered: the error goes there
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["error"] == ["invalid_request"] and query["state"] == ["st-42"]


@pytest.mark.parametrize("change", [{"redirect_uri": "http://127.0.0.1:9/elsewhere"},
                                    {"client_id": "nobody"}])
def test_unregistered_redirect_or_client_is_not_redirected_to(
        http: httpx.Client, oauth_server: OAuthServer, change: dict[str, str]) -> None:
    answer = http.get(oauth_server.url("/authorize"),
                      params=authorize_params(oauth_server, pkce_pair()[1], **change))
    assert answer.status_code == 400 and "location" not in answer.headers
    assert "<form" not in answer.text


def test_deny_redirects_access_denied(http: httpx.Client, oauth_server: OAuthServer) -> None:
    redirect = consent(http, oauth_server, authorize_params(oauth_server, pkce_pair()[1]),
                       decision="deny")
    assert redirect["error"] == "access_denied" and redirect["state"] == "st-42"
    assert "code" not in redirect and oauth_server.consents == {"deny": 1}


def test_refresh_rotates_and_reuse_is_refused(http: httpx.Client,
                                              oauth_server: OAuthServer) -> None:
    first = sign_in(http, oauth_server)
    second = refresh(http, oauth_server, first["refresh_token"])
    assert second.status_code == 200, second.text
    second = second.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"] and second["scope"] == SCOPE
    reused = refresh(http, oauth_server, first["refresh_token"])
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
    assert refresh(http, oauth_server, second["refresh_token"]).status_code == 200
    bad_secret = http.post(oauth_server.url("/token"), auth=(oauth_server.client.client_id, "x"),
                           data={"grant_type": "refresh_token", "refresh_token": "whatever"})
    assert (bad_secret.status_code, bad_secret.json()["error"]) == (401, "invalid_client")
    # the access token issued before the refresh lives on until it expires
    assert introspect(http, oauth_server, first["access_token"])["active"] is True
    assert oauth_server.token_requests == {"authorization_code": 1, "refresh_token": 4}


def test_expired_access_token_is_inactive(http: httpx.Client, oauth_server: OAuthServer) -> None:
    oauth_server.access_token_lifetime = 1
    token = sign_in(http, oauth_server)
    assert token["expires_in"] == 1
    live = introspect(http, oauth_server, token["access_token"])
    assert live["active"] is True and live["email"] == "ann@example.test"
    assert live["scope"] == SCOPE and live["client_id"] == oauth_server.client.client_id
    assert live["exp"] <= time.time() + 1
    time.sleep(1.1)
    assert introspect(http, oauth_server, token["access_token"]) == {"active": False}
    assert http.get(oauth_server.url("/userinfo"), headers={
        "Authorization": f"Bearer {token['access_token']}"}).status_code == 401
    assert refresh(http, oauth_server, token["refresh_token"]).status_code == 200
    assert oauth_server.introspections == 2


def test_revocation(http: httpx.Client, oauth_server: OAuthServer) -> None:
    token = sign_in(http, oauth_server)
    revoke = http.post(oauth_server.url("/revoke"), auth=client_auth(oauth_server),
                       data={"token": token["access_token"], "token_type_hint": "access_token"})
    assert revoke.status_code == 200
    assert introspect(http, oauth_server, token["access_token"]) == {"active": False}
    renewed = refresh(http, oauth_server, token["refresh_token"]).json()  # the grant lives
    # Revoking a refresh token ends its grant: its access tokens die too (RFC 7009 2.1).
    http.post(oauth_server.url("/revoke"), data={
        "token": renewed["refresh_token"], "client_id": oauth_server.client.client_id,
        "client_secret": oauth_server.client.client_secret})
    assert introspect(http, oauth_server, renewed["access_token"]) == {"active": False}
    assert refresh(http, oauth_server, renewed["refresh_token"]).json()["error"] == "invalid_grant"


def test_revoke_grants_switch(http: httpx.Client, oauth_server: OAuthServer) -> None:
    ann, bob = sign_in(http, oauth_server), sign_in(http, oauth_server, "bob@example.test")
    assert oauth_server.revoke_grants("Ann@example.test") == 2  # access + refresh
    assert introspect(http, oauth_server, ann["access_token"]) == {"active": False}
    assert refresh(http, oauth_server, ann["refresh_token"]).json()["error"] == "invalid_grant"
    assert introspect(http, oauth_server, bob["access_token"])["active"] is True


def test_token_endpoint_down(http: httpx.Client, oauth_server: OAuthServer) -> None:
    token = sign_in(http, oauth_server)
    oauth_server.token_endpoint_down = True
    down = refresh(http, oauth_server, token["refresh_token"])
    assert down.status_code == 503
    oauth_server.token_endpoint_down = False
    assert refresh(http, oauth_server, token["refresh_token"]).status_code == 200
    assert oauth_server.token_requests == {"authorization_code": 1, "refresh_token": 2}


def test_introspection_needs_client_authentication(http: httpx.Client,
                                                   oauth_server: OAuthServer) -> None:
    token = oauth_server.issue_tokens("ann@example.test")
    anonymous = http.post(oauth_server.introspection_url, data={"token": token["access_token"]})
    assert anonymous.status_code == 401


def test_metadata(http: httpx.Client, oauth_server: OAuthServer) -> None:
    meta = http.get(oauth_server.url("/.well-known/openid-configuration")).json()
    assert meta["token_endpoint"] == oauth_server.url("/token")
    assert meta["introspection_endpoint"] == oauth_server.introspection_url
    assert meta["code_challenge_methods_supported"] == ["S256"]


# ------------------------------------------------------------ IMAP and SMTP


def imap(account: MailAccount) -> IMAPClient:
    dovecot = account.dovecot
    client = IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=10)
    client.starttls(dovecot.ssl_context())
    return client


@pytest.mark.dovecot
def test_imap_logins_with_a_live_token(oauth_server: OAuthServer,
                                       oauth_account: MailAccount) -> None:
    token = oauth_server.issue_tokens(oauth_account.address)["access_token"]
    with imap(oauth_account) as client:
        client.oauth2_login(oauth_account.address, token)
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
    with imap(oauth_account) as client:
        client.oauthbearer_login(oauth_account.address, token)
    with imap(oauth_account) as client:  # the password still works for the same user
        client.login(oauth_account.username, oauth_account.password)
    assert oauth_server.introspections == 2  # no auth cache: every login asks


@pytest.mark.dovecot
@pytest.mark.parametrize("how", ["expired", "revoked", "other user"])
def test_imap_refuses_a_dead_token(oauth_server: OAuthServer, oauth_account: MailAccount,
                                   how: str) -> None:
    email = "someone-else@example.test" if how == "other user" else oauth_account.address
    token = oauth_server.issue_tokens(email)["access_token"]
    if how == "expired":
        oauth_server.expire_access_tokens(email)
    elif how == "revoked":
        oauth_server.revoke_grants(email)
    for login in (IMAPClient.oauth2_login, IMAPClient.oauthbearer_login):
        with imap(oauth_account) as client, pytest.raises(LoginError, match="AUTHENTICATIONFAILED"):
            login(client, oauth_account.address, token)
    # Dovecot's per-IP slow-down after failures (2 s, doubling) is off in the test Dovecot.
    started = time.monotonic()
    with imap(oauth_account) as client:
        client.login(oauth_account.username, oauth_account.password)
    assert time.monotonic() - started < 1.5


@pytest.mark.dovecot
def test_imap_introspection_down_is_temporary(oauth_server: OAuthServer,
                                              oauth_account: MailAccount) -> None:
    token = oauth_server.issue_tokens(oauth_account.address)["access_token"]
    oauth_server.introspection_down = True
    with imap(oauth_account) as client, pytest.raises(LoginError, match="UNAVAILABLE"):
        client.oauth2_login(oauth_account.address, token)


def smtp_token_login(smtp: SmtpServer, user: str, token: str, mechanism: str) -> smtplib.SMTP:
    client = smtplib.SMTP(smtp.host, smtp.port, timeout=10)
    client.starttls(context=smtp.ssl_context())
    if mechanism == "XOAUTH2":
        blob = f"user={user}\x01auth=Bearer {token}\x01\x01"
    else:
        blob = f"n,a={user},\x01auth=Bearer {token}\x01\x01"
    replies = iter([blob, ""])  # the second: the empty answer to a refusal's JSON challenge
    try:
        client.ehlo()
        client.auth(mechanism, lambda challenge=None: next(replies))
    except BaseException:
        client.close()
        raise
    return client


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_smtp_token_logins(oauth_server: OAuthServer, oauth_smtp: SmtpServer,
                           mechanism: str) -> None:
    user = "ann@example.test"
    token = str(oauth_server.issue_tokens(user)["access_token"])
    with smtp_token_login(oauth_smtp, user, token, mechanism) as client:
        assert mechanism in client.esmtp_features["auth"]
        client.sendmail(user, ["bob@example.test"], b"Subject: hi\r\n\r\nhello\r\n")
    assert oauth_smtp.wait_for_messages(1)[0].login == user
    oauth_server.expire_access_tokens(user)
    with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        smtp_token_login(oauth_smtp, user, token, mechanism)
    assert refused.value.smtp_code == 535
    oauth_server.introspection_down = True
    with pytest.raises(smtplib.SMTPAuthenticationError) as unavailable:
        smtp_token_login(oauth_smtp, user, str(oauth_server.issue_tokens(user)["access_token"]),
                         mechanism)
    assert unavailable.value.smtp_code == 454
    assert oauth_server.introspections == 3


def test_smtp_token_of_another_user_is_refused(oauth_server: OAuthServer,
                                               oauth_smtp: SmtpServer) -> None:
    token = str(oauth_server.issue_tokens("mallory@example.test")["access_token"])
    with pytest.raises(smtplib.SMTPAuthenticationError):
        smtp_token_login(oauth_smtp, "ann@example.test", token, "XOAUTH2")


# ------------------------------------------------------------------ browser


@pytest.mark.browser
@pytest.mark.dovecot
def test_consent_approved_in_chromium_gives_a_token_that_logs_in(
        http: httpx.Client, oauth_server: OAuthServer, oauth_account: MailAccount,
        tmp_path: Path) -> None:
    chromium = find_chromium()
    verifier, challenge = pkce_pair()
    params = authorize_params(oauth_server, challenge)
    callback = oauth_server.url("/callback")
    with ChromiumPage(chromium, tmp_path / "profile") as page:
        page.open(f"{oauth_server.url('/authorize')}?{urlencode(params)}")
        # the consent page is pre-filled with the fixture's current user
        assert page.evaluate("document.getElementById('email').value") == oauth_account.address
        page.evaluate("document.getElementById('approve').click()")
        landed = page.wait_for(f"location.href.startsWith({json.dumps(callback + '?')}) && "
                               "document.readyState === 'complete' && location.href")
        shown = page.evaluate("document.getElementById('code').textContent")
    query = {k: v[0] for k, v in parse_qs(urlsplit(landed).query).items()}
    assert query["state"] == "st-42" and query["code"] == shown
    assert oauth_server.callbacks == [query]
    token = http.post(oauth_server.url("/token"), auth=client_auth(oauth_server), data={
        "grant_type": "authorization_code", "code": query["code"],
        "redirect_uri": callback, "code_verifier": verifier}).json()
    with imap(oauth_account) as client:
        client.oauth2_login(oauth_account.address, token["access_token"])
        client.select_folder("INBOX")
