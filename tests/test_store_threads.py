"""Threads as the store forms them (core/db/thread_keys.py, core/sync/thread_joining.py):
through every References id, merged by late mail, the same whatever the arrival order."""

from __future__ import annotations

import asyncio
import importlib
import itertools
from dataclasses import dataclass
from types import SimpleNamespace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tortoise import connections

from salesinbox.core.crm.records import RecordInput, create_record
from salesinbox.core.db.models import Folder, Message, RecordKind, ThreadNode, User
from salesinbox.core.db.thread_keys import ThreadIds, join_threads, thread_ids
from salesinbox.core.parsing.message_parser import FetchedMessage, parse_message
from salesinbox.core.sharing import threads
from salesinbox.core.sync.store import FolderTarget, store_batch
from salesinbox.core.sync.thread_joining import message_thread_ids

from .test_policy import write_account


@dataclass(frozen=True)
class Spec:
    """One message of a test conversation: the ids it names and its subject."""

    message_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    subject: str = "Deal"

    def raw(self) -> bytes:
        lines = ["From: Jane Doe <jane@globex.com>", "To: rep@acme.test", f"Subject: {self.subject}",
                 "Date: Mon, 1 Jan 2024 10:00:00 +0000"]
        if self.message_id:
            lines.append(f"Message-ID: {self.message_id}")
        if self.in_reply_to:
            lines.append(f"In-Reply-To: {self.in_reply_to}")
        if self.references:
            lines.append("References: " + " ".join(self.references))
        return ("\r\n".join(lines) + "\r\n\r\nHello\r\n").encode()


def expected_threads(specs: list[Spec]) -> set[frozenset[int]]:
    """The reference model: messages sharing an id they name (own, In-Reply-To, References)
    are in one thread, and so are their threads; a message naming none goes by subject."""
    names = [{n for n in (s.message_id, s.in_reply_to, *s.references) if n} or {"subject " + s.subject}
             for s in specs]
    groups: list[tuple[set[int], set[str]]] = []
    for index, mine in enumerate(names):
        touching = [g for g in groups if g[1] & mine]
        members, ids = {index}, set(mine)
        for group in touching:
            groups.remove(group)
            members |= group[0]
            ids |= group[1]
        groups.append((members, ids))
    return {frozenset(members) for members, _ in groups}


def partition(keys: dict[int, str]) -> set[frozenset[int]]:
    by_key: dict[str, set[int]] = {}
    for index, key in keys.items():
        by_key.setdefault(key, set()).add(index)
    return {frozenset(members) for members in by_key.values()}


# --------------------------------------------------------------------------- conversations

@st.composite
def conversations(draw: st.DrawFn) -> tuple[list[Spec], bool]:
    """A conversation (a tree of replies) as clients really write it, or break it: References
    cut at the front, In-Reply-To missing, a Message-ID reused by another message, a message
    naming no id at all. Returns the messages and whether every one names all its ancestors."""
    size = draw(st.integers(1, 7))
    parents: list[int | None] = [None] + [draw(st.integers(0, i - 1)) for i in range(1, size)]
    ids = [f"<m{i}@t.example>" for i in range(size)]
    complete = draw(st.booleans())
    specs = []
    for i in range(size):
        path: list[str] = []
        up = parents[i]
        while up is not None:
            path.insert(0, ids[up])
            up = parents[up]
        if complete:
            specs.append(Spec(ids[i], path[-1] if path else None, tuple(path)))
            continue
        if draw(st.integers(0, 9)) == 0:  # a client that names nothing: grouped by subject
            specs.append(Spec(subject=draw(st.sampled_from(["Deal", "Other"]))))
            continue
        path = path[draw(st.integers(0, len(path))):]  # the first References entries lost
        reply_to = ids[parents[i]] if parents[i] is not None and draw(st.booleans()) else None  # type: ignore[index]
        own = ids[draw(st.integers(0, size - 1))] if draw(st.integers(0, 5)) == 0 else ids[i]  # a reused id
        specs.append(Spec(own, reply_to, tuple(path)))
    return specs, complete


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[list[Spec], bool, list[list[int]], list[list[int]]]:
    """Some of a conversation's messages (the others never arrive), some stored twice (a
    copy in another folder), in two arrival orders cut into batches."""
    specs, complete = draw(conversations())
    arrived = sorted(draw(st.sets(st.integers(0, len(specs) - 1), min_size=1)))
    copies = draw(st.lists(st.sampled_from(arrived), max_size=2))
    stored = [specs[i] for i in arrived + copies]

    def batches() -> list[list[int]]:
        order = draw(st.permutations(range(len(stored))))
        cuts = sorted(draw(st.sets(st.integers(1, max(1, len(order) - 1)), max_size=3)))
        return [list(order[a:b]) for a, b in itertools.pairwise([0, *cuts, len(order)]) if order[a:b]]

    return stored, complete, batches(), batches()


