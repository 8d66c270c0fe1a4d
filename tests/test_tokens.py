"""API tokens in the core: hashing, expiry, revocation, last use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from salesinbox.core.errors import ErrorCode, SalesInboxError
from salesinbox.core.models import ApiToken, User
from salesinbox.core.tokens import authenticate, hash_token, issue_token, list_tokens, revoke_token


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
