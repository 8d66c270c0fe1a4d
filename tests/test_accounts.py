"""Connecting mail accounts against the real Dovecot and SMTP servers (docs/accounts.md)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from salesinbox.core import hookimpl
from salesinbox.core.credentials import Secret, SecretBox
from salesinbox.core.db.models import (
    AccountExcludedDomain,
    Folder,
    FromAddress,
    MailAccount,
    Organisation,
    SyncState,
    User,
)
from salesinbox.core.errors import ErrorCode, SalesInboxError
from salesinbox.core.mail_accounts.accounts import (
    ConnectAccountInput,
    FromAddressInput,
    ServerInput,
    connect_account,
    disconnect_account,
    get_account,
    update_credentials,
)
from salesinbox.core.plugin_host.plugins import get_plugin_manager
from salesinbox.core.plugin_host.provider_registry import ProviderRegistry
from salesinbox.core.plugin_host.providers import AuthKind, FolderRole, ProviderEndpoints, Security, ServerEndpoint
from salesinbox.core.settings import Settings
from salesinbox.core.transport.server_login import ConnectPolicy

if TYPE_CHECKING:
    from .servers.fixtures import MailAccount as TestMailbox

pytestmark = pytest.mark.dovecot


@pytest.fixture
def registry() -> ProviderRegistry:
    return ProviderRegistry(get_plugin_manager(load_entrypoints=False))


@pytest.fixture
def secrets(db: Settings) -> SecretBox:
    return SecretBox.from_settings(db)


@pytest.fixture
def policy(db: Settings) -> ConnectPolicy:
    return ConnectPolicy.from_settings(db)


def custom(
    box: TestMailbox, *, implicit_tls: bool = False, password: str | None = None, **extra: object
) -> ConnectAccountInput:
    """Custom IMAP pointing at the test servers (STARTTLS ports, or implicit TLS)."""
    security = Security.SSL if implicit_tls else Security.STARTTLS
    return ConnectAccountInput(
        provider="custom_imap",
        email=box.address,
        secret=Secret(password or box.password),
        display_name="Rex at work",
        incoming=ServerInput("localhost", box.dovecot.ssl_port if implicit_tls else box.dovecot.port, security),
        outgoing=ServerInput("localhost", box.smtp.ssl_port if implicit_tls else box.smtp.port, security),
        **extra,  # type: ignore[arg-type]
    )


async def test_connect_custom_imap_over_starttls(
    rep: User, mail_account: TestMailbox, registry, secrets, policy
) -> None:
    account = await connect_account(rep, custom(mail_account), registry=registry, secrets=secrets, policy=policy)
    assert account.email == mail_account.address and account.user_id == rep.id
    assert account.sync_state == SyncState.NEW
    assert {"IDLE", "CONDSTORE", "QRESYNC", "SPECIAL-USE"} <= set(account.capabilities)
    folders = {f.name: f.role for f in await Folder.filter(account=account)}
    assert folders == {"INBOX": FolderRole.INBOX, "Sent": FolderRole.SENT}
    default = await FromAddress.get(account=account)
    assert default.address == mail_account.address and default.is_default
    # The stored secret is encrypted, and decrypts to the password.
    row = await MailAccount.get(id=account.id)
    assert mail_account.password not in row.imap_secret
    assert secrets.decrypt(row.imap_secret).reveal() == mail_account.password
    assert row.smtp_same_credentials


async def test_connect_over_implicit_tls(rep: User, mail_account: TestMailbox, registry, secrets, policy) -> None:
    account = await connect_account(rep, custom(mail_account, implicit_tls=True), registry=registry,
                                    secrets=secrets, policy=policy)
    assert account.imap_security == Security.SSL and account.smtp_port == mail_account.smtp.ssl_port


async def _refused(rep: User, data: ConnectAccountInput, registry, secrets, policy) -> SalesInboxError:
    with pytest.raises(SalesInboxError) as caught:
        await connect_account(rep, data, registry=registry, secrets=secrets, policy=policy)
    assert await MailAccount.all().count() == 0, "nothing may be saved on failure"
    return caught.value


async def test_wrong_password_is_typed_with_a_hint(
    rep: User, mail_account: TestMailbox, registry, secrets, policy
) -> None:
    error = await _refused(rep, custom(mail_account, password="wrong-Pa55word"), registry, secrets, policy)
    assert error.code == ErrorCode.AUTHENTICATION_FAILED
    assert "app-specific password" in error.message
    assert "wrong-Pa55word" not in error.message


async def test_untrusted_certificate(
    rep: User, mail_account: TestMailbox, dovecot_factory, registry, secrets, policy
) -> None:
    untrusted = dovecot_factory(untrusted_cert=True)
    user = untrusted.add_user(mail_account.address, mail_account.password)
    data = replace(custom(mail_account), incoming=ServerInput("localhost", untrusted.port, Security.STARTTLS))
    assert user.address == mail_account.address
    error = await _refused(rep, data, registry, secrets, policy)
    assert error.code == ErrorCode.TLS_FAILED and "localhost" in error.message


async def test_closed_port(rep: User, mail_account: TestMailbox, registry, secrets, policy) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    data = replace(custom(mail_account), incoming=ServerInput("localhost", closed, Security.SSL))
    error = await _refused(rep, data, registry, secrets, policy)
    assert error.code == ErrorCode.CONNECTION_FAILED


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


async def test_black_hole_times_out_within_the_limit(rep: User, mail_account: TestMailbox, black_hole: int,
                                                     registry, secrets) -> None:
    policy = ConnectPolicy(timeout=1.0, allow_private_hosts=True, allow_plaintext=False,
                           extra_ca_file=None)
    data = replace(custom(mail_account), incoming=ServerInput("localhost", black_hole, Security.SSL))
    started = time.monotonic()
    error = await _refused(rep, data, registry, secrets, policy)
    assert error.code == ErrorCode.TIMEOUT
    assert time.monotonic() - started < 3.0


async def test_private_hosts_refused_unless_allowed(
    rep: User, mail_account: TestMailbox, registry, secrets, db: Settings
) -> None:
    strict = ConnectPolicy.from_settings(db.with_overrides(allow_private_hosts=False))
    error = await _refused(rep, custom(mail_account), registry, secrets, strict)
    assert error.code == ErrorCode.HOST_NOT_ALLOWED and "SALESINBOX_ALLOW_PRIVATE_HOSTS" in error.message


class PointPresetsAtTestServers:
    """Test-only plugin: every preset provider's endpoints become the fixture's servers."""

    def __init__(self, box: TestMailbox) -> None:
        self.box = box

    @hookimpl(tryfirst=True)
    def salesinbox_resolve_endpoints(self, provider: str, email: str, options: object) -> ProviderEndpoints | None:
        if provider == "custom_imap":
            return None
        return ProviderEndpoints(
            imap=ServerEndpoint("localhost", self.box.dovecot.ssl_port, Security.SSL),
            smtp=ServerEndpoint("localhost", self.box.smtp.ssl_port, Security.SSL),
        )


@pytest.fixture
def preset_registry(mail_account: TestMailbox) -> ProviderRegistry:
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(PointPresetsAtTestServers(mail_account))
    return ProviderRegistry(pm)


async def test_preset_account_connects_and_gets_the_provider_hint(rep: User, mail_account: TestMailbox,
                                                                  preset_registry, secrets, policy) -> None:
    wrong = ConnectAccountInput(provider="gmail", email=mail_account.address, secret=Secret("not-it"))
    error = await _refused(rep, wrong, preset_registry, secrets, policy)
    assert error.code == ErrorCode.AUTHENTICATION_FAILED
    assert "Gmail needs an app password" in error.message
    right = ConnectAccountInput(provider="gmail", email=mail_account.address,
                                secret=Secret(mail_account.password), auth_kind=AuthKind.APP_PASSWORD)
    account = await connect_account(rep, right, registry=preset_registry, secrets=secrets, policy=policy)
    assert account.provider == "gmail" and account.imap_port == mail_account.dovecot.ssl_port


class PointGmailAt:
    """Test-only plugin: Gmail's preset IMAP server becomes ``imap`` (SMTP: the fixture's)."""

    def __init__(self, box: TestMailbox, imap: ServerEndpoint) -> None:
        self.box, self.imap = box, imap

    @hookimpl(tryfirst=True)
    def salesinbox_resolve_endpoints(self, provider: str, email: str, options: object) -> ProviderEndpoints | None:
        if provider != "gmail":
            return None
        return ProviderEndpoints(imap=self.imap,
                                 smtp=ServerEndpoint("localhost", self.box.smtp.ssl_port, Security.SSL))


def gmail_at(box: TestMailbox, imap: ServerEndpoint) -> ProviderRegistry:
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(PointGmailAt(box, imap))
    return ProviderRegistry(pm)


def gmail(box: TestMailbox) -> ConnectAccountInput:
    return ConnectAccountInput(provider="gmail", email=box.address, secret=Secret(box.password),
                               auth_kind=AuthKind.APP_PASSWORD)


async def test_an_unreachable_preset_server_names_the_provider_not_a_field(
    rep: User, mail_account: TestMailbox, registry, secrets, policy,
) -> None:
    # .invalid never resolves (RFC 6761): as a preset server does on a machine without DNS.
    unresolvable = gmail_at(mail_account, ServerEndpoint("imap.gmail.invalid", 993, Security.SSL))
    error = await _refused(rep, gmail(mail_account), unresolvable, secrets, policy)
    assert error.code == ErrorCode.CONNECTION_FAILED and error.field is None
    assert error.message == ("Cannot reach Gmail's IMAP server imap.gmail.invalid: check this machine's "
                             "network connection and DNS, then try again.")
    # The same server typed by the user is the user's to fix: the field and "the server name".
    typed = replace(gmail(mail_account), incoming=ServerInput("imap.gmail.invalid", 993, Security.SSL))
    error = await _refused(rep, typed, unresolvable, secrets, policy)
    assert error.code == ErrorCode.CONNECTION_FAILED and error.field == "host"
    assert error.message == "Cannot find the server imap.gmail.invalid: check the server name."


async def test_a_silent_preset_server_names_the_provider_and_the_port(
    rep: User, mail_account: TestMailbox, black_hole: int, secrets,
) -> None:
    policy = ConnectPolicy(timeout=1.0, allow_private_hosts=True)
    silent = gmail_at(mail_account, ServerEndpoint("localhost", black_hole, Security.SSL))
    error = await _refused(rep, gmail(mail_account), silent, secrets, policy)
    assert error.code == ErrorCode.TIMEOUT and error.field is None
    assert error.message.startswith(f"No answer from Gmail's IMAP server localhost (port {black_hole}) within 1 s")


async def test_excluded_domains_and_from_aliases_are_saved_with_the_account(
    rep: User, mail_account: TestMailbox, registry, secrets, policy,
) -> None:
    data = custom(mail_account, excluded_domains=("@Customer.COM", "customer.com", "partner.example"),
                  from_addresses=(FromAddressInput("Sales@Acme.test", "  Acme   Sales "),
                                  FromAddressInput("rex.alias@acme.test")))
    account = await connect_account(rep, data, registry=registry, secrets=secrets, policy=policy)
    domains = await AccountExcludedDomain.filter(account=account).order_by("domain").values_list("domain", flat=True)
    assert domains == ["customer.com", "partner.example"]
    rows = {(r.address, r.name, r.is_default) for r in await FromAddress.filter(account=account)}
    assert rows == {(mail_account.address, "Rex at work", True), ("sales@acme.test", "Acme Sales", False),
                    ("rex.alias@acme.test", "", False)}


@pytest.mark.parametrize(("extra", "field", "words"), [
    ({"excluded_domains": ("not a domain",)}, "excludedDomains", "not a valid domain"),
    ({"from_addresses": (FromAddressInput("nope"),)}, "fromAddresses", "not a valid email"),
    ({"from_addresses": (FromAddressInput("a@acme.test"), FromAddressInput("A@acme.test"))},
     "fromAddresses", "listed twice"),
    ({"excluded_domains": tuple(f"d{i}.example" for i in range(101))}, "excludedDomains", "At most 100"),
])
async def test_bad_extras_are_refused_before_any_server_is_asked(
    rep: User, mail_account: TestMailbox, registry, secrets, policy, extra, field, words,
) -> None:
    # A wrong password too: the input error comes first, no server is contacted.
    error = await _refused(rep, custom(mail_account, password="wrong-Pa55word", **extra), registry, secrets, policy)
    assert error.code == ErrorCode.INVALID_INPUT and error.field == field and words in error.message
    own = custom(mail_account, from_addresses=(FromAddressInput(mail_account.address.upper()),))
    error = await _refused(rep, own, registry, secrets, policy)
    assert error.field == "fromAddresses" and "own address" in error.message


async def test_microsoft_refuses_passwords_before_connecting(rep: User, registry, secrets, policy) -> None:
    data = ConnectAccountInput(provider="outlook", email="rep@outlook.com", secret=Secret("pw"),
                               auth_kind=AuthKind.PASSWORD)
    error = await _refused(rep, data, registry, secrets, policy)
    assert error.code == ErrorCode.INVALID_INPUT and "XOAUTH2" in error.message


async def test_unknown_and_disabled_providers(rep: User, mail_account: TestMailbox, registry, secrets, policy) -> None:
    unknown = ConnectAccountInput(provider="aol", email=mail_account.address, secret=Secret("pw"))
    assert (await _refused(rep, unknown, registry, secrets, policy)).code == ErrorCode.UNKNOWN_PROVIDER
    await Organisation.all().update(disabled_providers=["custom_imap"])
    error = await _refused(rep, custom(mail_account), registry, secrets, policy)
    assert error.code == ErrorCode.PROVIDER_DISABLED


async def test_custom_imap_needs_both_servers(rep: User, mail_account: TestMailbox, registry, secrets, policy) -> None:
    data = ConnectAccountInput(provider="custom_imap", email=mail_account.address, secret=Secret("pw"))
    error = await _refused(rep, data, registry, secrets, policy)
    assert error.code == ErrorCode.INVALID_INPUT and error.field == "incoming"


async def test_duplicate_and_on_behalf(rep: User, admin: User, other_rep: User, mail_account: TestMailbox,
                                       registry, secrets, policy) -> None:
    await connect_account(rep, custom(mail_account), registry=registry, secrets=secrets, policy=policy)
    with pytest.raises(SalesInboxError) as caught:
        await connect_account(rep, custom(mail_account), registry=registry, secrets=secrets, policy=policy)
    assert caught.value.code == ErrorCode.ALREADY_EXISTS
    with pytest.raises(SalesInboxError) as caught:
        await connect_account(other_rep, custom(mail_account, owner_id=rep.id), registry=registry,
                              secrets=secrets, policy=policy)
    assert caught.value.code == ErrorCode.FORBIDDEN
    on_behalf = await connect_account(admin, custom(mail_account, owner_id=other_rep.id), registry=registry,
                                      secrets=secrets, policy=policy)
    assert on_behalf.user_id == other_rep.id
    with pytest.raises(SalesInboxError) as caught:
        await get_account(rep, on_behalf.id)
    assert caught.value.code == ErrorCode.NOT_FOUND


async def test_update_credentials_verifies_and_clears_reauth(rep: User, mail_account: TestMailbox,
                                                            registry, secrets, policy) -> None:
    account = await connect_account(rep, custom(mail_account), registry=registry, secrets=secrets, policy=policy)
    await MailAccount.filter(id=account.id).update(sync_state=SyncState.NEEDS_REAUTH, sync_error="refused")
    with pytest.raises(SalesInboxError) as caught:
        await update_credentials(rep, account.id, secret=Secret("bad"), smtp_secret=None, secrets=secrets,
                                 registry=registry, policy=policy)
    assert caught.value.code == ErrorCode.AUTHENTICATION_FAILED
    row = await MailAccount.get(id=account.id)
    assert (
        secrets.decrypt(row.imap_secret).reveal() == mail_account.password and row.sync_state == SyncState.NEEDS_REAUTH
    )
    updated = await update_credentials(rep, account.id, secret=Secret(mail_account.password), smtp_secret=None,
                                       secrets=secrets, registry=registry, policy=policy)
    assert updated.sync_state == SyncState.NEW and updated.sync_error is None


async def test_disconnect_needs_confirmation(rep: User, mail_account: TestMailbox, registry, secrets, policy) -> None:
    account = await connect_account(rep, custom(mail_account), registry=registry, secrets=secrets, policy=policy)
    with pytest.raises(SalesInboxError) as caught:
        await disconnect_account(rep, account.id, confirm_email="yes")
    assert caught.value.field == "confirmEmail" and await MailAccount.exists(id=account.id)
    await disconnect_account(rep, account.id, confirm_email=mail_account.address.upper())
    assert not await MailAccount.exists(id=account.id)
    assert await Folder.filter(account_id=account.id).count() == 0


async def test_password_never_reaches_logs_or_errors(rep: User, mail_account: TestMailbox, registry, secrets,
                                                     policy, caplog: pytest.LogCaptureFixture) -> None:
    secret_word = "Recognisable-S3cret-Zebra"
    with caplog.at_level(logging.DEBUG):
        error = await _refused(rep, custom(mail_account, password=secret_word), registry, secrets, policy)
        await connect_account(rep, custom(mail_account), registry=registry, secrets=secrets, policy=policy)
    assert secret_word not in caplog.text and mail_account.password not in caplog.text
    assert secret_word not in f"{error} {error!r} {error.message}"
