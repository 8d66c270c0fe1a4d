"""Binding a "Sign in with …" to the browser that opens it.

The ``state`` of a sign-in ties the provider's answer to the CRM user who started it, but
not to a browser: whoever approves the consent at the provider finishes it. Someone could
then start a sign-in and send the provider's consent link to a colleague, whose approval
would connect the colleague's mailbox to the sender's CRM account (consent phishing).

So the link a user opens is not the provider's: ``startOAuthSignIn`` answers this server's
``/oauth/start?ticket=…`` (:func:`launch_url`). Opening it (:func:`launch_sign_in`, once
only) sets a random secret in an HttpOnly cookie of that browser, keeps its hash on the
sign-in, and redirects to the provider. The callback finishes only in a browser that holds
the secret (:func:`browser_matches`): a provider link copied to another browser, or a
callback replayed elsewhere, ends with ``OAUTH_BROWSER_MISMATCH``. The provider's consent
URL itself is never shown to the user who started, only to the browser that opened the link.

What this cannot stop: someone forwarding the *unopened* ``/oauth/start`` link, which then
binds the browser of whoever opens it first. The link is single use and lives as long as
the sign-in (10 minutes), and the frontend opens it at once; the README says so.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as random
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode, urlsplit

from ..db.models import OAuthSignIn, OAuthSignInStatus
from ..errors import ErrorCode, SalesInboxError
from ..settings import Settings
from .oauth_clients import CALLBACK_PATH, redirect_url

#: the path of this server whose link starts a sign-in in a browser
START_PATH = "/oauth/start"
_COOKIE_PREFIX = "salesinbox_oauth_"


def digest(value: str) -> str:
    """The stored form of a ticket or browser secret: SHA-256, hex (both are random and
    long, so no salt or slow hash is needed; a database reader cannot use them)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def new_ticket() -> tuple[str, str]:
    """A fresh launch ticket: (the value for the link, its digest for the sign-in row)."""
    ticket = random.token_urlsafe(32)
    return ticket, digest(ticket)


def _public_base(settings: Settings) -> str:
    """``SALESINBOX_PUBLIC_URL`` without a trailing ``/``, checked as :func:`redirect_url` does."""
    return redirect_url(settings).removesuffix(CALLBACK_PATH)


def launch_url(settings: Settings, ticket: str) -> str:
    """``<public_url>/oauth/start?ticket=…``: the link the user's browser opens."""
    return _public_base(settings) + START_PATH + "?" + urlencode({"ticket": ticket})


@dataclass(frozen=True)
class BrowserBinding:
    """What the launch sets in the browser: cookie ``name`` = ``value`` on ``path`` for
    ``max_age`` seconds (the sign-in's remaining life), ``secure`` when the server is
    reached over https."""

    name: str
    value: str
    path: str
    secure: bool
    max_age: int


@dataclass(frozen=True)
class Launch:
    """A launched sign-in: where to send the browser, and the cookie to set first."""

    sign_in: OAuthSignIn
    provider_url: str
    binding: BrowserBinding


def cookie_name(sign_in_id: int) -> str:
    """One cookie per sign-in, so that two sign-ins in one browser do not clash."""
    return f"{_COOKIE_PREFIX}{sign_in_id}"


def cookie_path(settings: Settings) -> str:
    """The cookie is sent only to ``/oauth/…`` of this server (behind its path prefix)."""
    return urlsplit(_public_base(settings)).path + "/oauth"


async def launch_sign_in(ticket: str, settings: Settings) -> Launch:
    """Open the sign-in whose link carries ``ticket`` in this browser: once only.

    :raises SalesInboxError: ``OAUTH_STATE_INVALID`` for an unknown ticket or a link opened
        before (a second browser, a reload), ``OAUTH_STATE_EXPIRED`` after the sign-in's
        lifetime; both say to start again. Nothing is bound then.
    """
    row = await OAuthSignIn.get_or_none(launch_ticket=digest(ticket)) if ticket else None
    if row is None or row.status != OAuthSignInStatus.PENDING or row.authorization_url is None:
        raise SalesInboxError(ErrorCode.OAUTH_STATE_INVALID, start_again(
            "This sign-in link is unknown to the server (an old or altered link)."))
    now = datetime.now(UTC)
    if row.expires_at <= now:
        raise SalesInboxError(ErrorCode.OAUTH_STATE_EXPIRED, start_again(
            "This sign-in link is older than its 10 minutes."))
    secret = random.token_urlsafe(32)
    claimed = await OAuthSignIn.filter(id=row.id, launched_at=None).update(
        launched_at=now, browser_binding=digest(secret))
    if not claimed:
        raise SalesInboxError(ErrorCode.OAUTH_STATE_INVALID, start_again(
            "This sign-in link was already opened (in another tab or browser, or reloaded)."))
    binding = BrowserBinding(
        name=cookie_name(row.id), value=secret, path=cookie_path(settings),
        secure=urlsplit(settings.public_url.strip()).scheme == "https",
        max_age=max(1, int((row.expires_at - now).total_seconds())),
    )
    return Launch(row, row.authorization_url, binding)


def browser_matches(row: OAuthSignIn, cookies: dict[str, str]) -> bool:
    """Whether the browser at the callback holds the secret set when ``row`` was launched."""
    value = cookies.get(cookie_name(row.id))
    if not value or not row.browser_binding:
        return False
    return hmac.compare_digest(digest(value), row.browser_binding)


def browser_mismatch() -> SalesInboxError:
    """The callback reached a browser that did not open the sign-in link."""
    return SalesInboxError(ErrorCode.OAUTH_BROWSER_MISMATCH, start_again(
        "This browser did not open the sign-in link, so nothing was connected (a consent link "
        "passed on to someone else, or finished in another browser). Start the sign-in again "
        "and approve it in the browser that opens the link."))


def start_again(reason: str) -> str:
    """``reason``, then how to start over (every failed sign-in ends so)."""
    return f"{reason} Start again from the app (\"Connect with …\", i.e. startOAuthSignIn)."
