"""SASL messages the IMAP and SMTP clients send (the OAuth2 mechanisms' first message), and
removing a login's secret, in every form a client sends it, from text meant for people.
"""

from __future__ import annotations

import base64

from ..plugin_host.providers import LoginMechanism
from .server_login import ServerLogin

__all__ = ["TOKEN_MECHANISMS", "sasl_forms", "scrub", "token_initial_response"]


def sasl_forms(login: ServerLogin) -> list[str]:
    """The secret in every form a client might send it: clear and inside base64 SASL."""
    secret = login.secret.reveal()
    if not secret:
        return []
    user = login.username
    payloads = [
        f"\0{user}\0{secret}",  # PLAIN
        f"user={user}\1auth=Bearer {secret}\1\1",  # XOAUTH2
        secret,  # LOGIN sends it alone
    ]
    forms = [secret]
    for payload in payloads:
        forms.append(base64.b64encode(payload.encode("utf-8")).decode("ascii"))
    return forms


def scrub(text: str, login: ServerLogin) -> str:
    """``text`` with the login's secret (clear or base64 SASL form) replaced by ``********``."""
    for form in sasl_forms(login):
        text = text.replace(form, "********")
    return text

#: the mechanisms that log in with an OAuth2 access token
TOKEN_MECHANISMS = frozenset({LoginMechanism.XOAUTH2, LoginMechanism.OAUTHBEARER})


def token_initial_response(mechanism: LoginMechanism, username: str, token: str) -> tuple[str, str]:
    """The client's first message of SASL ``mechanism`` (XOAUTH2 or OAUTHBEARER) presenting
    the access token, and its answer to an error challenge."""
    if mechanism is LoginMechanism.OAUTHBEARER:
        # RFC 7628 §3.1: a GS2 header naming the user (RFC 5801 escapes "," and "="), then
        # the bearer token between ^A separators; an error challenge is answered with ^A.
        user = username.replace("=", "=3D").replace(",", "=2C")
        return f"n,a={user},\1auth=Bearer {token}\1\1", "\1"
    return f"user={username}\1auth=Bearer {token}\1\1", ""
