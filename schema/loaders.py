"""DataLoaders: one query per kind of related row for a whole page, never one per message.

They are created per request (on the context), so nothing is cached across users. Only
messages that already passed the policy reach them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from strawberry.dataloader import DataLoader

from salesinbox.core.models import (
    Attachment,
    CrmRecord,
    Folder,
    MailAccount,
    MessageAddress,
    MessageBody,
    MessageLink,
    User,
)
from salesinbox.core.sharing import shared_record_ids


async def _records_by_message(message_ids: Sequence[int]) -> list[list[CrmRecord]]:
    links = await MessageLink.filter(message_id__in=list(message_ids)).select_related("record").order_by("record_id")
    found: dict[int, list[CrmRecord]] = defaultdict(list)
    for link in links:
        found[link.message_id].append(link.record)
    return [found[i] for i in message_ids]


async def _owner_by_account(account_ids: Sequence[int]) -> list[User]:
    accounts = await MailAccount.filter(id__in=list(account_ids)).select_related("user")
    owners = {a.id: a.user for a in accounts}
    return [owners[i] for i in account_ids]


async def _folder_by_id(folder_ids: Sequence[int]) -> list[Folder]:
    folders = {f.id: f for f in await Folder.filter(id__in=list(folder_ids))}
    return [folders[i] for i in folder_ids]


async def _addresses_by_message(message_ids: Sequence[int]) -> list[list[MessageAddress]]:
    rows = await MessageAddress.filter(message_id__in=list(message_ids)).order_by("id")
    found: dict[int, list[MessageAddress]] = defaultdict(list)
    for row in rows:
        found[row.message_id].append(row)
    return [found[i] for i in message_ids]


async def _attachments_by_message(message_ids: Sequence[int]) -> list[list[Attachment]]:
    rows = await Attachment.filter(message_id__in=list(message_ids)).order_by("id")
    found: dict[int, list[Attachment]] = defaultdict(list)
    for row in rows:
        found[row.message_id].append(row)
    return [found[i] for i in message_ids]


async def _body_by_message(message_ids: Sequence[int]) -> list[MessageBody | None]:
    bodies = {b.message_id: b for b in await MessageBody.filter(message_id__in=list(message_ids))}
    return [bodies.get(i) for i in message_ids]


class Loaders:
    """The request's loaders; ``viewer_id`` scopes the Share Email flags."""

    def __init__(self, viewer: User | None = None) -> None:
        self.records_by_message = DataLoader(load_fn=_records_by_message)
        self.owner_by_account = DataLoader(load_fn=_owner_by_account)
        self.folder_by_id = DataLoader(load_fn=_folder_by_id)
        self.addresses_by_message = DataLoader(load_fn=_addresses_by_message)
        self.attachments_by_message = DataLoader(load_fn=_attachments_by_message)
        self.body_by_message = DataLoader(load_fn=_body_by_message)
        self._viewer = viewer
        self.share_email = DataLoader(load_fn=self._share_email)

    async def _share_email(self, record_ids: Sequence[int]) -> list[bool]:
        if self._viewer is None:
            return [False for _ in record_ids]
        ticked = await shared_record_ids(self._viewer, list(record_ids))
        return [i in ticked for i in record_ids]
