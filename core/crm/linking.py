"""Links between messages and leads/contacts.

A message is linked to a record when one of its counterparty addresses (every From author,
To, Cc, Bcc, minus the account owner's own addresses; never the Sender) equals the record's
primary or secondary email.
Links are recomputed whenever a record's emails change, so mail synced before the record
existed still gets linked (docs/records-and-links.md#links).
"""

from __future__ import annotations

from collections.abc import Iterable

from tortoise.expressions import Subquery
from tortoise.transactions import in_transaction

from ..db.models import (
    NON_COUNTERPARTY_ROLES,
    CrmRecord,
    FromAddress,
    MailAccount,
    Message,
    MessageAddress,
    MessageLink,
)
from ..db.orm_values import column_values


def record_emails(record: CrmRecord) -> list[str]:
    """The normalised addresses a record is matched by."""
    return [e for e in (record.primary_email, record.secondary_email) if e]


async def relink_record(record: CrmRecord) -> int:
    """Recompute every link of ``record`` from the stored message addresses.

    :return: the number of messages now linked to the record.
    """
    emails = record_emails(record)
    async with in_transaction():
        await MessageLink.filter(record_id=record.id).delete()
        if not emails:
            return 0
        matches = await (
            MessageAddress.filter(
                address__in=emails,
                is_counterparty=True,
                message__account__user__organisation_id=record.organisation_id,
            )
            .distinct()
            .values_list("message_id", "message__date")
        )
        dated = dict(matches)
        await MessageLink.bulk_create(
            [MessageLink(message_id=m, record_id=record.id, date=d) for m, d in dated.items()]
        )
    return len(dated)


async def records_matching(organisation_id: int, addresses: Iterable[str]) -> list[CrmRecord]:
    """The records whose primary or secondary email is one of ``addresses`` (normalised)."""
    wanted = sorted(set(addresses))
    if not wanted:
        return []
    primary = CrmRecord.filter(organisation_id=organisation_id, primary_email__in=wanted)
    secondary = CrmRecord.filter(organisation_id=organisation_id, secondary_email__in=wanted)
    found = {r.id: r for r in await primary}
    found.update({r.id: r for r in await secondary})
    return [found[key] for key in sorted(found)]


async def own_addresses(account_id: int) -> set[str]:
    """The account owner's own addresses in this account: its email and its From addresses."""
    account = await MailAccount.get(id=account_id)
    extra = await column_values(FromAddress.filter(account_id=account_id), "address")
    return {account.email, *extra}


async def link_messages(organisation_id: int, message_ids: Iterable[int]) -> int:
    """Create the missing links of ``message_ids`` (after they were stored). Idempotent.

    :return: the number of (message, record) links the messages have.
    """
    ids = list(message_ids)
    if not ids:
        return 0
    pairs = await MessageAddress.filter(message_id__in=ids, is_counterparty=True).values_list(
        "message_id", "address"
    )
    records = await records_matching(organisation_id, {address for _, address in pairs})
    by_address: dict[str, list[int]] = {}
    for record in records:
        for email in record_emails(record):
            by_address.setdefault(email, []).append(record.id)
    wanted = {(m, r) for m, address in pairs for r in by_address.get(address, ())}
    if not wanted:
        return 0
    dates = dict(await Message.filter(id__in=[m for m, _ in wanted]).values_list("id", "date"))
    await MessageLink.bulk_create(
        [MessageLink(message_id=m, record_id=r, date=dates.get(m)) for m, r in sorted(wanted)],
        ignore_conflicts=True,
    )
    return len(wanted)


async def refresh_counterparties(account_id: int) -> None:
    """Recompute which addresses are the owner's own after the From addresses changed, and
    relink the account's mail accordingly."""
    own = sorted(await own_addresses(account_id))
    account = await MailAccount.get(id=account_id).select_related("user")
    messages = Message.filter(account_id=account_id).values("id")
    async with in_transaction():
        await MessageAddress.filter(message_id__in=Subquery(messages), address__in=own).update(
            is_counterparty=False
        )
        await MessageAddress.filter(message_id__in=Subquery(messages)).exclude(
            address__in=own
        ).exclude(role__in=list(NON_COUNTERPARTY_ROLES)).update(is_counterparty=True)
        await MessageLink.filter(message_id__in=Subquery(messages)).delete()
        ids = await column_values(Message.filter(account_id=account_id), "id")
        await link_messages(account.user.organisation_id, ids)
