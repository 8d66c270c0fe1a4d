"""QRESYNC (RFC 7162) against the real Dovecot: a pass learns what was expunged from the
server's ``VANISHED (EARLIER)`` answer to SELECT, instead of listing every UID of the folder;
without QRESYNC, or when VANISHED does not account for the difference, the folder is still
reconciled UID by UID, so nothing is kept that the server no longer has."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest

from salesinbox.core.db.models import Folder, MailAccount, User
from salesinbox.core.sync import imap_fetch
from salesinbox.core.sync.engine import SyncServices, sync_account
from salesinbox.core.sync.imap_fetch import uids_in_set

from .servers.messages import build_message, generate_messages
from .test_sync import connect, server_uids, stored

if TYPE_CHECKING:
    from .servers.fixtures import MailAccount as TestMailbox

pytestmark = [pytest.mark.dovecot, pytest.mark.db]


def test_uids_in_set_matches_ranges_without_expanding_them() -> None:
    assert uids_in_set("41,43:116", {40, 41, 42, 43, 100, 116, 117}) == {41, 43, 100, 116}
    assert uids_in_set("1:4294967295", {1, 7, 4294967295}) == {1, 7, 4294967295}
    assert uids_in_set("9:3,20", {2, 3, 5, 9, 20}) == {3, 5, 9, 20}  # a range may be written backwards
    assert uids_in_set("", {1}) == set() and uids_in_set("x,5", {5}) == {5}


def count_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> list[Any]:
    """Record the calls of imap_fetch.``name`` (the engine calls the module's functions)."""
    calls: list[Any] = []
    real = getattr(imap_fetch, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        calls.append((args[1:], kwargs, result))
        return result
    monkeypatch.setattr(imap_fetch, name, spy)
    return calls


async def expunge(box: TestMailbox, uids: list[int]) -> None:
    with box.dovecot.imap_client(box.user) as other:
        other.select_folder("INBOX")
        other.delete_messages(uids)
        other.expunge()


async def synced(rep: User, box: TestMailbox, services: SyncServices, count: int) -> tuple[MailAccount, list[int]]:
    uids = box.dovecot.append_many(box.user, "INBOX", generate_messages(count, seed=11, rep=("Rex", box.address)))
    account = await connect(rep, box, services)
    await sync_account(account.id, services)
    assert "QRESYNC" in account.capabilities  # Dovecot announces it
    return account, uids


async def test_expunges_come_from_vanished_without_listing_the_folder(
    rep: User, mail_account: TestMailbox, services: SyncServices, monkeypatch: pytest.MonkeyPatch,
) -> None:
    box = mail_account
    account, uids = await synced(rep, box, services, 8)
    await expunge(box, [uids[1], uids[5]])
    new_uid = box.dovecot.append(box.user, "INBOX", build_message(to=box.address, subject="fresh"))
    listings, selects = count_calls(monkeypatch, "list_uids"), count_calls(monkeypatch, "select_folder")
    await sync_account(account.id, services)
    assert await stored(account, "INBOX") == sorted(server_uids(box, "INBOX")) == sorted(
        (set(uids) - {uids[1], uids[5]}) | {new_uid})
    inbox = [snapshot for args, _kw, snapshot in selects if args[0] == "INBOX"]
    assert inbox and uids_in_set(inbox[0].vanished or "", set(uids)) == {uids[1], uids[5]}
    assert listings == []  # no UID SEARCH ALL: VANISHED said it all
    folder = await Folder.get(account_id=account.id, name="INBOX")
    assert folder.messages_synced == len(uids) - 2 + 1


async def test_without_qresync_the_folder_is_reconciled(
    rep: User, mail_account: TestMailbox, services: SyncServices, monkeypatch: pytest.MonkeyPatch,
) -> None:
    box = mail_account
    account, uids = await synced(rep, box, services, 5)
    await MailAccount.filter(id=account.id).update(
        capabilities=[c for c in account.capabilities if c != "QRESYNC"])
    await expunge(box, [uids[0]])
    listings = count_calls(monkeypatch, "list_uids")
    await sync_account(account.id, services)
    assert await stored(account, "INBOX") == sorted(set(uids) - {uids[0]})
    assert listings  # the UID-by-UID comparison did it


async def test_a_vanished_answer_that_misses_an_expunge_is_caught_by_the_count(
    rep: User, mail_account: TestMailbox, services: SyncServices, monkeypatch: pytest.MonkeyPatch,
) -> None:
    box = mail_account
    account, uids = await synced(rep, box, services, 6)
    await expunge(box, [uids[2], uids[3]])
    real = imap_fetch.select_folder

    def forgetful(*args: Any, **kwargs: Any) -> Any:  # a server whose VANISHED omits a UID
        snapshot = real(*args, **kwargs)
        return snapshot if snapshot.vanished is None else replace(snapshot, vanished=str(uids[2]))
    monkeypatch.setattr(imap_fetch, "select_folder", forgetful)
    listings = count_calls(monkeypatch, "list_uids")
    await sync_account(account.id, services)
    assert await stored(account, "INBOX") == sorted(set(uids) - {uids[2], uids[3]})
    assert listings  # the stored count differed from EXISTS: reconciled
