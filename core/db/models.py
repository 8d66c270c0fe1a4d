"""The data model (Tortoise ORM): organisation, users, CRM records, mail accounts and mail.

Tables have explicit names. Email addresses and domains are stored normalised (see
:mod:`salesinbox.core.address_normalisation`) so that matching is a plain equality in SQL. Secrets are
stored only as Fernet tokens (:mod:`salesinbox.core.credentials`) or hashes (API tokens).
Schema changes go through Tortoise's built-in migrations in ``core/db/migrations``.

Each foreign key ``x`` also has its column ``x_id`` (Tortoise adds it at runtime): the models
declare it as a bare annotation so that type checkers know it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model

from ..plugin_host.providers import AuthKind, FolderRole, Security

#: The largest key of an ``IntField`` primary key (PostgreSQL ``integer``): every table but
#: the mail ones. A client's id beyond it cannot exist, and PostgreSQL refuses to compare it.
INT_KEY_MAX = 2**31 - 1
#: The largest key of a ``BigIntField`` primary key (PostgreSQL ``bigint``): messages,
#: their addresses, attachments and links.
BIGINT_KEY_MAX = 2**63 - 1


class Profile(StrEnum):
    ADMIN = "ADMIN"
    STANDARD = "STANDARD"


class DomainKind(StrEnum):
    COMPANY = "COMPANY"  # the organisation's own mail domains: never shared
    EXCLUDED = "EXCLUDED"  # customer or other domains whose mail is never shared


class RecordKind(StrEnum):
    LEAD = "LEAD"
    CONTACT = "CONTACT"


class SharingPermission(StrEnum):
    PRIVATE = "PRIVATE"
    CUSTOM = "CUSTOM"
    PUBLIC = "PUBLIC"


class SyncState(StrEnum):
    NEW = "NEW"  # connected, first sync not started
    SYNCING = "SYNCING"  # initial sync running
    COMPLETE = "COMPLETE"  # initial sync done; following changes
    NEEDS_REAUTH = "NEEDS_REAUTH"  # the server refused the stored credentials
    ERROR = "ERROR"  # retrying with backoff after another failure


class Direction(StrEnum):
    RECEIVED = "RECEIVED"
    SENT = "SENT"


class AddressRole(StrEnum):
    FROM = "FROM"  # every author (RFC 5322 allows several)
    TO = "TO"
    CC = "CC"
    BCC = "BCC"
    SENDER = "SENDER"  # the Sender header: who transmitted it; never a counterparty
    REPLY_TO = "REPLY_TO"  # the Reply-To header: where replies go; never a counterparty


#: the roles that say who transmitted a message or where replies go, not whom it concerns:
#: their addresses are kept and shown, never counterparties (docs/records-and-links.md)
NON_COUNTERPARTY_ROLES = frozenset({AddressRole.SENDER, AddressRole.REPLY_TO})


class DateSource(StrEnum):
    """Where a stored message's date comes from."""

    HEADER = "HEADER"  # its Date header
    INTERNALDATE = "INTERNALDATE"  # no readable Date header: the server's arrival time
    NONE = "NONE"  # neither: the time it was stored


