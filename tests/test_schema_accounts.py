"""Mail accounts through GraphQL, against the real Dovecot and SMTP servers."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import pytest

from salesinbox.core.db.models import MailAccount, User

from .conftest import GraphQLClient

if TYPE_CHECKING:
    from .servers.fixtures import MailAccount as TestMailbox

pytestmark = pytest.mark.dovecot

CONNECT = """mutation($input: ConnectMailAccountInput!) { connectMailAccount(input: $input) {
  id ownerId provider displayName email sharing authKind syncState syncError syncDaysLimit createdAt
  lastSyncedAt initialSyncCompletedAt outgoingSameCredentials
  incoming { host port security username } outgoing { host port security username }
  capabilities { idle condstore qresync specialUse authMechanisms all }
  fromAddresses { address name isDefault }
  folders { name role messagesTotal messagesSynced initialSyncDone uidvalidity highestModseq lastSyncedAt lastError
    retryAt }
} }"""


def connect_input(box: TestMailbox, password: str | None = None) -> dict:
    return {
        "provider": "custom_imap",
        "email": box.address,
        "password": password or box.password,
        "displayName": "Rex",
        "incoming": {"host": "localhost", "port": box.dovecot.port, "security": "STARTTLS"},
        "outgoing": {"host": "localhost", "port": box.smtp.ssl_port, "security": "SSL"},
        "syncDaysLimit": 365,
    }


async def test_connect_and_read_server_details(api: GraphQLClient, rep: User, rep_token: str,
                                               mail_account: TestMailbox) -> None:
    data = await api.ok(CONNECT, {"input": connect_input(mail_account)}, token=rep_token)
    account = data["connectMailAccount"]
    assert account["ownerId"] == str(rep.id) and account["syncState"] == "NEW"
    assert account["incoming"] == {"host": "localhost", "port": mail_account.dovecot.port,
                                   "security": "STARTTLS", "username": mail_account.address}
    assert account["capabilities"]["idle"] and account["capabilities"]["condstore"]
    assert "PLAIN" in account["capabilities"]["authMechanisms"]
    assert account["fromAddresses"] == [{"address": mail_account.address, "name": "Rex", "isDefault": True}]
    assert {f["name"] for f in account["folders"]} == {"INBOX", "Sent"}
    assert mail_account.password not in json.dumps(data)

    listed = await api.ok("{ mailAccounts { id email } }", token=rep_token)
    assert listed["mailAccounts"] == [{"id": account["id"], "email": mail_account.address}]
    one = await api.ok("query($id: ID!) { mailAccount(id: $id) { outgoing { port security } } }",
                       {"id": account["id"]}, token=rep_token)
    assert one["mailAccount"]["outgoing"] == {"port": mail_account.smtp.ssl_port, "security": "SSL"}


async def test_wrong_password_is_a_typed_error(api: GraphQLClient, rep_token: str, mail_account: TestMailbox,
                                               caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        body = await api.post(CONNECT, {"input": connect_input(mail_account, "Zebra-Wrong-Pw")}, token=rep_token)
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "AUTHENTICATION_FAILED"
    assert "Zebra-Wrong-Pw" not in json.dumps(body) and "Zebra-Wrong-Pw" not in caplog.text
    assert await MailAccount.all().count() == 0


async def test_colleagues_cannot_see_or_touch_an_account(api: GraphQLClient, rep_token: str, admin_token: str,
                                                         rep: User, mail_account: TestMailbox) -> None:
    from salesinbox.core.crm.api_tokens import issue_token
    from salesinbox.core.crm.users import create_user

    account = (await api.ok(CONNECT, {"input": connect_input(mail_account)}, token=rep_token))["connectMailAccount"]
    colleague = await create_user(None, email="col@acme.test", name="Col")
    colleague_token = (await issue_token(colleague, "t"))[1]
    error = await api.error(
        "query($id: ID!) { mailAccount(id: $id) { id } }", {"id": account["id"]}, token=colleague_token
    )
    assert error["extensions"]["code"] == "NOT_FOUND"
    error = await api.error(
        "query($u: ID!) { mailAccounts(userId: $u) { id } }", {"u": str(rep.id)}, token=colleague_token
    )
    assert error["extensions"]["code"] == "FORBIDDEN"
    # An admin manages anyone's account.
    admin_view = await api.ok(
        "query($u: ID!) { mailAccounts(userId: $u) { id } }", {"u": str(rep.id)}, token=admin_token
    )
    assert admin_view["mailAccounts"] == [{"id": account["id"]}]


async def test_from_addresses(api: GraphQLClient, rep_token: str, mail_account: TestMailbox) -> None:
    account = (await api.ok(CONNECT, {"input": connect_input(mail_account)}, token=rep_token))["connectMailAccount"]
    variables = {"a": account["id"], "addr": "Sales@Acme.test"}
    added = await api.ok(
        "mutation($a: ID!, $addr: String!) { "
        'addFromAddress(accountId: $a, address: $addr, name: "Sales") { address isDefault } }',
        variables,
        token=rep_token,
    )
    assert {"address": "sales@acme.test", "isDefault": False} in added["addFromAddress"]
    chosen = await api.ok(
        "mutation($a: ID!, $addr: String!) { "
        "setDefaultFromAddress(accountId: $a, address: $addr) { address isDefault } }",
        variables,
        token=rep_token,
    )
    assert chosen["setDefaultFromAddress"][0] == {"address": "sales@acme.test", "isDefault": True}
    removed = await api.ok(
        "mutation($a: ID!, $addr: String!) { removeFromAddress(accountId: $a, address: $addr) { address isDefault } }",
        variables,
        token=rep_token,
    )
    assert removed["removeFromAddress"] == [{"address": mail_account.address, "isDefault": True}]
    error = await api.error("mutation($a: ID!) { addFromAddress(accountId: $a, address: \"nope\") { address } }",
                            {"a": account["id"]}, token=rep_token)
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": "address"}


async def test_update_credentials_and_disconnect(api: GraphQLClient, rep_token: str, mail_account: TestMailbox) -> None:
    account = (await api.ok(CONNECT, {"input": connect_input(mail_account)}, token=rep_token))["connectMailAccount"]
    error = await api.error("mutation($id: ID!) { updateMailAccountCredentials(id: $id, password: \"bad\") { id } }",
                            {"id": account["id"]}, token=rep_token)
    assert error["extensions"]["code"] == "AUTHENTICATION_FAILED"
    ok = await api.ok(
        "mutation($id: ID!, $p: String!) { updateMailAccountCredentials(id: $id, password: $p) { syncState } }",
        {"id": account["id"], "p": mail_account.password},
        token=rep_token,
    )
    assert ok["updateMailAccountCredentials"]["syncState"] == "NEW"
    error = await api.error("mutation($id: ID!) { disconnectMailAccount(id: $id, confirmEmail: \"x\") }",
                            {"id": account["id"]}, token=rep_token)
    assert error["extensions"]["field"] == "confirmEmail"
    gone = await api.ok("mutation($id: ID!, $e: String!) { disconnectMailAccount(id: $id, confirmEmail: $e) }",
                        {"id": account["id"], "e": mail_account.address}, token=rep_token)
    assert gone["disconnectMailAccount"] == account["id"]
    assert await MailAccount.all().count() == 0


async def test_a_huge_server_name_is_a_typed_error_and_logs_short_lines(
        api: GraphQLClient, rep_token: str, mail_account: TestMailbox, caplog: pytest.LogCaptureFixture) -> None:
    given = connect_input(mail_account)
    given["incoming"]["host"] = "a" * (1024 * 1024)
    with caplog.at_level(logging.INFO):
        error = await api.error(CONNECT, {"input": given}, token=rep_token)
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": "host"}
    assert await MailAccount.all().count() == 0
    failures = [record.getMessage() for record in caplog.records if "failed while" in record.getMessage()]
    assert failures and max(len(message) for message in failures) < 1000, failures[0][:300]
    assert max(len(record.getMessage()) for record in caplog.records) < 8192


async def test_connect_with_excluded_domains_and_from_aliases(api: GraphQLClient, rep_token: str,
                                                              mail_account: TestMailbox) -> None:
    given = {**connect_input(mail_account), "excludedDomains": ["@Customer.COM", "partner.example"],
             "fromAddresses": [{"address": "Sales@Acme.test", "name": "Sales"}, {"address": "alias@acme.test"}]}
    query = CONNECT.replace("fromAddresses {", "excludedDomains fromAddresses {")
    account = (await api.ok(query, {"input": given}, token=rep_token))["connectMailAccount"]
    assert account["excludedDomains"] == ["customer.com", "partner.example"]
    assert account["fromAddresses"] == [
        {"address": mail_account.address, "name": "Rex", "isDefault": True},
        {"address": "alias@acme.test", "name": "", "isDefault": False},
        {"address": "sales@acme.test", "name": "Sales", "isDefault": False},
    ]
    refused = {**connect_input(mail_account), "excludedDomains": ["nope"]}
    error = await api.error(CONNECT, {"input": refused}, token=rep_token)
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": "excludedDomains"}
