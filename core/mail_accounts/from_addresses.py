"""From addresses of a mail account: add, remove, choose the default
(docs/outgoing-mail.md#from-addresses).

The account's own address is always a From address. Adding or removing one changes which
addresses count as the owner's own, so the account's counterparties and links are refreshed.
"""

from __future__ import annotations

from tortoise.transactions import in_transaction

from ..address_normalisation import normalise_email
from ..crm.linking import refresh_counterparties
from ..db.models import FromAddress, User
from ..errors import ErrorCode, SalesInboxError, invalid_input, not_found
from .accounts import MAX_FROM_ADDRESSES, get_account


async def list_from_addresses(account_id: int) -> list[FromAddress]:
    """The account's From addresses, default first."""
    return await FromAddress.filter(account_id=account_id).order_by("-is_default", "address")


async def add_from_address(
    actor: User, account_id: int, address: str, *, name: str = "", make_default: bool = False
) -> FromAddress:
    """Add a From address (``ALREADY_EXISTS`` if present) and optionally make it the default."""
    account = await get_account(actor, account_id)
    normalised = normalise_email(address, field="address")
    clean_name = " ".join(name.split())[:200]
    async with in_transaction():
        if await FromAddress.exists(account_id=account.id, address=normalised):
            raise SalesInboxError(
                ErrorCode.ALREADY_EXISTS, f"{normalised} is already a From address of this account.",
                field="address",
            )
        if await FromAddress.filter(account_id=account.id).count() >= MAX_FROM_ADDRESSES:
            raise invalid_input(
                f"An account can have at most {MAX_FROM_ADDRESSES} From addresses.", field="address"
            )
        if make_default:
            await FromAddress.filter(account_id=account.id).update(is_default=False)
        row = await FromAddress.create(
            account_id=account.id, address=normalised, name=clean_name, is_default=make_default
        )
    await refresh_counterparties(account.id)
    return row


async def _row(actor: User, account_id: int, address: str) -> FromAddress:
    account = await get_account(actor, account_id)
    row = await FromAddress.get_or_none(
        account_id=account.id, address=normalise_email(address, field="address")
    )
    if row is None:
        raise not_found("From address")
    return row


async def set_default_from_address(actor: User, account_id: int, address: str) -> FromAddress:
    """Make ``address`` the account's default From address."""
    row = await _row(actor, account_id, address)
    async with in_transaction():
        await FromAddress.filter(account_id=row.account_id).update(is_default=False)
        row.is_default = True
        await row.save(update_fields=["is_default"])
    return row


async def remove_from_address(actor: User, account_id: int, address: str) -> None:
    """Remove a From address. The account's own address cannot be removed; removing the
    default makes the account's own address the default again."""
    row = await _row(actor, account_id, address)
    account = await get_account(actor, account_id)
    if row.address == account.email:
        raise invalid_input(
            "The account's own address is always a From address: it cannot be removed.",
            field="address",
        )
    async with in_transaction():
        await row.delete()
        if row.is_default:
            await FromAddress.filter(account_id=account.id, address=account.email).update(
                is_default=True
            )
    await refresh_counterparties(account.id)
