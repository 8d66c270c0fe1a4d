"""API bearer tokens: issued once in clear, stored as SHA-256, revocable, optionally expiring."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from ..db.models import ApiToken, Profile, User
from ..errors import ErrorCode, SalesInboxError, invalid_input, not_found

TOKEN_PREFIX = "sit_"
# Writing last_used_at on every request would turn reads into writes: once a minute is enough.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(token: str) -> str:
    """Return the hex SHA-256 of ``token`` (tokens are random, so no salt is needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


async def issue_token(
    user: User, name: str, *, expires_in_days: int | None = None
) -> tuple[ApiToken, str]:
    """Create a token for ``user`` and return the row and the clear token (shown only once)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise invalid_input("A token needs a name of 1 to 100 characters.", field="name")
    if expires_in_days is not None and not 1 <= expires_in_days <= 3650:
        raise invalid_input("expiresInDays must be between 1 and 3650.", field="expiresInDays")
    clear = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires_at = (
        datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    )
    row = await ApiToken.create(
        user=user,
        name=name,
        token_hash=hash_token(clear),
        prefix=clear[: len(TOKEN_PREFIX) + 6],
        expires_at=expires_at,
    )
    return row, clear


@dataclass
class _Entry:
    user: User
    token_id: int
    expires_at: datetime | None
    last_used_at: datetime | None
    cached_at: float


class TokenCache:
    """Tokens this process authenticated in the last ``ttl`` seconds, so that a frontend's
    burst of requests costs one token lookup instead of one each (≈ 0.7 ms of ORM a request).

    Revoking a token, or changing or deactivating its user, through this module or
    :mod:`salesinbox.core.crm.users` forgets the user's entries at once in this process; another
    server process sharing the database notices within ``ttl`` seconds, or at once when the
    processes relay :meth:`forget_user` (:mod:`salesinbox.core.scale_out.notify_relay`). Expiry is checked on
    every use. ``ttl`` 0 turns the cache off. Entries hold no clear token, only its hash.
    """

    def __init__(self, ttl: float = 5.0, maxsize: int = 10_000) -> None:
        self.ttl = ttl
        self.maxsize = maxsize
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._listeners: set[Callable[[int], None]] = set()

    def get(self, digest: str) -> _Entry | None:
        """The fresh entry for a token hash, or ``None``."""
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if time.monotonic() - entry.cached_at >= self.ttl:
            del self._entries[digest]
            return None
        return entry

    def put(self, digest: str, entry: _Entry) -> None:
        """Remember an authenticated token (the oldest entry goes when full)."""
        if self.ttl <= 0:
            return
        self._entries[digest] = entry
        self._entries.move_to_end(digest)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)

    def forget_user(self, user_id: int) -> None:
        """Drop every entry of ``user_id`` (after a revocation or a change of the user), then
        tell the listeners, so that open WebSocket connections re-check their token now."""
        for digest in [d for d, e in self._entries.items() if e.user.id == user_id]:
            del self._entries[digest]
        for listener in list(self._listeners):
            listener(user_id)

    def add_listener(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(user_id)`` after each :meth:`forget_user`; it must not block."""
        self._listeners.add(listener)

    def remove_listener(self, listener: Callable[[int], None]) -> None:
        """Stop calling ``listener`` (no error if it was not added)."""
        self._listeners.discard(listener)

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()


#: The process-wide cache used by :func:`authenticate`; the server sets its ``ttl`` from
#: ``Settings.token_cache_seconds``.
token_cache = TokenCache()


class Refusal(StrEnum):
    """Why a caller is not authenticated (the error code is ``UNAUTHENTICATED`` for all)."""

    MISSING = "missing"
    MALFORMED = "malformed"
    UNKNOWN = "unknown"
    REVOKED = "revoked"
    EXPIRED = "expired"
    DEACTIVATED = "deactivated"


class Unauthenticated(SalesInboxError):
    """``UNAUTHENTICATED``, with the :class:`Refusal` reason (a WebSocket closes with 4403 for a
    deactivated user and 4401 for the rest)."""

    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(ErrorCode.UNAUTHENTICATED, message)
        self.reason = reason


async def authenticate(authorization_header: object) -> User:
    """Return the active user whose token is in an ``Authorization: Bearer`` header.

    Raises :class:`Unauthenticated` with a message saying how to get a token. Uses
    :data:`token_cache`: the returned ``User`` may be shared by concurrent requests, so
    treat it as read-only (load a fresh row to change a user).
    """
    if authorization_header is None or authorization_header == "":
        raise Unauthenticated(
            Refusal.MISSING,
            "Missing API token: send the header 'Authorization: Bearer <token>'. An admin "
            "creates tokens with `salesinbox create-admin` or the issueToken mutation."
        )
    if not isinstance(authorization_header, str):  # e.g. a number in a WebSocket's connection_init
        raise Unauthenticated(Refusal.MALFORMED, "Authorization must be the string 'Bearer <token>'.")
    scheme, _, token = authorization_header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated(Refusal.MALFORMED, "The Authorization header must be 'Bearer <token>'.")
    digest = hash_token(token)
    now = datetime.now(UTC)
    entry = token_cache.get(digest)
    if entry is None:
        entry = await _load_token(digest, now)
        token_cache.put(digest, entry)
    if entry.expires_at is not None and entry.expires_at <= now:
        raise Unauthenticated(Refusal.EXPIRED, "This API token has expired: ask an admin for a new one.")
    if entry.last_used_at is None or now - entry.last_used_at > _LAST_USED_RESOLUTION:
        entry.last_used_at = now
        await ApiToken.filter(id=entry.token_id).update(last_used_at=now)
    return entry.user


async def _load_token(digest: str, now: datetime) -> _Entry:
    """The token's row and user, checked (revoked, deactivated); raises UNAUTHENTICATED."""
    row = await ApiToken.get_or_none(token_hash=digest).select_related("user")
    # compare_digest on the stored hash: the lookup is by hash, this keeps the check constant-time.
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        raise Unauthenticated(Refusal.UNKNOWN, "This API token is not valid: ask an admin for a new one.")
    if row.revoked_at is not None:
        raise Unauthenticated(Refusal.REVOKED, "This API token was revoked: ask an admin for a new one.")
    if not row.user.is_active:
        raise Unauthenticated(Refusal.DEACTIVATED, "This user is deactivated: ask an admin to reactivate it.")
    return _Entry(row.user, row.id, row.expires_at, row.last_used_at, time.monotonic())


async def issue_token_for(
    actor: User, user_id: int | None, name: str, *, expires_in_days: int | None = None
) -> tuple[ApiToken, str]:
    """Issue a token for ``user_id`` (default: the actor). Only admins issue for others."""
    owner = actor
    if user_id is not None and user_id != actor.id:
        if actor.profile != Profile.ADMIN:
            raise SalesInboxError(
                ErrorCode.FORBIDDEN, "Only an admin can issue tokens for other users."
            )
        found = await User.get_or_none(id=user_id, organisation_id=actor.organisation_id)
        if found is None:
            raise not_found("user")
        owner = found
    return await issue_token(owner, name, expires_in_days=expires_in_days)


async def list_tokens(actor: User, user_id: int | None = None) -> list[ApiToken]:
    """List the tokens of ``user_id`` (default: the actor). Only admins see other users'."""
    target_id = actor.id if user_id is None else user_id
    if target_id != actor.id and actor.profile != Profile.ADMIN:
        raise SalesInboxError(ErrorCode.FORBIDDEN, "Only an admin can list other users' tokens.")
    return await ApiToken.filter(user_id=target_id).order_by("-created_at", "-id")


async def revoke_token(actor: User, token_id: int) -> ApiToken:
    """Revoke a token. Users revoke their own; admins revoke anyone's. Idempotent."""
    row = await ApiToken.get_or_none(id=token_id)
    if row is None or (row.user_id != actor.id and actor.profile != Profile.ADMIN):
        raise not_found("API token")
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        await row.save(update_fields=["revoked_at"])
    token_cache.forget_user(row.user_id)
    return row
