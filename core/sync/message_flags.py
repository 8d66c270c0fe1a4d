"""Two-way flags (docs/sync.md#two-way-flags): read/unread and flagged, set on the server.

Only the owner of a message may change its flags. The server is changed first; the store
follows only once the server accepted, so the CRM never shows a state the user's other
devices do not have.
"""

from __future__ import annotations

import asyncio

from imapclient import IMAPClient

from ..credentials import SecretBox
from ..db.models import Message, User
from ..errors import ErrorCode, SalesInboxError, invalid_input, not_found
from ..oauth.oauth_tokens import OAuthTokens, account_logins
from ..transport.imap import close_quietly, open_imap
from ..transport.server_login import ConnectPolicy
from . import imap_fetch as fetch


def _set_on_server(client: IMAPClient, folder: str, uidvalidity: int, uid: int,
                   seen: bool | None, flagged: bool | None) -> None:
    snapshot = fetch.select_folder(client, folder, readonly=False)
    if snapshot.uidvalidity != uidvalidity:
        raise SalesInboxError(
            ErrorCode.CONFLICT,
            "This folder was renumbered on the mail server: wait for the next sync, then try again.",
        )
    fetch.set_flags(client, folder, uid, seen=seen, flagged=flagged)


async def set_message_flags(
    actor: User, message_id: int, *, seen: bool | None, flagged: bool | None,
    secrets: SecretBox, policy: ConnectPolicy, tokens: OAuthTokens | None = None,
) -> Message:
    """Set or clear \\Seen and \\Flagged on one of the actor's own messages, on the server
    and in the store. Colleagues' shared mail is ``NOT_FOUND`` here: they may read it, not
    change the owner's mailbox. An account signed in with OAuth logs in with a current access
    token from ``tokens``, as the sync does."""
    if seen is None and flagged is None:
        raise invalid_input("Say what to change: seen and/or flagged.", field="seen")
    message = await Message.get_or_none(id=message_id, account__user_id=actor.id).select_related(
        "account", "folder"
    )
    if message is None:
        raise not_found("message")
    login = (await account_logins(message.account, secrets, tokens)).imap

    def change() -> None:
        client = open_imap(login, policy)
        try:
            _set_on_server(client, message.folder.name, message.uidvalidity, message.uid, seen, flagged)
        finally:
            close_quietly(client)

    await asyncio.to_thread(change)
    if seen is not None:
        message.seen = seen
    if flagged is not None:
        message.flagged = flagged
    await message.save(update_fields=["seen", "flagged"])
    return message
