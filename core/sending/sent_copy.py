"""The Sent copy of mail sent from the CRM: on the server and in the store at once
(docs/outgoing-mail.md#the-sent-copy).

After SMTP accepted a message, a copy is APPENDed to the account's Sent folder with
``\\Seen`` (unless the provider files it itself, as Gmail does), so the user's other devices
see it. The store gets the message immediately, so it shows in the SalesInbox and in the
related lists without waiting for a sync:

* with the server's APPENDUID (UIDPLUS) it is stored under its real UID, and the next sync
  recognises it as already stored;
* otherwise it is stored as a *placeholder* (UIDVALIDITY 0, a negative UID), which the sync
  replaces by the server's copy, matched by Message-ID, when it arrives: never a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from dataclasses import dataclass

from imapclient import IMAPClient

from ..credentials import SecretBox
from ..crm.linking import own_addresses
from ..db.models import Folder, MailAccount, Message
from ..db.uninterrupted import uninterrupted
from ..oauth.oauth_tokens import OAuthTokens, account_logins
from ..parsing.message_parser import FetchedMessage, parse_message
from ..plugin_host.providers import FolderRole
from ..sync.store import PLACEHOLDER_UIDVALIDITY, FolderTarget, store_batch
from ..transport.imap import close_quietly, open_imap
from ..transport.server_login import ConnectPolicy

log = logging.getLogger(__name__)

_APPENDUID = re.compile(rb"APPENDUID (\d+) (\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class SentCopy:
    message: Message
    saved_on_server: bool
    warning: str | None = None


def _append(client: IMAPClient, folder: str, raw: bytes) -> tuple[int, int] | None:
    """APPEND with \\Seen; return (UIDVALIDITY, UID) when the server says (UIDPLUS)."""
    reply = client.append(folder, raw, flags=[b"\\Seen"])
    found = _APPENDUID.search(reply if isinstance(reply, bytes) else str(reply).encode())
    return (int(found.group(1)), int(found.group(2))) if found else None


async def _sent_folder(account: MailAccount) -> Folder:
    folder = await Folder.filter(account_id=account.id, role=FolderRole.SENT).first()
    if folder is None:  # the server named none: keep sent mail in a folder of its own
        folder, _ = await Folder.get_or_create(
            account_id=account.id, name="Sent", defaults={"role": FolderRole.SENT}
        )
    return folder


async def record_sent_copy(
    account: MailAccount,
    raw_with_bcc: bytes,
    *,
    append_to_server: bool,
    secrets_box: SecretBox,
    policy: ConnectPolicy,
    tokens: OAuthTokens | None = None,
) -> SentCopy:
    """Save a just-sent message: APPEND it to Sent (when ``append_to_server``) and store it.

    A failed APPEND does not undo the sending: the message is stored anyway and the
    returned ``warning`` says the Sent folder on the server lacks the copy.
    """
    folder = await _sent_folder(account)
    location: tuple[int, int] | None = None
    warning = None
    if append_to_server:
        login = (await account_logins(account, secrets_box, tokens)).imap

        def append() -> tuple[int, int] | None:
            client = open_imap(login, policy)
            try:
                return _append(client, folder.name, raw_with_bcc)
            finally:
                close_quietly(client)

        try:
            location = await asyncio.to_thread(append)
        except Exception as error:  # noqa: BLE001 - sent is sent; say what is missing
            log.warning("Sent copy of account %s not saved on the server: %s", account.id, error)
            warning = (
                "The message was sent, but its copy could not be saved in the Sent folder on the "
                "mail server; it is kept in the CRM."
            )
    uidvalidity, uid = location if location and location[0] == folder.uidvalidity else (
        PLACEHOLDER_UIDVALIDITY, -secrets.randbelow(2**62) - 1,
    )
    await account.fetch_related("user")
    target = FolderTarget(
        account_id=account.id, organisation_id=account.user.organisation_id, folder_id=folder.id,
        uidvalidity=uidvalidity, folder_is_sent=True,
        own_addresses=frozenset(await own_addresses(account.id)),
    )
    item = FetchedMessage(uid=uid, flags=frozenset({"\\Seen"}), parsed=parse_message(raw_with_bcc))
    result = await store_batch(target, [item])
    stored = await Message.get(id=result.inserted_ids[0])
    return SentCopy(message=stored, saved_on_server=warning is None and append_to_server, warning=warning)


@uninterrupted
async def replace_placeholders(folder_id: int, inserted_ids: tuple[int, ...]) -> int:
    """Delete the placeholders of ``folder_id`` whose Message-ID a newly synced message has.

    Called by the sync after each stored batch of a Sent folder; returns how many went.
    """
    if not inserted_ids:
        return 0
    ids = await Message.filter(id__in=list(inserted_ids), message_id__not_isnull=True).values_list(
        "message_id", flat=True
    )
    if not ids:
        return 0
    return await Message.filter(
        folder_id=folder_id, uidvalidity=PLACEHOLDER_UIDVALIDITY, message_id__in=list(ids)
    ).delete()
