"""DataLoaders: one query per kind of related row for a whole page, never one per message.

They are created per request (on the context), so nothing is cached across users. Only
messages that already passed the policy reach them. A page of messages reads its folders,
owners and linked records with the batch functions below directly (see
``schema/messages.py:message_items``); the loaders serve single messages and other paths.
The batch functions return ``values()`` rows, not models: a third of the ORM's cost.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader

from salesinbox.core.models import (
    Attachment,
    Folder,
    MailAccount,
    MessageAddress,
    MessageBody,
    MessageLink,
    User,
)
from salesinbox.core.sharing import shared_record_ids


#: The columns the API shows of a lead/contact and of a user (``*Type.from_values``).
RECORD_FIELDS = (
    "id", "kind", "first_name", "last_name", "company", "primary_email", "secondary_email",
    "owner_id", "created_at", "updated_at",
)
USER_FIELDS = ("id", "email", "name", "profile", "is_active", "created_at")


async def records_by_message(message_ids: Sequence[int]) -> list[list[dict[str, Any]]]:
    """For each message id, the leads/contacts linked to it (``RECORD_FIELDS``), by id."""
    rows = await MessageLink.filter(message_id__in=list(message_ids)).order_by("record_id").values(
        "message_id", **{f"r_{f}": f"record__{f}" for f in RECORD_FIELDS}
    )
    found: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        found[row["message_id"]].append({f: row[f"r_{f}"] for f in RECORD_FIELDS})
    return [found[i] for i in message_ids]


async def owner_by_account(account_ids: Sequence[int]) -> list[dict[str, Any]]:
    """For each mail account id, its owner (``USER_FIELDS``)."""
    rows = await MailAccount.filter(id__in=list(account_ids)).values(
        "id", **{f"u_{f}": f"user__{f}" for f in USER_FIELDS}
    )
    owners = {row["id"]: {f: row[f"u_{f}"] for f in USER_FIELDS} for row in rows}
    return [owners[i] for i in account_ids]


async def folder_name_by_id(folder_ids: Sequence[int]) -> list[str]:
    """For each folder id, the folder's name."""
    names = dict(await Folder.filter(id__in=list(folder_ids)).values_list("id", "name"))
    return [names[i] for i in folder_ids]


_Row = TypeVar("_Row", MessageAddress, Attachment)


async def _rows_by_message(model: type[_Row], message_ids: Sequence[int]) -> list[list[_Row]]:
    """For each message id, its rows of ``model`` (a table keyed by ``message_id``), by id."""
    found: dict[int, list[M]] = defaultdict(list)
    for row in await model.filter(message_id__in=list(message_ids)).order_by("id"):
        found[row.message_id].append(row)
    return [found[i] for i in message_ids]


async def _addresses_by_message(message_ids: Sequence[int]) -> list[list[MessageAddress]]:
    return await _rows_by_message(MessageAddress, message_ids)


async def _attachments_by_message(message_ids: Sequence[int]) -> list[list[Attachment]]:
    return await _rows_by_message(Attachment, message_ids)


async def _body_by_message(message_ids: Sequence[int]) -> list[MessageBody | None]:
    bodies = {b.message_id: b for b in await MessageBody.filter(message_id__in=list(message_ids))}
    return [bodies.get(i) for i in message_ids]


class Loaders:
    """The request's loaders; ``viewer_id`` scopes the Share Email flags."""

    def __init__(self, viewer: User | None = None) -> None:
        self.records_by_message = DataLoader(load_fn=records_by_message)
        self.owner_by_account = DataLoader(load_fn=owner_by_account)
        self.folder_name_by_id = DataLoader(load_fn=folder_name_by_id)
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
