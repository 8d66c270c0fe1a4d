"""A local OAuth2 authorisation server for tests: the identity provider of "Sign in with
Google/Microsoft" when there is no internet.

Built from Authlib's server components (``authlib.oauth2``: the RFC 6749 grants, RFC 7636
PKCE, RFC 7009 revocation, RFC 7662 introspection), wired to in-memory storage in
oauth_grants.py; this module adds HTTP (Starlette under uvicorn, in a thread, on a free
port of 127.0.0.1), the HTML consent page and the test controls. Authlib accepts plain ``http://`` here because
RFC 8252 lets loopback addresses use it.

Endpoints (``OAuthServer.url(...)`` gives absolute URLs)::

    GET  /authorize      consent page (code flow, PKCE S256 required, `state` echoed)
    POST /authorize      the page's form: decision=approve|deny, email=<who logs in>
    POST /token          authorization_code | refresh_token (rotated); client_secret_post
                         or client_secret_basic; a code granted with scope ``openid`` also
                         answers an OpenID Connect ID token (HS256 with the client secret)
                         with the claims ``email`` and ``preferred_username``
    POST /revoke         RFC 7009 (the owning client authenticates)
    POST /introspect     RFC 7662 (a resource-server client authenticates, e.g. Dovecot)
    GET  /userinfo       Bearer access token -> {"email", "sub"}
    GET  /callback       the default client's redirect_uri: a page echoing its query
    GET  /.well-known/openid-configuration  (also /.well-known/oauth-authorization-server)

Token semantics: an access token lives ``access_token_lifetime`` seconds; refresh tokens do
not expire but are single-use (each refresh answers a new one; the old one is then
``invalid_grant``); the access tokens issued before a refresh stay valid until they expire.
Introspection answers ``active: false`` for expired or revoked tokens itself, because
Dovecot ignores ``exp``. Revoking a refresh token (RFC 7009 or :meth:`revoke_grants`)
revokes every token of that grant (one code exchange and its refreshes).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import socket
import threading
import time
from collections import Counter

import uvicorn
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import OAuth2Request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from .oauth_grants import (
    CLIENT_AUTH_METHODS,
    IssuedToken,
    MemoryAuthorizationServer,
    OAuthClient,
    OAuthUser,
    StarletteOAuth2Request,
    _AuthorizationCode,
)

__all__ = ["IssuedToken", "OAuthClient", "OAuthServer", "OAuthUser", "pkce_pair"]

# ------------------------------------------------------------------ the server


def pkce_pair() -> tuple[str, str]:
    """A fresh PKCE (code_verifier, S256 code_challenge) pair."""
    verifier = secrets.token_urlsafe(48)
    return verifier, create_s256_code_challenge(verifier)


_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>
<body>{body}</body></html>"""

_CONSENT = """<h1>Sign in to {client}</h1>
<p id="scope">{client} asks for: {scope}</p>
<form method="post" action="/authorize?{query}">
  <label>E-mail <input id="email" name="email" type="email" value="{email}"></label>
  <button id="approve" type="submit" name="decision" value="approve">Approve</button>
  <button id="deny" type="submit" name="decision" value="deny">Deny</button>
</form>"""


