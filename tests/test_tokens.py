"""API tokens in the core: hashing, expiry, revocation, last use."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from salesinbox.core import tokens as tokens_module
from salesinbox.core.errors import ErrorCode, SalesInboxError
from salesinbox.core.models import ApiToken, Profile, User
from salesinbox.core.tokens import (
    TokenCache,
    _Entry,
    authenticate,
    hash_token,
    issue_token,
    list_tokens,
    revoke_token,
    token_cache,
)
from salesinbox.core.users import update_user


async def test_only_the_hash_is_stored(rep: User) -> None:
    row, clear = await issue_token(rep, "laptop")
    assert row.token_hash == hash_token(clear) and clear not in (row.token_hash, row.prefix)
    assert clear.startswith(row.prefix)
    assert (await authenticate(f"Bearer {clear}")).id == rep.id
    assert (await authenticate(f"bearer   {clear}  ")).id == rep.id


async def test_expired_token_is_refused(rep: User) -> None:
    row, clear = await issue_token(rep, "short", expires_in_days=1)
    await ApiToken.filter(id=row.id).update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    with pytest.raises(SalesInboxError) as caught:
        await authenticate(f"Bearer {clear}")
    assert caught.value.code == ErrorCode.UNAUTHENTICATED and "expired" in caught.value.message


async def test_last_used_is_recorded(rep: User) -> None:
    row, clear = await issue_token(rep, "t")
    assert row.last_used_at is None
    await authenticate(f"Bearer {clear}")
    assert (await ApiToken.get(id=row.id)).last_used_at is not None


async def test_revoke_is_idempotent_and_scoped(rep: User, other_rep: User, admin: User) -> None:
    row, clear = await issue_token(rep, "t")
    with pytest.raises(SalesInboxError) as caught:
        await revoke_token(other_rep, row.id)
    assert caught.value.code == ErrorCode.NOT_FOUND
    first = await revoke_token(admin, row.id)
    second = await revoke_token(rep, row.id)
    assert first.revoked_at == second.revoked_at
    with pytest.raises(SalesInboxError):
        await authenticate(f"Bearer {clear}")


async def test_list_tokens_newest_first(rep: User) -> None:
    await issue_token(rep, "one")
    await issue_token(rep, "two")
    assert [t.name for t in await list_tokens(rep)] == ["two", "one"]


@pytest.mark.parametrize("days", [0, 5000])
async def test_expiry_bounds(rep: User, days: int) -> None:
    with pytest.raises(SalesInboxError) as caught:
        await issue_token(rep, "t", expires_in_days=days)
    assert caught.value.field == "expiresInDays"


async def test_a_token_is_looked_up_once_within_the_cache_ttl(rep: User) -> None:
    row, clear = await issue_token(rep, "t")
    await authenticate(f"Bearer {clear}")
    # Revoked behind the server's back (another process): this process still remembers it…
    await ApiToken.filter(id=row.id).update(revoked_at=datetime.now(UTC))
    assert (await authenticate(f"Bearer {clear}")).id == rep.id
    # …until the entry is older than the TTL.
    token_cache.ttl = 0.05
    await asyncio.sleep(0.06)
    with pytest.raises(SalesInboxError) as caught:
        await authenticate(f"Bearer {clear}")
    assert "revoked" in caught.value.message


async def test_no_cache_with_ttl_zero(rep: User) -> None:
    token_cache.ttl = 0
    row, clear = await issue_token(rep, "t")
    await authenticate(f"Bearer {clear}")
    await ApiToken.filter(id=row.id).update(revoked_at=datetime.now(UTC))
    with pytest.raises(SalesInboxError):
        await authenticate(f"Bearer {clear}")


async def test_revoking_forgets_the_cached_token_at_once(rep: User) -> None:
    row, clear = await issue_token(rep, "t")
    await authenticate(f"Bearer {clear}")
    await revoke_token(rep, row.id)
    with pytest.raises(SalesInboxError) as caught:
        await authenticate(f"Bearer {clear}")
    assert "revoked" in caught.value.message


async def test_changing_a_user_forgets_their_cached_tokens(rep: User, admin: User) -> None:
    _, clear = await issue_token(rep, "t")
    assert (await authenticate(f"Bearer {clear}")).profile == Profile.STANDARD
    await update_user(admin, rep.id, profile=Profile.ADMIN)
    assert (await authenticate(f"Bearer {clear}")).profile == Profile.ADMIN
    await update_user(admin, rep.id, is_active=False)
    with pytest.raises(SalesInboxError) as caught:
        await authenticate(f"Bearer {clear}")
    assert "deactivated" in caught.value.message


async def test_expiry_is_checked_on_cached_tokens(rep: User, monkeypatch: pytest.MonkeyPatch) -> None:
    _, clear = await issue_token(rep, "short", expires_in_days=1)
    await authenticate(f"Bearer {clear}")
    later = datetime.now(UTC) + timedelta(days=1, seconds=1)

    class Tomorrow(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return later

    monkeypatch.setattr(tokens_module, "datetime", Tomorrow)
    with pytest.raises(SalesInboxError) as caught:
        await authenticate(f"Bearer {clear}")
    assert "expired" in caught.value.message


def test_the_cache_keeps_its_newest_entries_up_to_its_size() -> None:
    cache = TokenCache(ttl=60, maxsize=2)
    users = [User(id=i, email=f"u{i}@x.test", name=f"U{i}") for i in range(3)]
    for user in users:
        cache.put(f"digest{user.id}", _Entry(user, user.id, None, None, time.monotonic()))
    assert cache.get("digest0") is None  # the oldest went
    assert cache.get("digest1") is not None and cache.get("digest2") is not None
    cache.forget_user(1)
    assert cache.get("digest1") is None and cache.get("digest2") is not None