class Organisation(Model):
    """The deployment's organisation (one per deployment for now)."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=200)
    # provider keys an admin has turned off; all others may be connected
    disabled_providers: list[str] = fields.JSONField(default=list)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "organisation"


class OAuthClient(Model):
    """The organisation's OAuth client at one provider's authorisation server, set by an admin.

    Endpoint overrides are ``None`` when the provider's declaration applies (see
    :mod:`salesinbox.core.oauth.oauth_clients`).
    """

    id = fields.IntField(primary_key=True)
    organisation: fields.ForeignKeyRelation[Organisation] = fields.ForeignKeyField(
        "salesinbox.Organisation", related_name="oauth_clients", on_delete=fields.CASCADE
    )
    organisation_id: int
    provider = fields.CharField(max_length=64)
    client_id = fields.CharField(max_length=500)
    client_secret = fields.TextField()  # Fernet token, never the clear secret
    authorization_url = fields.CharField(max_length=2000, null=True)
    token_url = fields.CharField(max_length=2000, null=True)
    revocation_url = fields.CharField(max_length=2000, null=True)
    userinfo_url = fields.CharField(max_length=2000, null=True)
    tenant = fields.CharField(max_length=128, null=True)
    # where the browser goes after the consent (the frontend's page), None: a plain page
    frontend_redirect_url = fields.CharField(max_length=2000, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "oauth_client"
        unique_together = (("organisation", "provider"),)


class OrganisationDomain(Model):
    """A company domain or an excluded domain of the organisation."""

    id = fields.IntField(primary_key=True)
    organisation: fields.ForeignKeyRelation[Organisation] = fields.ForeignKeyField(
        "salesinbox.Organisation", related_name="domains", on_delete=fields.CASCADE
    )
    organisation_id: int
    kind = fields.CharEnumField(DomainKind, max_length=16)
    domain = fields.CharField(max_length=255)

    class Meta:
        table = "organisation_domain"
        unique_together = (("organisation", "kind", "domain"),)


class User(Model):
    """A CRM user. Authenticates to the API with bearer tokens."""

    id = fields.IntField(primary_key=True)
    organisation: fields.ForeignKeyRelation[Organisation] = fields.ForeignKeyField(
        "salesinbox.Organisation", related_name="users", on_delete=fields.CASCADE
    )
    organisation_id: int
    email = fields.CharField(max_length=320, unique=True)
    name = fields.CharField(max_length=200)
    profile = fields.CharEnumField(Profile, max_length=16, default=Profile.STANDARD)
    is_active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "app_user"


class ApiToken(Model):
    """A bearer token. Only its SHA-256 is stored: the token is shown once at creation."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "salesinbox.User", related_name="tokens", on_delete=fields.CASCADE
    )
    user_id: int
    name = fields.CharField(max_length=100)
    token_hash = fields.CharField(max_length=64, unique=True)
    # the first characters of the token, to tell tokens apart in listings
    prefix = fields.CharField(max_length=16)
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)
    expires_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_token"


class CrmRecord(Model):
    """A lead or a contact. Emails are stored normalised, empty means absent."""

    id = fields.IntField(primary_key=True)
    organisation: fields.ForeignKeyRelation[Organisation] = fields.ForeignKeyField(
        "salesinbox.Organisation", related_name="records", on_delete=fields.CASCADE
    )
    organisation_id: int
    kind = fields.CharEnumField(RecordKind, max_length=16)
    owner: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "salesinbox.User", related_name="records", on_delete=fields.RESTRICT
    )
    owner_id: int
    first_name = fields.CharField(max_length=200, default="")
    last_name = fields.CharField(max_length=200)
    company = fields.CharField(max_length=200, default="")
    primary_email = fields.CharField(max_length=320, null=True)
    secondary_email = fields.CharField(max_length=320, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "crm_record"
        indexes = (
            Index(fields=("primary_email",), name="crm_record_primary_email_idx"),
            Index(fields=("secondary_email",), name="crm_record_secondary_email_idx"),
            Index(fields=("organisation_id", "kind", "last_name"), name="crm_record_list_idx"),
        )


class ShareFlag(Model):
    """The "Share Email" checkbox: ``user`` shares their mail linked to ``record`` (CUSTOM)."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "salesinbox.User", related_name="share_flags", on_delete=fields.CASCADE
    )
    user_id: int
    record: fields.ForeignKeyRelation[CrmRecord] = fields.ForeignKeyField(
        "salesinbox.CrmRecord", related_name="share_flags", on_delete=fields.CASCADE
    )
    record_id: int
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "share_flag"
        unique_together = (("user", "record"),)


class MailAccount(Model):
    """A user's mailbox: server settings, encrypted credentials, sharing and sync state."""

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "salesinbox.User", related_name="accounts", on_delete=fields.CASCADE
    )
    user_id: int
    provider = fields.CharField(max_length=64)
    provider_options: dict[str, str] = fields.JSONField(default=dict)
    display_name = fields.CharField(max_length=200)
    email = fields.CharField(max_length=320)
    imap_host = fields.CharField(max_length=255)
    imap_port = fields.IntField()
    imap_security = fields.CharEnumField(Security, max_length=16)
    imap_username = fields.CharField(max_length=320)
    imap_auth_kind = fields.CharEnumField(AuthKind, max_length=16)
    imap_secret = fields.TextField()  # Fernet token, never the clear secret
    smtp_host = fields.CharField(max_length=255)
    smtp_port = fields.IntField()
    smtp_security = fields.CharEnumField(Security, max_length=16)
    smtp_username = fields.CharField(max_length=320)
    smtp_auth_kind = fields.CharEnumField(AuthKind, max_length=16)
    smtp_secret = fields.TextField()  # Fernet token, never the clear secret
    smtp_same_credentials = fields.BooleanField(default=True)
    sharing = fields.CharEnumField(
        SharingPermission, max_length=16, default=SharingPermission.PRIVATE
    )
    # the server's announced capabilities, as probed when connecting
    capabilities: list[str] = fields.JSONField(default=list)
    sync_state = fields.CharEnumField(SyncState, max_length=16, default=SyncState.NEW)
    sync_error: str | None = fields.TextField(null=True)
    sync_days_limit = fields.IntField(null=True)  # initial sync: only the last N days
    last_synced_at = fields.DatetimeField(null=True)
    initial_sync_completed_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "mail_account"
        unique_together = (("user", "email"),)


