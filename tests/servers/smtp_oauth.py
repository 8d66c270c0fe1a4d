"""AUTH XOAUTH2 and OAUTHBEARER for the aiosmtpd test server (tests/servers/smtp.py): the
bearer token is checked at the identity provider's RFC 7662 introspection endpoint (as the
test Dovecot does), and accepted when it is active and issued to the SASL user.

Wire behaviour copies what Gmail and Dovecot do: a refused token gets a ``334`` challenge
holding a base64 JSON error, the client answers it (an empty line, or ^A for OAUTHBEARER),
then ``535 5.7.8``. An introspection endpoint that is down or answers non-2xx gives ``454
4.7.0`` (temporary), not a refusal: a client must not ask the user to sign in again for it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

import httpx2 as httpx
from aiosmtpd.smtp import MISSING, SMTP, AuthResult

MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
REFUSED = "535 5.7.8 Authentication credentials invalid"
TEMPORARY = "454 4.7.0 Temporary authentication failure"


@dataclass(frozen=True)
class OAuthLogin:
    """`session.auth_data` of a successful token login (`login` as bytes, like
    aiosmtpd's LoginPassword)."""

    login: bytes
    mechanism: str


@dataclass(frozen=True)
class Introspector:
    """Where and as which client to introspect tokens."""

    url: str
    client_id: str
    client_secret: str

    async def email_of(self, token: str) -> str | None:
        """The e-mail of an active token, None if inactive; raises httpx.HTTPError
        (or ValueError) when the endpoint is unreachable or misbehaves."""
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(self.url, data={
                "token": token, "client_id": self.client_id,
                "client_secret": self.client_secret})
        response.raise_for_status()
        answer = response.json()
        # `active` must be present and true (Dovecot wrongly lets a missing one pass).
        if answer.get("active") is not True:
            return None
        return str(answer.get("email") or "").lower() or None


def parse_xoauth2(blob: bytes) -> tuple[str, str] | None:
    """(user, token) from ``user=U^Aauth=Bearer T^A^A``, or None."""
    fields = dict(part.split("=", 1) for part in blob.decode("utf-8", "replace").split("\x01")
                  if "=" in part)
    user, auth = fields.get("user", ""), fields.get("auth", "")
    scheme, _, token = auth.partition(" ")
    return (user, token.strip()) if user and scheme.lower() == "bearer" and token else None


def parse_oauthbearer(blob: bytes) -> tuple[str, str] | None:
    """(authzid, token) from RFC 7628's ``n,a=U,^Aauth=Bearer T^A^A``, or None."""
    text = blob.decode("utf-8", "replace")
    gs2, _, rest = text.partition("\x01")
    user = ""
    for item in gs2.split(",")[1:]:
        if item.startswith("a="):
            user = item[2:].replace("=2C", ",").replace("=3D", "=")
    fields = dict(part.split("=", 1) for part in rest.split("\x01") if "=" in part)
    scheme, _, token = fields.get("auth", "").partition(" ")
    return (user, token.strip()) if user and scheme.lower() == "bearer" and token else None


class OAuthMechanisms:
    """Mixin for an aiosmtpd handler: `auth_XOAUTH2` / `auth_OAUTHBEARER` (aiosmtpd finds
    handler methods by name). The handler sets `introspector` (None: mechanisms off)."""

    introspector: Introspector | None = None

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._token_login(server, args, "XOAUTH2", parse_xoauth2)

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._token_login(server, args, "OAUTHBEARER", parse_oauthbearer)

    async def _token_login(self, server: SMTP, args: list[str], mechanism: str,
                           parse) -> AuthResult:
        if self.introspector is None:
            return AuthResult(success=False, handled=False,
                              message="504 5.5.4 Unrecognized authentication type")
        if len(args) > 1:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except (binascii.Error, ValueError):
                return AuthResult(success=False, handled=False,
                                  message="501 5.5.2 Can't decode base64")
        else:
            answer = await server.challenge_auth("")
            if answer is MISSING:
                return AuthResult(success=False, handled=True)  # aiosmtpd already said 501
            blob = answer
        parsed = parse(blob)
        if parsed is None:
            return AuthResult(success=False, handled=False,
                              message="501 5.5.2 Malformed initial response")
        user, token = parsed
        try:
            email = await self.introspector.email_of(token)
        except (httpx.HTTPError, ValueError):
            return AuthResult(success=False, handled=False, message=TEMPORARY)
        if email is not None and email == user.lower():
            return AuthResult(success=True, auth_data=OAuthLogin(user.encode(), mechanism))
        # Refusal: the JSON error challenge, whose answer ends the exchange. The result
        # must be handled=False so aiosmtpd sends the 535 (handled=True sends nothing and
        # the client hangs).
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": ""})
        if await server.challenge_auth(error) is MISSING:
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, message=REFUSED)
