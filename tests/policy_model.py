"""The reference model of links and of who may see a message, in plain Python.

Written to be read next to docs/sharing.md#the-rule, by someone who does not program much: one
small function per sentence of the rule, no databases, no shortcuts. The tests compare the
real, SQL-based policy (``salesinbox.core.sharing.visibility``) with this model on many generated
organisations.

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
