"""The thread keys of a batch being stored, and the merges it causes (see
:mod:`..db.thread_keys` for what a thread is). Part of the store's transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from tortoise.backends.base.client import BaseDBAsyncClient

from ..db.models import Message, ThreadNode
from ..db.thread_keys import ThreadIds, join_threads, thread_ids
from ..parsing.message_parser import ParsedMessage

# pg_advisory_xact_lock(class, account): the class names this use of advisory locks.
_LOCK_CLASS = 0x7468_7264  # "thrd"
_CHUNK = 500  # ids per IN (...): under SQLite's variable limit


def message_thread_ids(parsed: ParsedMessage) -> ThreadIds:
    """What ``parsed`` brings to threading (its ids and root, as the store keeps them)."""
    return thread_ids(parsed.thread_key[:998], parsed.message_id, parsed.in_reply_to, parsed.references)


async def thread_keys_for(connection: BaseDBAsyncClient, account_id: int,
                          messages: Sequence[ParsedMessage]) -> list[str]:
    """The thread key of each of ``messages`` (about to be stored in ``account_id``).

    Call inside the transaction that inserts them, before any other write of it: the threads
    they connect are merged (stored messages and nodes get the merged key) and their new ids
    are recorded, in that transaction. On PostgreSQL an advisory lock serialises this per
    account until the commit, so two batches storing parts of one thread at once (a sync and a
    just-sent message) cannot each start it under its own key; SQLite runs one transaction at
    a time anyway.
    """
    if not messages:
        return []
    if connection.capabilities.dialect == "postgres":
        await connection.execute_query("SELECT pg_advisory_xact_lock($1, $2)", [_LOCK_CLASS, account_id])
    ids = [message_thread_ids(parsed) for parsed in messages]
    wanted = sorted({node for item in ids for node in item.nodes})
    known: dict[str, str] = {}
    for start in range(0, len(wanted), _CHUNK):
        rows = await ThreadNode.filter(account_id=account_id, node__in=wanted[start : start + _CHUNK]).values_list(
            "node", "thread_key")
        known.update(rows)
    joined = join_threads(ids, known)
    merged_into: dict[str, list[str]] = defaultdict(list)
    for old, new in joined.renamed.items():
        merged_into[new].append(old)
    for new, olds in merged_into.items():
        for start in range(0, len(olds), _CHUNK):
            chunk = sorted(olds)[start : start + _CHUNK]
            await Message.filter(account_id=account_id, thread_key__in=chunk).update(thread_key=new)
            await ThreadNode.filter(account_id=account_id, thread_key__in=chunk).update(thread_key=new)
    await ThreadNode.bulk_create(
        [ThreadNode(account_id=account_id, node=node, thread_key=key) for node, key in joined.new_nodes.items()],
        using_db=connection,
    )
    return joined.keys