class OAuthServer:
    """The in-memory authorisation server; ``start()``/``stop()`` or a context manager.

    Constructor: ``access_token_lifetime`` (seconds, also settable later). After start():
    ``base_url``, ``url(path)``, ``client`` (the default app client, redirect_uri
    ``url("/callback")``) and ``resource_client`` (introspection only, for Dovecot/SMTP).

    Test controls (all thread-safe, effective immediately): ``current_user`` (pre-fills
    the consent page's e-mail; a ``login_hint`` parameter wins), ``token_endpoint_down`` /
    ``introspection_down`` (answer 503), ``revoke_grants(email)``,
    ``expire_access_tokens(email)``, ``issue_tokens(email)`` (tokens without the browser
    flow), ``id_token_claims`` (the claims ID tokens carry: a subset of ``email``,
    ``preferred_username``; empty: no ID token at all), ``introspection_extra`` (fields
    added to every active introspection answer), counters ``token_requests`` (per
    grant_type, failed and 503 ones included), ``introspections``, ``userinfo_requests``,
    ``consents`` (approve/deny), ``callbacks`` (queries that reached ``/callback``), and
    ``reset()``.
    """

    host = "127.0.0.1"

    def __init__(self, *, access_token_lifetime: int = 3600) -> None:
        self.default_lifetime = access_token_lifetime
        self.access_token_lifetime = access_token_lifetime
        self.clients: dict[str, OAuthClient] = {}
        self._codes: dict[str, _AuthorizationCode] = {}
        self._tokens: dict[str, IssuedToken] = {}
        self._lock = threading.RLock()
        self._server = MemoryAuthorizationServer(self)
        self._uvicorn: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.port = 0
        self.reset()

    # ------------------------------------------------------------ controls

    def reset(self) -> None:
        """Forget tokens, codes, counters and switches (registered clients stay)."""
        with self._lock:
            self._codes.clear()
            self._tokens.clear()
            self.current_user: str | None = None
            self.access_token_lifetime = self.default_lifetime
            self.token_endpoint_down = False
            self.introspection_down = False
            self.token_requests: Counter[str] = Counter()
            self.introspections = 0
            self.userinfo_requests = 0
            self.introspection_extra: dict[str, str] = {}
            self.id_token_claims: frozenset[str] = frozenset({"email", "preferred_username"})
            self.consents: Counter[str] = Counter()
            self.callbacks: list[dict[str, str]] = []

    def register_client(
        self, client_id: str | None = None, client_secret: str | None = None, *,
        redirect_uris: tuple[str, ...] = (), scope: str | None = None,
        introspect_only: bool = False,
    ) -> OAuthClient:
        """Register (or replace) a client; id and secret default to random values."""
        client = OAuthClient(client_id or f"client-{secrets.token_hex(4)}",
                             client_secret or secrets.token_urlsafe(24),
                             tuple(redirect_uris), scope, introspect_only)
        with self._lock:
            self.clients[client.client_id] = client
        return client

    def revoke_grants(self, email: str, client_id: str | None = None) -> int:
        """The user withdraws consent (all clients, or one): every token of their grants
        is revoked (refresh -> invalid_grant, introspection -> inactive). Returns how many."""
        return self._revoke(lambda t: t.user.email == email.lower()
                            and client_id in (None, t.client_id))

    def expire_access_tokens(self, email: str | None = None) -> int:
        """Make the live access tokens (of `email`, or all) expire now; returns how many."""
        count = 0
        with self._lock:
            for token in self._tokens.values():
                if token.kind == "access_token" and email in (None, token.user.email) \
                        and not token.is_expired():
                    token.expires_at = time.time()
                    count += 1
        return count

    def issue_tokens(self, email: str, client: OAuthClient | None = None,
                     scope: str = "") -> dict[str, object]:
        """A token response for `email` as a code exchange would give, without the consent
        page and not counted in ``token_requests``."""
        client = client or self.client
        with self._lock:
            token = self._server.generate_token("authorization_code", client,
                                                OAuthUser(email.lower()), scope)
            self._store(token, client.client_id, OAuthUser(email.lower()),
                        secrets.token_hex(8))
        return token

    def tokens_of(self, email: str) -> list[IssuedToken]:
        """The tokens ever issued to `email` (live or not), oldest first."""
        with self._lock:
            return [t for t in self._tokens.values() if t.user.email == email.lower()]

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def introspection_url(self) -> str:
        return self.url("/introspect")

    # ------------------------------------------------------------- storage

    def _revoke(self, which) -> int:
        with self._lock:
            hits = [t for t in self._tokens.values() if which(t) and not t.revoked]
            for token in hits:
                token.revoked = True
            return len(hits)

    def _save_token(self, token: dict, request: OAuth2Request) -> None:
        if request.refresh_token is not None:  # a refresh continues its grant
            grant_id = request.refresh_token.grant_id
        else:
            grant_id = secrets.token_hex(8)
        self._store(token, request.client.client_id, request.user, grant_id)

    def _store(self, token: dict, client_id: str, user: OAuthUser, grant_id: str) -> None:
        common = dict(grant_id=grant_id, client_id=client_id, user=user,
                      scope=token.get("scope", ""))
        self._tokens[token["access_token"]] = IssuedToken(
            token["access_token"], "access_token",
            expires_at=time.time() + token["expires_in"], **common)
        if "refresh_token" in token:
            self._tokens[token["refresh_token"]] = IssuedToken(
                token["refresh_token"], "refresh_token", expires_at=None, **common)

    # ---------------------------------------------------------------- HTTP

    async def _authorize(self, request: Request) -> Response:
        req = StarletteOAuth2Request(request, await request.body())
        with self._lock:
            try:
                grant = self._server.get_consent_grant(req)
            except OAuth2Error as error:
                if error.redirect_uri:  # redirect_uri verified: tell the client (RFC 6749 4.1.2.1)
                    return self._server.handle_error_response(req, error)
                return _page("Error", f"<p id='error'>{html.escape(error.error)}: "
                             f"{html.escape(error.description or '')}</p>", 400)
            client = grant.request.client
            if request.method == "GET":
                email = req.payload.data.get("login_hint") or self.current_user or ""
                return _page("Consent", _CONSENT.format(
                    client=html.escape(client.client_id), scope=html.escape(grant.request.scope),
                    query=html.escape(request.url.query), email=html.escape(email)))
            decision, email = req.form.get("decision"), req.form.get("email", "").strip().lower()
            if decision == "approve" and "@" not in email:
                return _page("Error", "<p id='error'>enter the e-mail address to sign in as</p>", 400)
            self.consents[decision or "none"] += 1
            user = OAuthUser(email) if decision == "approve" else None  # None: access_denied
            return self._server.create_authorization_response(req, grant_user=user, grant=grant)

    async def _token(self, request: Request) -> Response:
        req = StarletteOAuth2Request(request, await request.body())
        with self._lock:
            self.token_requests[req.form.get("grant_type", "")] += 1
            if self.token_endpoint_down:
                return JSONResponse({"error": "temporarily_unavailable"}, 503)
            response = self._server.create_token_response(req)
            if req.form.get("grant_type") == "authorization_code" and response.status_code == 200:
                response = self._with_id_token(response)
            return response

    def _with_id_token(self, response: Response) -> Response:
        """Add an OpenID Connect ID token to a code exchange's answer when ``openid`` was
        granted (signed HS256 with the client secret, as OIDC Core §10.1 allows)."""
        body = json.loads(bytes(response.body))
        issued = self._tokens[body["access_token"]]
        if "openid" not in issued.scope.split() or not self.id_token_claims:
            return response
        now = int(time.time())
        claims = {"iss": self.base_url, "sub": issued.user.sub, "aud": issued.client_id,
                  "iat": now, "exp": now + 3600}
        claims.update({name: issued.user.email for name in self.id_token_claims})
        secret = self.clients[issued.client_id].client_secret.encode()
        body["id_token"] = _jwt_hs256(claims, secret)
        return JSONResponse(body, 200, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    async def _revoke_endpoint(self, request: Request) -> Response:
        req = StarletteOAuth2Request(request, await request.body())
        with self._lock:
            return self._server.create_endpoint_response("revocation", req)

    async def _introspect(self, request: Request) -> Response:
        req = StarletteOAuth2Request(request, await request.body())
        with self._lock:
            self.introspections += 1
            if self.introspection_down:
                return JSONResponse({"error": "temporarily_unavailable"}, 503)
            return self._server.create_endpoint_response("introspection", req)

    async def _userinfo(self, request: Request) -> Response:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        with self._lock:
            self.userinfo_requests += 1
            token = self._tokens.get(value.strip()) if scheme.lower() == "bearer" else None
            if token is None or token.kind != "access_token" or token.is_expired() \
                    or token.revoked:
                return JSONResponse({"error": "invalid_token"}, 401, headers={
                    "WWW-Authenticate": 'Bearer error="invalid_token"'})
            return JSONResponse({"email": token.user.email, "sub": token.user.sub})

    async def _callback(self, request: Request) -> Response:
        query = dict(request.query_params)
        with self._lock:
            self.callbacks.append(query)
        items = "".join(f"<dd id='{html.escape(k)}'>{html.escape(v)}</dd>" for k, v in query.items())
        return _page("Callback", f"<dl id='result'>{items}</dl>")

    async def _metadata(self, request: Request) -> Response:
        return JSONResponse({
            "issuer": self.base_url,
            "authorization_endpoint": self.url("/authorize"),
            "token_endpoint": self.url("/token"),
            "revocation_endpoint": self.url("/revoke"),
            "introspection_endpoint": self.url("/introspect"),
            "userinfo_endpoint": self.url("/userinfo"),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
            "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        })

    # ----------------------------------------------------------- lifecycle

    def start(self, timeout: float = 15.0) -> OAuthServer:
        """Listen on a free port of 127.0.0.1 (returns once serving) and register the
        default clients."""
        app = Starlette(routes=[
            Route("/authorize", self._authorize, methods=["GET", "POST"]),
            Route("/token", self._token, methods=["POST"]),
            Route("/revoke", self._revoke_endpoint, methods=["POST"]),
            Route("/introspect", self._introspect, methods=["POST"]),
            Route("/userinfo", self._userinfo, methods=["GET"]),
            Route("/callback", self._callback, methods=["GET"]),
            Route("/.well-known/openid-configuration", self._metadata, methods=["GET"]),
            Route("/.well-known/oauth-authorization-server", self._metadata, methods=["GET"]),
        ])
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind((self.host, 0))
        self.port = self._sock.getsockname()[1]
        self.client = self.register_client("salesinbox-test",
                                           redirect_uris=(self.url("/callback"),))
        self.resource_client = self.register_client("mail-resource-server",
                                                    introspect_only=True)
        self._uvicorn = uvicorn.Server(uvicorn.Config(
            app, log_level="warning", access_log=False, lifespan="off"))
        self._thread = threading.Thread(target=self._uvicorn.run,
                                        kwargs={"sockets": [self._sock]}, daemon=True,
                                        name=f"oauth-server-{self.port}")
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._uvicorn.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the OAuth test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=15)
        if self._sock is not None:
            self._sock.close()
        self._uvicorn = self._thread = self._sock = None

    def __enter__(self) -> OAuthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt_hs256(claims: dict, secret: bytes) -> str:
    """A compact JWS (RFC 7515) of ``claims`` signed HS256."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=title, body=body), status)