def thread_in_memory(specs: list[Spec], batches: list[list[int]]) -> dict[int, str]:
    """What the store does, with a dict as its thread_node table: each batch joined to the
    known threads, merged threads renamed."""
    nodes: dict[str, str] = {}
    keys: dict[int, str] = {}
    for batch in batches:
        ids: list[ThreadIds] = [message_thread_ids(parse_message(specs[i].raw())) for i in batch]
        joined = join_threads(ids, {n: nodes[n] for item in ids for n in item.nodes if n in nodes})
        for stored, key in list(keys.items()):
            keys[stored] = joined.renamed.get(key, key)
        for node, key in list(nodes.items()):
            nodes[node] = joined.renamed.get(key, key)
        nodes.update(joined.new_nodes)
        keys.update(zip(batch, joined.keys, strict=True))
    return keys


@settings(max_examples=300, deadline=None)
@given(arrivals())
def test_any_arrival_order_gives_the_threads_of_the_model(case: tuple) -> None:
    specs, complete, order, other_order = case
    keys = thread_in_memory(specs, order)
    assert partition(keys) == expected_threads(specs)
    assert thread_in_memory(specs, other_order) == keys  # the very same keys, not only the same groups
    if complete:  # every message names its ancestors: one thread, whatever is missing
        assert len(set(keys.values())) == 1


# --------------------------------------------------------------------------- the store itself

_accounts = itertools.count(1)


async def _folder(owner: User, name: str = "INBOX") -> FolderTarget:
    account = await write_account(owner, "PRIVATE", f"box{next(_accounts)}@acme.test")
    folder = await Folder.create(account=account, name=name, uidvalidity=1)
    return FolderTarget(account_id=account.id, organisation_id=owner.organisation_id, folder_id=folder.id,
                        uidvalidity=1, folder_is_sent=False, own_addresses=frozenset({account.email}))


async def _store(target: FolderTarget, specs: list[Spec], batches: list[list[int]]) -> dict[int, str]:
    """Store ``specs`` (uid = index + 1) batch by batch; the stored thread key of each index."""
    for batch in batches:
        await store_batch(target, [FetchedMessage(uid=i + 1, flags=frozenset(), parsed=parse_message(specs[i].raw()))
                                   for i in batch])
    rows = await Message.filter(folder_id=target.folder_id).values_list("uid", "thread_key")
    return {uid - 1: key for uid, key in rows}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=arrivals())
async def test_the_store_threads_any_arrival_order_alike(rep: User, case: tuple) -> None:
    specs, complete, order, other_order = case
    keys = await _store(await _folder(rep), specs, order)
    assert partition(keys) == expected_threads(specs)
    # Another account getting the same mail in another order: the same keys.
    assert await _store(await _folder(rep), specs, other_order) == keys
    if complete:
        assert len(set(keys.values())) == 1


async def _keys(target: FolderTarget) -> dict[str | None, str]:
    return dict(await Message.filter(folder_id=target.folder_id).values_list("message_id", "thread_key"))


async def test_a_reply_whose_first_reference_is_unknown_joins_its_known_parents_thread(rep: User) -> None:
    target = await _folder(rep)
    root = Spec("<root@x>")
    parent = Spec("<parent@x>", "<root@x>", ("<root@x>",))
    # Its client cut References to an id this mailbox never had, then the parent.
    reply = Spec("<reply@x>", None, ("<elsewhere@x>", "<parent@x>"))
    await _store(target, [root, parent, reply], [[0], [1], [2]])
    keys = await _keys(target)
    assert keys["<reply@x>"] == keys["<parent@x>"] == keys["<root@x>"]
    # The parent alone (In-Reply-To only, no References) is enough too.
    answer = Spec("<answer@x>", "<reply@x>")
    await _store(target, [root, parent, reply, answer], [[3]])
    assert len(set((await _keys(target)).values())) == 1


