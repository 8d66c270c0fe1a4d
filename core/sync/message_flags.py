"""Two-way flags (docs/sync.md#two-way-flags): read/unread and flagged, set on the server;
answered, set after a reply was sent.

Only the owner of a message may change its flags. The server is changed first; the store
follows only once the server accepted, so the CRM never shows a state the user's other
devices do not have.
"""

from __future__ import annotations

import asyncio
import logging

from imapclient import IMAPClient

from ..credentials import SecretBox
from ..db.models import Message, User
from ..errors import ErrorCode, SalesInboxError, invalid_input, not_found
from ..oauth.oauth_tokens import OAuthTokens, account_logins
from ..transport.imap import close_quietly, open_imap
from ..transport.server_login import ConnectPolicy
from . import imap_fetch as fetch

log = logging.getLogger(__name__)


def _set_on_server(client: IMAPClient, folder: str, uidvalidity: int, uid: int, *,
                   seen: bool | None = None, flagged: bool | None = None, answered: bool | None = None) -> None:
    snapshot = fetch.select_folder(client, folder, readonly=False)
    if snapshot.uidvalidity != uidvalidity:
        raise SalesInboxError(
            ErrorCode.CONFLICT,
            "This folder was renumbered on the mail server: wait for the next sync, then try again.",
        )
    fetch.set_flags(client, folder, uid, seen=seen, flagged=flagged, answered=answered)


async def _change_on_server(message: Message, secrets: SecretBox, policy: ConnectPolicy,
                            tokens: OAuthTokens | None, **flags: bool | None) -> None:
    """UID STORE the flags on ``message`` (its ``account`` and ``folder`` fetched) with the
    account's IMAP login, an OAuth access token included."""
    login = (await account_logins(message.account, secrets, tokens)).imap

    def change() -> None:
        client = open_imap(login, policy)
        try:
            _set_on_server(client, message.folder.name, message.uidvalidity, message.uid, **flags)
        finally:
            close_quietly(client)

    await asyncio.to_thread(change)


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
    await _change_on_server(message, secrets, policy, tokens, seen=seen, flagged=flagged)
    if seen is not None:
        message.seen = seen
    if flagged is not None:
        message.flagged = flagged
    await message.save(update_fields=["seen", "flagged"])
    return message


async def mark_answered(
    replier: User, message_id: int, *, secrets: SecretBox, policy: ConnectPolicy,
    tokens: OAuthTokens | None = None,
) -> bool:
    """Set \\Answered on a message ``replier`` has just replied to, on the server, then in the
    store, as mail clients do. Returns whether the flag is set now.

    Only the replier's own mail is marked: a colleague's shared message is left as it is
    (seeing it is not owning their mailbox), and False is returned. Call it only after the
    reply was sent: it never raises for a failure (server unreachable, login refused, folder
    renumbered, a placeholder Sent copy without a server UID), it logs it and returns False,
    the store unchanged; the next sync's flag reconciliation then reads the server's state.
    """
    message = await Message.get_or_none(id=message_id, account__user_id=replier.id).select_related(
        "account", "folder"
    )
    if message is None:
        return False
    if message.uid <= 0:  # a Sent copy not (yet) on the server: nothing to flag there
        return False
    try:
        await _change_on_server(message, secrets, policy, tokens, answered=True)
    except Exception as error:  # noqa: BLE001 - the reply is sent; a missing flag must not fail it
        log.warning("\\Answered not set on message %s (account %s) on the server: %s",
                    message.id, message.account_id, error)
        return False
    await Message.filter(id=message.id).update(answered=True)
    return True
