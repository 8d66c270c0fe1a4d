"""The original of a stored message: its RFC 5322 bytes as the mail server holds them, for
"show original" and export (README, "Downloading the original message").

The store keeps what the parser read, not the bytes, so they are fetched from the mail
server by UID, with the account's login (an OAuth access token included), read-only and
with ``BODY.PEEK[]`` so the message is not marked read. The caller has already decided that
the asker may see the message (the sharing policy, :mod:`..sharing`).
"""

from __future__ import annotations

import asyncio
import imaplib

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from ..credentials import SecretBox
from ..db.models import Folder, MailAccount, Message
from ..errors import ErrorCode, SalesInboxError
from ..oauth.oauth_tokens import OAuthTokens, account_logins
from ..transport.imap import close_quietly, open_imap
from ..transport.server_errors import transport_error
from ..transport.server_login import ConnectPolicy
from . import imap_fetch as fetch


def _not_on_server(folder: str) -> SalesInboxError:
    return SalesInboxError(
        ErrorCode.MESSAGE_NOT_ON_SERVER,
        f"The mail server no longer has this message in {folder} (deleted or moved since the last "
        "sync), so its original cannot be downloaded. The next sync updates the CRM.",
    )


def _fetch(client: IMAPClient, folder: str, uidvalidity: int, uid: int) -> bytes:
    try:
        snapshot = fetch.select_folder(client, folder, readonly=True)
    except IMAPClientError:  # NO: the folder is gone or renamed
        raise _not_on_server(folder) from None
    if snapshot.uidvalidity != uidvalidity:
        raise SalesInboxError(
            ErrorCode.CONFLICT,
            f"The folder {folder} was renumbered on the mail server: wait for the next sync, then try again.",
        )
    found = client.fetch([uid], [b"BODY.PEEK[]"])
    raw = found.get(uid, {}).get(b"BODY[]")
    if not isinstance(raw, bytes):
        raise _not_on_server(folder)
    return raw


async def fetch_original(
    message: Message, *, secrets: SecretBox, policy: ConnectPolicy, tokens: OAuthTokens | None = None,
) -> bytes:
    """The RFC 5322 bytes of ``message``, as its mail server has them now.

    ``message`` must be one the asker may see (e.g. from
    :func:`~..sharing.views.get_message`). Blocking IMAP runs in a worker thread.

    :raises SalesInboxError: ``MESSAGE_NOT_ON_SERVER`` when the server no longer has it (or
        it never had it: a Sent copy kept only in the CRM), ``CONFLICT`` when its folder was
        renumbered since the last sync, and the :class:`~..transport.server_errors.MailServerError`
        codes of an unreachable server or a refused login.
    """
    folder = await Folder.get(id=message.folder_id)
    if message.uid <= 0:  # a Sent copy the server did not take (docs/outgoing-mail.md#the-sent-copy)
        raise _not_on_server(folder.name)
    account = await MailAccount.get(id=message.account_id)
    login = (await account_logins(account, secrets, tokens)).imap

    def read() -> bytes:
        client = open_imap(login, policy)
        try:
            return _fetch(client, folder.name, message.uidvalidity, message.uid)
        except (OSError, imaplib.IMAP4.abort, EOFError) as error:  # the connection broke
            mapped = transport_error(error, protocol="imap", login=login, policy=policy)
            if mapped is None:
                raise
            raise mapped from error
        finally:
            close_quietly(client)

    return await asyncio.to_thread(read)