class OAuthGrant(Model):
    """An account's OAuth2 grant ("Sign in with Google/Microsoft"): the tokens that log it in.

    One per mail account. Tokens are Fernet tokens (:mod:`salesinbox.core.credentials`),
    never clear text. ``serial`` grows with every change of the tokens, so a holder that
    re-reads the row can tell that another one refreshed meanwhile (see
    :mod:`salesinbox.core.oauth.oauth_tokens`). ``invalid_at`` is set when the provider refused the
    refresh token (consent withdrawn, password changed): nothing is tried again until a new
    consent replaces the tokens.
    """

    id = fields.IntField(primary_key=True)
    account: fields.OneToOneRelation[MailAccount] = fields.OneToOneField(
        "salesinbox.MailAccount", related_name="oauth_grant", on_delete=fields.CASCADE
    )
    account_id: int
    provider = fields.CharField(max_length=64)
    refresh_token: str | None = fields.TextField(null=True)  # Fernet token; None: the provider gave none
    access_token = fields.TextField()  # Fernet token
    #: when the access token expires (None: the provider did not say)
    access_token_expires_at = fields.DatetimeField(null=True)
    #: when the access token was issued: with the expiry, its lifetime (for the refresh margin)
    access_token_issued_at = fields.DatetimeField()
    scopes = fields.TextField(default="")  # space-separated, as granted
    serial = fields.IntField(default=0)
    invalid_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "oauth_grant"


class OAuthSignInStatus(StrEnum):
    """Where a "Sign in with …" consent stands."""

    PENDING = "PENDING"  #: the browser has not come back to the callback yet
    CONNECTED = "CONNECTED"  #: the account is connected (or reconnected) and syncing
    FAILED = "FAILED"  #: see ``error_code`` and ``error_message``


class OAuthSignIn(Model):
    """One "Sign in with Google/Microsoft" consent a user started (core/oauth/oauth_sign_in.py).

    ``state`` is the random value the provider echoes to the callback: it binds the browser's
    return to this user, is used once (``used_at``) and expires at ``expires_at``. The PKCE
    verifier is a Fernet token. ``launch_ticket`` is the digest of the single-use link the
    user's browser opens (core/oauth/oauth_launch.py); opening it (``launched_at``) sends the
    browser on to ``authorization_url`` and binds it: ``browser_binding`` is the digest of
    the secret in that browser's cookie, which the callback requires. ``request`` holds what
    the user asked for besides the provider (sharing, display name, server overrides), never
    a secret. ``target_account`` is the account to reconnect, if any; ``account`` the one
    connected in the end.
    """

    id = fields.IntField(primary_key=True)
    user: fields.ForeignKeyRelation[User] = fields.ForeignKeyField(
        "salesinbox.User", related_name="oauth_sign_ins", on_delete=fields.CASCADE
    )
    user_id: int
    provider = fields.CharField(max_length=64)
    state = fields.CharField(max_length=128, unique=True)
    code_verifier = fields.TextField()  # Fernet token
    launch_ticket = fields.CharField(max_length=64, unique=True, null=True)  # SHA-256 hex
    authorization_url = fields.TextField(null=True)  # the provider's consent URL
    browser_binding = fields.CharField(max_length=64, null=True)  # SHA-256 hex of the cookie
    launched_at = fields.DatetimeField(null=True)
    request: dict[str, Any] = fields.JSONField(default=dict)
    target_account_id = fields.IntField(null=True)  # the account to reconnect
    account_id = fields.IntField(null=True)  # the account connected
    status = fields.CharEnumField(OAuthSignInStatus, max_length=16, default=OAuthSignInStatus.PENDING)
    error_code = fields.CharField(max_length=64, null=True)
    error_message: str | None = fields.TextField(null=True)
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "oauth_sign_in"


