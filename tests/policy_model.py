"""The reference model of links and of who may see a message, in plain Python.

Written to be read next to docs/sharing.md#the-rule, by someone who does not program much: one
small function per sentence of the rule, no databases, no shortcuts. The tests compare the
real, SQL-based policy (``salesinbox.core.sharing.visibility``) with this model on many generated
organisations.

The second half says what ``explainVisibility`` tells whom (docs/sharing.md#explaining-visibility):
the reason, for those who may know it, and otherwise the answer an unknown id gets.

Addresses and domains here are already normalised (lower case), as they are in the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Organisation:
    company_domains: set[str] = field(default_factory=set)  # the organisation's own domains
    excluded_domains: set[str] = field(default_factory=set)  # customers' and others, never shared


@dataclass
class User:
    id: int
    organisation: str = "main"  # which organisation the user belongs to
    admin: bool = False  # an admin of that organisation


@dataclass
class Account:
    id: int
    owner: int  # the id of the user it belongs to
    sharing: str  # "PRIVATE", "CUSTOM" or "PUBLIC"
    excluded_domains: set[str] = field(default_factory=set)  # this account's own list


@dataclass
class Record:
    """A lead or a contact."""

    id: int
    kind: str  # "LEAD" or "CONTACT"
    primary_email: str | None = None
    secondary_email: str | None = None


@dataclass
class Message:
    id: int
    account: int  # the id of the account it is in
    # the addresses in From/To/Cc/Bcc that are not the account owner's own addresses
    counterparties: list[str] = field(default_factory=list)


@dataclass
class World:
    organisation: Organisation
    users: list[User]
    accounts: list[Account]
    records: list[Record]
    share_flags: set[tuple[int, int]]  # (user id, record id): that user ticked "Share Email"
    messages: list[Message]


def domain_of(address: str) -> str:
    return address.split("@")[-1]


def is_in_domain(domain: str, listed: str) -> bool:
    """A domain is "in" a listed domain when it is that domain or a subdomain of it.

    "mail.acme.com" is in "acme.com"; "notacme.com" is not.
    """
    return domain == listed or domain.endswith("." + listed)


def records_linked_to(world: World, message: Message) -> list[Record]:
    """A message is linked to every record whose primary or secondary email is one of the
    message's counterparties (docs/records-and-links.md#links)."""
    linked = []
    for record in world.records:
        for address in message.counterparties:
            if address in (record.primary_email, record.secondary_email):
                linked.append(record)
                break
    return linked


def account_of(world: World, message: Message) -> Account:
    for account in world.accounts:
        if account.id == message.account:
            return account
    raise LookupError(message.account)


def user(world: World, user_id: int) -> User:
    for candidate in world.users:
        if candidate.id == user_id:
            return candidate
    raise LookupError(user_id)


def has_counterparty_in_listed_domain(world: World, message: Message, account: Account) -> bool:
    """Some counterparty's domain is in a company domain, an excluded domain of the
    organisation, or an excluded domain of the account."""
    listed = (
        world.organisation.company_domains
        | world.organisation.excluded_domains
        | account.excluded_domains
    )
    for address in message.counterparties:
        for listed_domain in listed:
            if is_in_domain(domain_of(address), listed_domain):
                return True
    return False


def may_see(world: World, viewer_id: int, message: Message) -> bool:
    """docs/sharing.md#the-rule, sentence by sentence."""
    account = account_of(world, message)
    owner = account.owner

    # 1. The owner of the account sees all of its mail.
    if viewer_id == owner:
        return True

    # Nobody sees the mail of another organisation (one organisation per deployment for now).
    if user(world, viewer_id).organisation != user(world, owner).organisation:
        return False

    # 2. Otherwise, all of the following must hold.
    linked = records_linked_to(world, message)
    if len(linked) == 0:  # linked to at least one lead or contact
        return False
    if has_counterparty_in_listed_domain(world, message, account):
        return False
    if account.sharing == "PUBLIC":
        return True
    if account.sharing == "CUSTOM":
        # the owner ticked "Share Email" on at least one of the linked records
        for record in linked:
            if (owner, record.id) in world.share_flags:
                return True
        return False
    # PRIVATE: nobody else.
    return False


def visible_messages(world: World, viewer_id: int) -> set[int]:
    """The ids of every message the viewer may see."""
    return {m.id for m in world.messages if may_see(world, viewer_id, m)}


# --- What explainVisibility tells whom -------------------------------------------------------


def first_listed_domain(world: World, message: Message, account: Account) -> tuple[str, str] | None:
    """The listed domain a counterparty is in, as (kind of list, domain): company domains
    first, then the organisation's excluded domains, then the account's, each alphabetically."""
    lists = [
        ("hidden_company_domain", world.organisation.company_domains),
        ("hidden_org_excluded_domain", world.organisation.excluded_domains),
        ("hidden_account_excluded_domain", account.excluded_domains),
    ]
    for kind, domains in lists:
        for listed_domain in sorted(domains):
            for address in message.counterparties:
                if is_in_domain(domain_of(address), listed_domain):
                    return kind, listed_domain
    return None


def reason(world: World, viewer_id: int, message: Message) -> str:
    """Why the viewer may or may not see the message, as the code explainVisibility gives: the
    same steps as may_see, the first reason that hides the message winning."""
    account = account_of(world, message)
    owner = account.owner
    if viewer_id == owner:
        return "owner"
    if user(world, viewer_id).organisation != user(world, owner).organisation:
        return "hidden_other_organisation"  # never told: see explanation_told
    if account.sharing == "PRIVATE":
        return "hidden_private"
    linked = records_linked_to(world, message)
    if len(linked) == 0:
        return "hidden_unlinked"
    listed = first_listed_domain(world, message, account)
    if listed is not None:
        return listed[0]
    if account.sharing == "PUBLIC":
        return "shared_public"
    for record in linked:
        if (owner, record.id) in world.share_flags:
            return "shared_custom"
    return "hidden_not_shared"


def may_know_why(world: World, asker_id: int, message: Message) -> bool:
    """The owner of the message's account, and the admins of the owner's organisation."""
    owner = account_of(world, message).owner
    asker = user(world, asker_id)
    if asker_id == owner:
        return True
    return asker.admin and asker.organisation == user(world, owner).organisation


def explanation_told(world: World, asker_id: int, message: Message, viewer_id: int) -> str:
    """What explainVisibility answers ``asker`` about ``viewer`` and the message: a reason
    code, "not_found" (the answer for an id that does not exist), "forbidden" (a user who is
    not an admin asked about someone else and a message that is not theirs) or "no_such_user"
    (the owner or an admin named a user of another organisation)."""
    if viewer_id == asker_id:
        if may_see(world, asker_id, message) or may_know_why(world, asker_id, message):
            return reason(world, asker_id, message)
        return "not_found"
    if not may_know_why(world, asker_id, message):
        return "not_found" if user(world, asker_id).admin else "forbidden"
    if user(world, viewer_id).organisation != user(world, asker_id).organisation:
        return "no_such_user"  # users of other organisations cannot be named
    return reason(world, viewer_id, message)
