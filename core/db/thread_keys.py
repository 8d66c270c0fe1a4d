"""Which messages of an account form one conversation: the value of ``message.thread_key``
(docs/views.md#threads). Pure functions, shared by the store and migration 0011.

A message names Message-IDs: its own, its In-Reply-To (its parent) and its References (its
ancestors, the nearest last). Two messages of one account are in the same thread when the ids
they name connect them, directly or through other messages of the account:

- a reply names its parent and its other ancestors, so it joins the thread of the nearest one
  the account holds, whichever References entry that is (the first may be unknown);
- two replies to a message the account never got share a thread through the id both name;
- a message that arrives late joins every thread it connects: the threads of the messages it
  names and of the stored replies that name it. Threads merge; they never split (an expunged
  message's ids still connect its thread).

A message naming no id at all is grouped by its subject key (the parser's ``thread_key``: the
normalised subject and the participants). The partition depends on the set of messages only,
never on the order they arrived in.

The key of a thread is the smallest ``thread:<sha1 of the root>`` among its messages, where a
message's root is the parser's ``thread_key`` (its first References id, else In-Reply-To, else
its own Message-ID, else its subject key). Every message of an ordinary conversation has the
same root, so colleagues' copies of a conversation have the same key in each account and share
a thread in a record's related list; only a merge that one account saw and another did not
gives them different keys. Keys are opaque: a key shows no Message-ID (nor its domain) of mail
the viewer may not see.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

KEY_PREFIX = "thread:"


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "replace"), usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class ThreadIds:
    """What one message brings to threading: ``nodes``, the digests of the ids it names (the
    ``thread_node.node`` values); ``key``, the key of the thread it would be alone."""

    nodes: tuple[str, ...]
    key: str


def thread_ids(root: str, message_id: str | None, in_reply_to: str | None,
               references: Iterable[str]) -> ThreadIds:
    """The :class:`ThreadIds` of a message: ``root`` is the parser's ``thread_key``."""
    names = dict.fromkeys(n for n in (root, *references, in_reply_to, message_id) if n)
    return ThreadIds(tuple(_digest(name) for name in names), KEY_PREFIX + _digest(root))


@dataclass(frozen=True, slots=True)
class JoinedThreads:
    """The outcome of :func:`join_threads`.

    ``keys``: the thread key of each new message, in order. ``new_nodes``: the nodes not known
    before, with their thread key. ``renamed``: old thread key -> the key of the thread it merged
    into (only keys that change).
    """

    keys: list[str]
    new_nodes: dict[str, str]
    renamed: dict[str, str]


def join_threads(messages: Sequence[ThreadIds], known: Mapping[str, str]) -> JoinedThreads:
    """Thread the new ``messages`` into the account's threads.

    ``known``: node -> thread key, for those of the messages' nodes the account already has
    (every node of a stored thread carries its key). Each group of new messages and old
    threads connected by shared nodes becomes one thread, keyed by the smallest key in it.
    """
    parent: dict[str, str] = {}

    def find(item: str) -> str:
        parent.setdefault(item, item)
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    def union(a: str, b: str) -> None:
        root_a, root_b = find(a), find(b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)

    # Elements: node digests (40 hex digits) and keys ("thread:…"), which never collide. A
    # message is joined to its own key, each known node to the key of its thread.
    for message in messages:
        for node in message.nodes:
            union(message.key, node)
    for node, key in known.items():
        union(node, key)
    best: dict[str, str] = {}
    for key in [m.key for m in messages] + list(known.values()):
        group = find(key)
        if group not in best or key < best[group]:
            best[group] = key
    keys = [best[find(m.key)] for m in messages]
    new_nodes = {node: best[find(node)] for m in messages for node in m.nodes if node not in known}
    renamed = {old: best[find(old)] for old in set(known.values()) if best[find(old)] != old}
    return JoinedThreads(keys, new_nodes, renamed)
