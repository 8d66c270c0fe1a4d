"""sendEmail and replyToEmail through GraphQL, against the real SMTP server and Dovecot."""

from __future__ import annotations

import base64
import email
import json
from typing import TYPE_CHECKING

import pytest
from starlette.applications import Starlette

from salesinbox.core.db.models import Message
from salesinbox.core.sync.engine import sync_account

from .conftest import GraphQLClient
from .servers.messages import build_message
from .test_schema_sync import connected

if TYPE_CHECKING:
    from .servers.fixtures import MailAccount as TestMailbox

pytestmark = pytest.mark.dovecot

SENT = "message { id subject direction fromAddress seen } savedToSentFolder warning"


async def test_send_and_reply(api: GraphQLClient, app: Starlette, rep_token: str, admin_token: str,
                              mail_account: TestMailbox) -> None:
    box = mail_account
    box.dovecot.append(box.user, "INBOX", build_message(from_="jane@globex.example", to=box.address,
                                                        subject="Question", message_id="<q@globex.example>"))
    account_id = await connected(api, rep_token, box)
    await sync_account(int(account_id), app.state.services.sync_services())

    attachment = {"filename": "a.txt", "contentType": "text/plain", "contentBase64": base64.b64encode(b"hi").decode()}
    sent = await api.ok(f"mutation($i: EmailInput!) {{ sendEmail(input: $i) {{ {SENT} }} }}",
                        {"i": {"to": ["bob@customer.example"], "subject": "Hello", "text": "Hi Bob",
                               "attachments": [attachment]}}, token=rep_token)
    assert sent["sendEmail"]["message"]["direction"] == "SENT" and sent["sendEmail"]["savedToSentFolder"]
    assert sent["sendEmail"]["message"]["fromAddress"] == box.address and sent["sendEmail"]["message"]["seen"]

    original = await Message.get(message_id="<q@globex.example>")
    replied = await api.ok(
        f"mutation($m: ID!, $i: EmailInput!) {{ replyToEmail(messageId: $m, input: $i) {{ {SENT} }} }}",
        {"m": str(original.id), "i": {"text": "Answer"}},
        token=rep_token,
    )
    assert replied["replyToEmail"]["message"]["subject"] == "Re: Question"
    wire = email.message_from_bytes(box.smtp.wait_for_messages(2)[1].data)
    assert wire["In-Reply-To"] == "<q@globex.example>" and wire["To"] == "jane@globex.example"
    assert box.password not in json.dumps(replied)

    # The admin has no account of their own, and may not see the rep's private mail anyway.
    error = await api.error("mutation($i: EmailInput!) { sendEmail(input: $i) { warning } }",
                            {"i": {"to": ["x@y.example"], "text": "x"}}, token=admin_token)
    assert error["extensions"]["code"] == "NO_MAIL_ACCOUNT"
    error = await api.error("mutation($m: ID!) { replyToEmail(messageId: $m, input: {text: \"x\"}) { warning } }",
                            {"m": str(original.id)}, token=admin_token)
    assert error["extensions"]["code"] == "NOT_FOUND"
    error = await api.error("mutation($i: EmailInput!) { sendEmail(input: $i) { warning } }",
                            {"i": {"to": ["x@y.example"], "attachments": [{"filename": "x", "contentBase64": "%%%"}]}},
                            token=rep_token)
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": "attachments"}