async def test_a_late_message_merges_the_threads_it_connects(rep: User) -> None:
    target = await _folder(rep)
    record = await create_record(rep, RecordKind.CONTACT, RecordInput(last_name="Doe", primary_email="jane@globex.com"))
    first = Spec("<a@x>", subject="Offer")
    # B never arrived yet: C names only B, so it starts a thread of its own.
    third = Spec("<c@x>", "<b@x>", ("<b@x>",), subject="Re: Offer")
    specs = [first, Spec("<b@x>", "<a@x>", ("<a@x>",), subject="Re: Offer"), third]
    await _store(target, specs, [[0], [2]])
    keys = await _keys(target)
    assert keys["<a@x>"] != keys["<c@x>"]
    assert len((await threads.thread_page(rep, record.id)).items) == 2
    await _store(target, specs, [[1]])  # B arrives: A, B and C are one thread
    keys = await _keys(target)
    assert len(set(keys.values())) == 1
    assert set(await ThreadNode.filter(account_id=target.account_id).values_list("thread_key", flat=True)) == set(
        keys.values())
    page = await threads.thread_page(rep, record.id)
    assert [(t.subject, t.ref.message_count) for t in page.items] == [("Offer", 3)]
    # Keys are opaque: they name no Message-ID (nor a domain) of the mail.
    assert all(k.startswith("thread:") and "@" not in k for k in keys.values())


async def test_one_conversation_has_one_key_in_every_account(rep: User) -> None:
    record = await create_record(rep, RecordKind.CONTACT, RecordInput(last_name="Doe", primary_email="jane@globex.com"))
    question = Spec("<q@x>", subject="Pricing")
    answer = Spec("<r@x>", "<q@x>", ("<q@x>",), subject="Re: Pricing")
    mine, colleague_copy = await _folder(rep), await _folder(rep)
    await _store(mine, [question, answer], [[0, 1]])
    await _store(colleague_copy, [question, answer], [[1]])  # only the answer reached this account
    assert set((await _keys(mine)).values()) == set((await _keys(colleague_copy)).values())
    page = await threads.thread_page(rep, record.id)
    assert [(t.subject, t.ref.message_count) for t in page.items] == [("Pricing", 3)]


async def test_batches_storing_one_thread_at_once_agree_on_its_key(rep: User) -> None:
    """A sync and a just-sent message storing parts of one thread concurrently (PostgreSQL:
    the advisory lock; SQLite: one transaction at a time)."""
    inbox = await _folder(rep)
    sent = await Folder.create(account_id=inbox.account_id, name="Sent", uidvalidity=1)
    sent_target = FolderTarget(account_id=inbox.account_id, organisation_id=inbox.organisation_id,
                               folder_id=sent.id, uidvalidity=1, folder_is_sent=True,
                               own_addresses=inbox.own_addresses)
    for round_ in range(5):
        question = Spec(f"<q{round_}@x>", None, (f"<lost{round_}@x>",))
        answer = Spec(f"<r{round_}@x>", f"<q{round_}@x>", (f"<q{round_}@x>",))
        await asyncio.gather(_store(inbox, [question] * (round_ + 1), [[round_]]),
                             _store(sent_target, [answer] * (round_ + 1), [[round_]]))
        keys = dict(await Message.filter(account_id=inbox.account_id, message_id__in=[
            question.message_id, answer.message_id]).values_list("message_id", "thread_key"))
        assert len(keys) == 2 and len(set(keys.values())) == 1


async def test_migration_0011_regroups_stored_mail_as_the_store_would(rep: User) -> None:
    """Rows stored before 0011 carry the parser's root as thread_key; the migration's regroup
    gives the keys the store gives and records the nodes later mail joins through."""
    migration = importlib.import_module("salesinbox.core.db.migrations.0011_threads_dates_sender")
    specs = [Spec("<a@x>"), Spec("<c@x>", None, ("<gone@x>", "<b@x>")), Spec("<b@x>", "<a@x>", ("<a@x>",)),
             Spec(subject="no ids"), Spec("<z@x>", subject="apart")]
    old = await _folder(rep)
    await _store(old, specs, [[0, 1, 2, 3, 4]])
    expected = await _keys(old)
    await ThreadNode.filter(account_id=old.account_id).delete()
    for uid, spec in enumerate(specs, start=1):  # back to what the earlier code stored
        await Message.filter(folder_id=old.folder_id, uid=uid).update(
            thread_key=parse_message(spec.raw()).thread_key)
    await migration.regroup_threads(None, SimpleNamespace(client=connections.get("default")))
    assert await _keys(old) == expected
    # Mail stored afterwards joins the regrouped threads.
    late = Spec("<d@x>", None, ("<gone@x>",))
    await _store(old, [*specs, late], [[5]])
    assert (await _keys(old))["<d@x>"] == expected["<a@x>"]


def test_thread_ids_name_every_id_once_and_key_by_the_root() -> None:
    ids = thread_ids("<r@x>", "<m@x>", "<p@x>", ["<r@x>", "<p@x>"])
    assert len(ids.nodes) == 3 and ids.key == thread_ids("<r@x>", None, None, []).key
    assert ids.key.startswith("thread:") and len(ids.key) == len("thread:") + 40
    lone = join_threads([ids], {})
    assert lone.keys == [ids.key] and set(lone.new_nodes) == set(ids.nodes) and lone.renamed == {}
