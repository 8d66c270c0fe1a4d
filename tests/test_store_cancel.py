"""A store write cancelled in the middle finishes first and leaves the database usable.

A stopping scheduler (or a WebSocket client hanging up) cancels a task wherever it awaits.
On PostgreSQL, a batch insert cancelled inside asyncpg's ``executemany`` left the connection
in an open transaction, the server waiting for the rest of the rows, and the task hung in
its rollback (found by the fault injection).
"""

from __future__ import annotations

import asyncio

import pytest

from salesinbox.core.db.models import Folder, Message, User
from salesinbox.core.parsing.message_parser import FetchedMessage, parse_message
from salesinbox.core.sync import store as store_module
from salesinbox.core.sync.store import FolderTarget, store_batch

from .servers.messages import generate_messages
from .test_linking import _account


async def test_a_batch_cancelled_while_it_is_written_commits_first_and_wedges_nothing(
    rep: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await _account(rep)
    folder = await Folder.create(account=account, name="INBOX", uidvalidity=7)
    target = FolderTarget(account_id=account.id, organisation_id=rep.organisation_id, folder_id=folder.id,
                          uidvalidity=7, folder_is_sent=False, own_addresses=frozenset({rep.email}))
    batch = [FetchedMessage(uid=uid, flags=frozenset(), parsed=parse_message(raw))
             for uid, raw in enumerate(generate_messages(200, seed=5), start=1)]
    writing = asyncio.Event()
    real_insert = store_module._insert_rows

    async def observed_insert(*args, **kwargs):
        writing.set()
        return await real_insert(*args, **kwargs)

    monkeypatch.setattr(store_module, "_insert_rows", observed_insert)
    task = asyncio.ensure_future(store_batch(target, batch))
    await writing.wait()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=15)
    assert task in done and task.cancelled()  # the caller still sees its cancellation
    # The batch was written whole, with its count, and the database answers.
    assert await asyncio.wait_for(Message.filter(folder_id=folder.id).count(), timeout=5) == 200
    assert (await Folder.get(id=folder.id)).messages_synced == 200
    assert len((await asyncio.wait_for(store_batch(target, batch[:3]), timeout=5)).inserted_ids) == 0