class FromAddress(Model):
    """An address the account may send as, exactly one per account is the default."""

    id = fields.IntField(primary_key=True)
    account: fields.ForeignKeyRelation[MailAccount] = fields.ForeignKeyField(
        "salesinbox.MailAccount", related_name="from_addresses", on_delete=fields.CASCADE
    )
    account_id: int
    address = fields.CharField(max_length=320)
    name = fields.CharField(max_length=200, default="")
    is_default = fields.BooleanField(default=False)

    class Meta:
        table = "from_address"
        unique_together = (("account", "address"),)


class AccountExcludedDomain(Model):
    """A domain whose mail in this account is never shared."""

    id = fields.IntField(primary_key=True)
    account: fields.ForeignKeyRelation[MailAccount] = fields.ForeignKeyField(
        "salesinbox.MailAccount", related_name="excluded_domains", on_delete=fields.CASCADE
    )
    account_id: int
    domain = fields.CharField(max_length=255)

    class Meta:
        table = "account_excluded_domain"
        unique_together = (("account", "domain"),)


class Folder(Model):
    """A synchronised mailbox folder and its IMAP sync state."""

    id = fields.IntField(primary_key=True)
    account: fields.ForeignKeyRelation[MailAccount] = fields.ForeignKeyField(
        "salesinbox.MailAccount", related_name="folders", on_delete=fields.CASCADE
    )
    account_id: int
    name = fields.CharField(max_length=500)
    role = fields.CharEnumField(FolderRole, max_length=16, null=True)
    uidvalidity = fields.BigIntField(null=True)
    uidnext = fields.BigIntField(null=True)
    highestmodseq = fields.BigIntField(null=True)
    # initial sync goes newest first: every UID at or above this one is stored
    lowest_synced_uid = fields.BigIntField(null=True)
    initial_sync_done = fields.BooleanField(default=False)
    messages_total = fields.IntField(default=0)
    messages_synced = fields.IntField(default=0)
    last_error: str | None = fields.TextField(null=True)
    retry_at = fields.DatetimeField(null=True)
    last_synced_at = fields.DatetimeField(null=True)

    class Meta:
        table = "folder"
        unique_together = (("account", "name"),)


class Message(Model):
    """One email in one folder of one account, identified by (folder, UIDVALIDITY, UID)."""

    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation[MailAccount] = fields.ForeignKeyField(
        "salesinbox.MailAccount", related_name="messages", on_delete=fields.CASCADE
    )
    account_id: int
    folder: fields.ForeignKeyRelation[Folder] = fields.ForeignKeyField(
        "salesinbox.Folder", related_name="messages", on_delete=fields.CASCADE
    )
    folder_id: int
    uidvalidity = fields.BigIntField()
    uid = fields.BigIntField()
    modseq = fields.BigIntField(null=True)
    message_id = fields.CharField(max_length=998, null=True)
    in_reply_to = fields.CharField(max_length=998, null=True)
    references = fields.TextField(default="")
    # its conversation in this account: equal for every message of one thread (see
    # core/db/thread_keys.py), rewritten when a late message joins two threads
    thread_key = fields.CharField(max_length=998, null=True)
    subject = fields.TextField(default="")
    from_name = fields.CharField(max_length=500, default="")
    from_address = fields.CharField(max_length=320, default="")
    date = fields.DatetimeField(null=True)
    # null: stored before the source was recorded (migration 0011)
    date_source = fields.CharEnumField(DateSource, max_length=16, null=True)
    direction = fields.CharEnumField(Direction, max_length=16)
    seen = fields.BooleanField(default=False)
    flagged = fields.BooleanField(default=False)
    answered = fields.BooleanField(default=False)
    snippet = fields.CharField(max_length=300, default="")
    size = fields.IntField(default=0)
    has_attachments = fields.BooleanField(default=False)
    # what the parser could not read; the message is stored anyway
    parse_warnings: list[str] = fields.JSONField(default=list)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "message"
        unique_together = (("account", "folder", "uidvalidity", "uid"),)
        indexes = (
            Index(fields=("account_id", "date"), name="message_account_date_idx"),
            Index(fields=("message_id",), name="message_message_id_idx"),
            Index(fields=("thread_key",), name="message_thread_key_idx"),
        )


