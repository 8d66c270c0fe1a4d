"""What the API shows of one message for a faithful display (docs/views.md#message-detail):
every author, the counterparties, References, the parent message when it is stored and
visible, as the owner and as a colleague; read for a whole page without N+1."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from salesinbox.core.crm.api_tokens import issue_token
from salesinbox.core.crm.linking import link_messages
from salesinbox.core.crm.records import RecordInput, create_record
from salesinbox.core.db.models import AddressRole, MailAccount, Message, MessageAddress, RecordKind, User

from .conftest import GraphQLClient
from .test_policy import write_account, write_message
from .test_schema_views import count_statements

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

DETAIL = """query($id: ID!) { message(id: $id) {
  fromName fromAddress authors { name address } to { address } cc { address } bcc { address }
  counterparties { name address } messageId inReplyTo references parentMessageId
  parent { id subject } parseWarnings } }"""


async def stored(account: MailAccount, uid: int, *, message_id: str | None = None, in_reply_to: str | None = None,
                 references: str = "", authors: tuple[tuple[str, str], ...] = (("Jane Doe", "jane@globex.com"),),
                 to: tuple[str, ...] = (), cc: tuple[str, ...] = (), subject: str = "Hello",
                 warnings: tuple[str, ...] = ()) -> Message:
    """A message as the sync stores it: address rows (own addresses not counterparties),
    threading headers, the first author in fromName/fromAddress, links made."""
    own = account.email
    addresses = [(AddressRole.FROM, address, address != own) for _, address in authors]
    addresses += [(AddressRole.TO, address, address != own) for address in (*to, own)]
    addresses += [(AddressRole.CC, address, address != own) for address in cc]
    message = await write_message(account, uid, T0 + timedelta(minutes=uid), addresses)
    names = dict((address, name) for name, address in authors)
    for row in await MessageAddress.filter(message_id=message.id):
        row.name = names.get(row.address, "")
        await row.save()
    message.message_id, message.in_reply_to, message.references = message_id, in_reply_to, references
    message.subject, message.parse_warnings = subject, list(warnings)
    message.from_name, message.from_address = authors[0]
    await message.save()
    owner = await User.get(id=account.user_id)
    await link_messages(owner.organisation_id, [message.id])
    return message


@pytest.fixture
async def thread(rep: User, other_rep: User) -> dict[str, Message]:
    mine = await write_account(rep, "PUBLIC", "rep@acme.test")
    theirs = await write_account(other_rep, "PUBLIC", "other@acme.test")
    private = await write_account(other_rep, "PRIVATE", "other.private@acme.test")
    await create_record(rep, RecordKind.CONTACT, RecordInput(last_name="Doe", primary_email="jane@globex.com"))
    root = "<root@globex.com>"
    return {
        # RFC 5322 §3.6.2: several authors in From; the Cc repeats one of them
        "root": await stored(mine, 1, message_id=root, subject="Offer",
                             authors=(("Jane Doe", "jane@globex.com"), ("Bob Roe", "bob@globex.com")),
                             cc=("Jane@globex.com".lower(), "carl@globex.com"), warnings=("bad Date header",)),
        # the colleague's own copy of the same message: not the parent of mail in rep's mailbox
        "their_root": await stored(theirs, 2, message_id=root, subject="Offer (their copy)"),
        "reply": await stored(mine, 3, message_id="<r1@acme.test>", in_reply_to=root, references=root,
                              subject="Re: Offer"),
        # no In-Reply-To: the parent is the last References entry (the first is unknown here)
        "by_references": await stored(mine, 4, message_id="<r2@globex.com>", references=f"<gone@x.test> {root}",
                                      subject="Re: Offer again"),
        "parent_not_stored": await stored(mine, 5, in_reply_to="<gone@x.test>", references="<gone@x.test>"),
        "hidden_parent": await stored(private, 6, message_id="<secret@globex.com>", subject="Secret"),
        "reply_to_hidden": await stored(mine, 7, in_reply_to="<secret@globex.com>"),
        "own_parent": await stored(mine, 8, message_id="<loop@globex.com>", in_reply_to="<loop@globex.com>"),
    }


async def detail(api: GraphQLClient, message: Message, token: str) -> dict:
    return (await api.ok(DETAIL, {"id": str(message.id)}, token=token))["message"]


async def test_every_author_counterparty_and_reference(api: GraphQLClient, rep_token: str,
                                                       thread: dict[str, Message]) -> None:
    root = await detail(api, thread["root"], rep_token)
    assert (root["fromName"], root["fromAddress"]) == ("Jane Doe", "jane@globex.com")
    assert root["authors"] == [{"name": "Jane Doe", "address": "jane@globex.com"},
                               {"name": "Bob Roe", "address": "bob@globex.com"}]
    assert [a["address"] for a in root["to"]] == ["rep@acme.test"]
    assert [a["address"] for a in root["cc"]] == ["jane@globex.com", "carl@globex.com"]
    assert root["bcc"] == []
    # the owner's own address is no counterparty; Jane, in From and Cc, comes once, with her name
    assert root["counterparties"] == [{"name": "Jane Doe", "address": "jane@globex.com"},
                                      {"name": "Bob Roe", "address": "bob@globex.com"},
                                      {"name": "", "address": "carl@globex.com"}]
    assert root["parseWarnings"] == ["bad Date header"]
    assert (root["references"], root["inReplyTo"], root["parentMessageId"], root["parent"]) == ([], None, None, None)
    by_references = await detail(api, thread["by_references"], rep_token)
    assert by_references["references"] == ["<gone@x.test>", "<root@globex.com>"]
    assert by_references["inReplyTo"] is None and by_references["parentMessageId"] == "<root@globex.com>"


async def test_the_parent_is_the_stored_visible_copy_in_the_same_mailbox(
    api: GraphQLClient, rep_token: str, other_rep: User, thread: dict[str, Message]
) -> None:
    root = {"id": str(thread["root"].id), "subject": "Offer"}
    for name in ("reply", "by_references"):
        assert (await detail(api, thread[name], rep_token))["parent"] == root
    gone = await detail(api, thread["parent_not_stored"], rep_token)
    assert (gone["parentMessageId"], gone["parent"]) == ("<gone@x.test>", None)
    assert (await detail(api, thread["own_parent"], rep_token))["parent"] is None
    # the parent goes through the sharing rule: rep may not see the colleague's PRIVATE mail
    hidden = await detail(api, thread["reply_to_hidden"], rep_token)
    assert (hidden["parentMessageId"], hidden["parent"]) == ("<secret@globex.com>", None)
    # the colleague sees rep's shared reply with rep's copy of the root, not their own copy
    other_token = (await issue_token(other_rep, "t"))[1]
    assert (await detail(api, thread["reply"], other_token))["parent"] == root
    their_parent = (await detail(api, thread["reply_to_hidden"], other_token))["parent"]
    assert their_parent == {"id": str(thread["hidden_parent"].id), "subject": "Secret"}


async def test_a_page_reads_authors_counterparties_and_parents_without_n_plus_1(
    api: GraphQLClient, rep: User, rep_token: str, thread: dict[str, Message], monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await MailAccount.get(user_id=rep.id)
    for uid in range(100, 130):
        await stored(account, uid, in_reply_to="<root@globex.com>", references="<root@globex.com>")
    query = ("query($n: Int!) { salesInbox(first: $n) { items { id authors { address } "
             "counterparties { address } parent { id } } } }")
    await api.ok(query, {"n": 1}, token=rep_token)  # the token is now known
    counted = count_statements(monkeypatch)
    sizes = {}
    for n in (3, 30):
        counted.clear()
        data = await api.ok(query, {"n": n}, token=rep_token)
        assert len(data["salesInbox"]["items"]) == n
        assert {item["parent"]["id"] for item in data["salesInbox"]["items"]} == {str(thread["root"].id)}
        sizes[n] = len(counted)
    assert sizes[3] == sizes[30], counted
