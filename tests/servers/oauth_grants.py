"""Authlib's OAuth2 server components wired to in-memory storage, for the test
authorisation server of tests/servers/oauth.py (which adds HTTP, the consent page and the
test controls). The owner object (an OAuthServer) holds `clients`, `_codes`, `_tokens`,
`access_token_lifetime` and `_save_token`/`_revoke`; callers hold its lock.

Choices beyond Authlib's defaults: PKCE is required of every client and only S256 is
accepted; refresh tokens rotate (a refresh answers a new one and the old one is revoked,
so reusing it is invalid_grant); revoking a refresh token revokes its whole grant (RFC 7009
2.1); introspection is for resource-server clients (``introspect_only``) or the token's own
client, and answers ``active: false`` for expired or revoked tokens.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Payload, OAuth2Request, TokenMixin, grants
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
CODE_LIFETIME = 60.0  # seconds; RFC 6749 recommends at most 10 minutes


@dataclass(frozen=True)
class OAuthUser:
    """The resource owner who approved a consent: identified by e-mail (the IMAP login)."""

    email: str

    @property
    def sub(self) -> str:
        """A stable opaque subject identifier derived from the e-mail."""
        return hashlib.sha256(self.email.encode()).hexdigest()[:24]

    def get_user_id(self) -> str:  # what Authlib asks of a user
        return self.sub


@dataclass(frozen=True)
class OAuthClient(ClientMixin):
    """A registered client: an app (``redirect_uris``) or a resource server that only
    introspects (``introspect_only=True``, e.g. Dovecot). ``scope=None`` allows any scope."""

    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...] = ()
    scope: str | None = None
    introspect_only: bool = False

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if self.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope or self.scope is None:
            return scope or (self.scope or "")
        allowed = set(self.scope.split())
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact match, as RFC 9700 asks

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in CLIENT_AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return not self.introspect_only and response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return not self.introspect_only and grant_type in ("authorization_code", "refresh_token")


@dataclass
class _AuthorizationCode:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: OAuthUser
    code_challenge: str
    code_challenge_method: str
    issued_at: float = field(default_factory=time.time)

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass
class IssuedToken(TokenMixin):
    """One access or refresh token (``kind``) of a grant; what introspection describes."""

    value: str
    kind: str  # "access_token" | "refresh_token"
    grant_id: str
    client_id: str
    user: OAuthUser
    scope: str
    expires_at: float | None  # None: refresh tokens do not expire
    revoked: bool = False

    def check_client(self, client: OAuthClient) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return 0 if self.expires_at is None else int(self.expires_at - time.time())

    def is_expired(self) -> bool:
        return self.expires_at is not None and time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> OAuthUser:
        return self.user

    def get_client(self) -> str:
        return self.client_id


# ----------------------------------------------------------------- Authlib glue


class _Payload(OAuth2Payload):
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list] = defaultdict(list)
        for key, value in pairs:
            self._datalist[key].append(value)
        self._data = {key: values[0] for key, values in self._datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list]:
        return self._datalist


class StarletteOAuth2Request(OAuth2Request):
    """An OAuth2Request from a Starlette request whose body was already read."""

    def __init__(self, request: Request, body: bytes) -> None:
        super().__init__(request.method, str(request.url), headers=request.headers)
        self._args = list(request.query_params.multi_items())
        self._form = parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        self.payload = _Payload(self._args + self._form)

    @property
    def args(self) -> dict[str, str]:
        return dict(self._args)

    @property
    def form(self) -> dict[str, str]:
        return dict(self._form)


class _S256Only(CodeChallenge):
    """PKCE required for every client, S256 only (Authlib's default also allows `plain`,
    and no PKCE at all for confidential clients)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant, redirect_uri) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: missing 'code_challenge'")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE: 'code_challenge_method' must be S256")
        super().validate_code_challenge(grant, redirect_uri)


class _CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        self.server.owner._codes[code] = _AuthorizationCode(
            code, request.client.client_id, data.get("redirect_uri") or "", request.scope or "",
            request.user, data["code_challenge"], data["code_challenge_method"])

    def query_authorization_code(self, code: str, client: OAuthClient) -> _AuthorizationCode | None:
        found = self.server.owner._codes.get(code)
        if found and found.client_id == client.client_id \
                and time.time() - found.issued_at < CODE_LIFETIME:
            return found
        return None

    def delete_authorization_code(self, authorization_code: _AuthorizationCode) -> None:
        self.server.owner._codes.pop(authorization_code.code, None)  # single use

    def authenticate_user(self, authorization_code: _AuthorizationCode) -> OAuthUser:
        return authorization_code.user


class _RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = CLIENT_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation

    def authenticate_refresh_token(self, refresh_token: str) -> IssuedToken | None:
        found = self.server.owner._tokens.get(refresh_token)
        if found and found.kind == "refresh_token" and not found.revoked:
            return found
        return None

    def authenticate_user(self, refresh_token: IssuedToken) -> OAuthUser:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: IssuedToken) -> None:
        refresh_token.revoked = True  # only the refresh token: its access tokens live on


class _Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        return self.server.owner._tokens.get(token_string)

    def revoke_token(self, token: IssuedToken, request: OAuth2Request) -> None:
        if token.kind == "refresh_token":  # RFC 7009 2.1: and the grant's access tokens
            self.server.owner._revoke(lambda t: t.grant_id == token.grant_id)
        token.revoked = True


class _Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = CLIENT_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        return self.server.owner._tokens.get(token_string)

    def check_permission(self, token: IssuedToken, client: OAuthClient, request: object) -> bool:
        return client.introspect_only or token.client_id == client.client_id

    def introspect_token(self, token: IssuedToken) -> dict[str, object]:
        payload: dict[str, object] = {
            "active": True, "client_id": token.client_id, "token_type": "Bearer",
            "scope": token.scope, "email": token.user.email, "sub": token.user.sub,
            "username": token.user.email,
        }
        if token.expires_at is not None:
            payload["exp"] = int(token.expires_at)
        payload.update(self.server.owner.introspection_extra)
        return payload


class MemoryAuthorizationServer(AuthorizationServer):
    def __init__(self, owner) -> None:  # an OAuthServer
        super().__init__()
        self.owner = owner
        self.register_token_generator("default", BearerTokenGenerator(
            lambda **_: secrets.token_urlsafe(32), lambda **_: secrets.token_urlsafe(32),
            lambda client, grant_type: owner.access_token_lifetime))
        self.register_grant(_CodeGrant, [_S256Only(required=True)])
        self.register_grant(_RefreshGrant)
        self.register_endpoint(_Revocation)
        self.register_endpoint(_Introspection)

    def query_client(self, client_id: str) -> OAuthClient | None:
        return self.owner.clients.get(client_id)

    def save_token(self, token: dict, request: OAuth2Request) -> None:
        self.owner._save_token(token, request)

    def create_oauth2_request(self, request: StarletteOAuth2Request) -> StarletteOAuth2Request:
        return request

    def handle_response(self, status: int, body: object, headers: list[tuple[str, str]]) -> Response:
        response_headers = dict(headers)
        if isinstance(body, dict):
            response_headers.pop("Content-Type", None)
            return JSONResponse(body, status, headers=response_headers)
        return Response(body or b"", status, headers=response_headers)

    def send_signal(self, name: str, *args: object, **kwargs: object) -> None:
        pass