class MessageBody(Model):
    """The bodies of a message, apart so that list queries never read them."""

    message: fields.OneToOneRelation[Message] = fields.OneToOneField(
        "salesinbox.Message", related_name="body", on_delete=fields.CASCADE, primary_key=True
    )
    message_id: int
    text = fields.TextField(default="")
    html = fields.TextField(default="")
    headers = fields.TextField(default="")  # the header block as received, at most 64 KiB

    class Meta:
        table = "message_body"


class MessageAddress(Model):
    """One address of a message's From/To/Cc/Bcc/Sender, normalised, with its domain."""

    id = fields.BigIntField(primary_key=True)
    message: fields.ForeignKeyRelation[Message] = fields.ForeignKeyField(
        "salesinbox.Message", related_name="addresses", on_delete=fields.CASCADE
    )
    message_id: int
    role = fields.CharEnumField(AddressRole, max_length=8)
    name = fields.CharField(max_length=500, default="")
    address = fields.CharField(max_length=320)
    domain = fields.CharField(max_length=255)
    # From/To/Cc/Bcc and not one of the account owner's own addresses (account email + From
    # addresses); a Sender never is
    is_counterparty = fields.BooleanField(default=True)

    class Meta:
        table = "message_address"
        indexes = (
            Index(fields=("message_id", "role"), name="message_address_message_idx"),
            Index(fields=("address",), name="message_address_address_idx"),
            Index(fields=("domain",), name="message_address_domain_idx"),
        )


class Attachment(Model):
    """Metadata of one attachment (the content stays on the mail server)."""

    id = fields.BigIntField(primary_key=True)
    message: fields.ForeignKeyRelation[Message] = fields.ForeignKeyField(
        "salesinbox.Message", related_name="attachments", on_delete=fields.CASCADE
    )
    message_id: int
    filename = fields.CharField(max_length=500, default="")
    content_type = fields.CharField(max_length=200)
    size = fields.IntField(default=0)
    content_id = fields.CharField(max_length=500, null=True)
    is_inline = fields.BooleanField(default=False)

    class Meta:
        table = "attachment"


class ThreadNode(Model):
    """A Message-ID that some stored message of the account names (its own, In-Reply-To or
    References; or, for a message with none, its subject key), and the thread it is in.

    Rows outlive the messages that named them (threads never split), and let a late message
    find every thread it connects: the threads of its ancestors and of stored replies to it.
    """

    id = fields.BigIntField(primary_key=True)
    account: fields.ForeignKeyRelation[MailAccount] = fields.ForeignKeyField(
        "salesinbox.MailAccount", related_name="thread_nodes", on_delete=fields.CASCADE
    )
    account_id: int
    node = fields.CharField(max_length=40)  # sha1 of the id: any id length fits the index
    thread_key = fields.CharField(max_length=998)

    class Meta:
        table = "thread_node"
        unique_together = (("account", "node"),)
        indexes = (Index(fields=("account_id", "thread_key"), name="thread_node_key_idx"),)


class MessageLink(Model):
    """A message concerns a lead/contact: one of its counterparties is the record's email."""

    id = fields.BigIntField(primary_key=True)
    message: fields.ForeignKeyRelation[Message] = fields.ForeignKeyField(
        "salesinbox.Message", related_name="links", on_delete=fields.CASCADE
    )
    message_id: int
    record: fields.ForeignKeyRelation[CrmRecord] = fields.ForeignKeyField(
        "salesinbox.CrmRecord", related_name="links", on_delete=fields.CASCADE
    )
    record_id: int
    # A copy of the message's date (which never changes once stored), so that a record's
    # Emails related list is read newest first straight from the index, however busy it is.
    date = fields.DatetimeField(null=True)

    class Meta:
        table = "message_link"
        unique_together = (("message", "record"),)
        indexes = (
            Index(fields=("record_id", "date", "message_id"), name="message_link_record_date_idx"),
        )
