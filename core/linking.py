"""Links between messages and leads/contacts.

A message is linked to a record when one of its counterparty addresses (From/To/Cc/Bcc
minus the account owner's own addresses) equals the record's primary or secondary email.
Links are recomputed whenever a record's emails change, so mail synced before the record
existed still gets linked (SPEC §2).
"""

from __future__ import annotations

from collections.abc import Iterable

from tortoise.transactions import in_transaction

from .models import CrmRecord, MessageAddress, MessageLink


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
        message_ids = await (
            MessageAddress.filter(
                address__in=emails,
                is_counterparty=True,
                message__account__user__organisation_id=record.organisation_id,
            )
            .distinct()
            .values_list("message_id", flat=True)
        )
        await MessageLink.bulk_create(
            [MessageLink(message_id=message_id, record_id=record.id) for message_id in message_ids]
        )
    return len(message_ids)


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
