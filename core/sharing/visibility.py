"""The sharing policy (docs/sharing.md#the-rule): the one place that decides who may see a message.

A viewer V may see message M of account A (owned by user U) exactly when:

1. V is U; or
2. all of: U is in V's organisation; A is PUBLIC or CUSTOM; M is linked to at least one
   lead/contact; no counterparty address of M has a domain equal to, or a subdomain of, a
   domain listed as the organisation's company domains, its excluded domains or A's own
   excluded domains; and A is PUBLIC, or A is CUSTOM and U has ticked Share Email on a record
   M is linked to.

No profile bypasses it: an ADMIN is an ordinary viewer here.

How to use it. :func:`visible_to` returns a Tortoise ``Q`` over ``Message`` that callers compose
with their own filters, ordering and pagination. It is a pure ``WHERE`` condition on the
``"message"`` table (it adds no join to the caller's query, so counts and pages stay right)::

    page = await Message.filter(visible_to(viewer), folder_id=f).order_by("-date", "-id").limit(50)

:func:`visible_messages`, :func:`visible_messages_for_record` and :func:`can_see` are built on
it. The rule is enforced in SQL, never by filtering fetched rows in Python. :func:`explain`
says why, in words that reveal nothing of hidden mail, and agrees with the query.

How the SQL is built. The viewer-dependent account sets (V's own accounts, the PUBLIC/CUSTOM
accounts of V's organisation, PUBLIC accounts) are Tortoise sub-queries, run once per query.
The checks on *this* message's links, addresses and owner's share flags are sub-queries
correlated with the outer ``"message"`` row; Tortoise 1.1 has no ``Exists``/``OuterRef``, so
they are fixed SQL fragments (:class:`~..db.sql_fragment.SqlFragment`) whose only value, the
organisation id, is a bound parameter. They read ``"message"."id" IN (correlated sub-query)``, which SQLite and
PostgreSQL both run per candidate row through the indexes ``message_link(message_id, …)``,
``share_flag(user_id, record_id)`` and ``message_address(message_id, …)``: cheap when the
candidates come from a record's links or from one account. Correlation matters on
PostgreSQL: the checks sit under ``OR`` (owner or shared), where an uncorrelated ``IN`` would
be computed over the whole table once per query. Cost is per candidate message, so a related
list costs in proportion to the record's links (see bench/bench_policy.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tortoise.expressions import Q, Subquery
from tortoise.queryset import QuerySet

from ..db.models import (
    AccountExcludedDomain,
    DomainKind,
    MailAccount,
    Message,
    MessageAddress,
    MessageLink,
    OrganisationDomain,
    RecordKind,
    ShareFlag,
    SharingPermission,
    User,
)
from ..db.orm_values import column_values
from ..db.sql_fragment import SqlFragment

# "domain d is the listed domain l or a subdomain of it": d = l, or d ends with "." || l.
# substr/length rather than LIKE, whose "_" and "%" wildcards would let a listed domain match
# more than itself. When l is longer than d the substr is shorter than "." || l: no match.
_WITHIN = "({d} = {l} OR substr({d}, length({d}) - length({l})) = '.' || {l})"
_KINDS = f"('{DomainKind.COMPANY}', '{DomainKind.EXCLUDED}')"


def _has_link() -> Q:
    """M is linked to at least one lead/contact."""
    return Q(id__in=SqlFragment("""
        (SELECT pol_l.message_id FROM message_link pol_l WHERE pol_l.message_id = "message"."id")
    """))


def _hidden_counterparty(organisation_id: int) -> Q:
    """Some counterparty of M is in a company or excluded domain of the organisation (the
    viewer's: shared mail only ever comes from it) or in one of the account's excluded domains.
    The organisation is a parameter so each address costs one index range, not a join."""
    return Q(id__in=SqlFragment(f"""
        (SELECT pol_a.message_id FROM message_address pol_a
         WHERE pol_a.message_id = "message"."id" AND pol_a.is_counterparty
           AND (EXISTS (SELECT 1 FROM organisation_domain pol_d
                        WHERE pol_d.organisation_id = {{}} AND pol_d.kind IN {_KINDS}
                          AND {_WITHIN.format(d="pol_a.domain", l="pol_d.domain")})
                OR EXISTS (SELECT 1 FROM account_excluded_domain pol_x
                           WHERE pol_x.account_id = "message"."account_id"
                             AND {_WITHIN.format(d="pol_a.domain", l="pol_x.domain")})))
    """, organisation_id))


def _owner_shared() -> Q:
    """The account's owner ticked Share Email on at least one record M is linked to."""
    return Q(id__in=SqlFragment("""
        (SELECT pol_l.message_id FROM message_link pol_l
         JOIN share_flag pol_s ON pol_s.record_id = pol_l.record_id
         JOIN mail_account pol_m ON pol_m.user_id = pol_s.user_id
         WHERE pol_l.message_id = "message"."id" AND pol_m.id = "message"."account_id")
    """))


def _visible(viewer: User, *, known_linked: bool) -> Q:
    own_accounts = MailAccount.filter(user_id=viewer.id).values("id")
    # PRIVATE accounts never share; owners outside V's organisation never share with V.
    shareable = MailAccount.filter(
        user__organisation_id=viewer.organisation_id,
        sharing__in=[SharingPermission.PUBLIC, SharingPermission.CUSTOM],
    ).values("id")
    public = MailAccount.filter(sharing=SharingPermission.PUBLIC).values("id")
    # Cheapest tests first, as the databases evaluate AND/OR operands in the order written:
    # account sets (hashed once per query), then index-only probes of links and share flags,
    # last the counterparty addresses (a read of message_address per message).
    shared = Q(account_id__in=Subquery(shareable))
    if not known_linked:
        shared &= _has_link()
    shared &= Q(account_id__in=Subquery(public)) | _owner_shared()
    shared &= ~_hidden_counterparty(viewer.organisation_id)
    return Q(account_id__in=Subquery(own_accounts)) | shared


def visible_to(viewer: User) -> Q:
    """The condition "``viewer`` may see this message", as a ``Q`` over :class:`Message`.

    Compose it with any other filter, ordering and pagination on a ``Message`` query (it is
    meaningless on other models). Evaluated by the database at query time, so a change of
    permission, share flag, excluded domain or link applies to the next query.
    """
    return _visible(viewer, known_linked=False)


def visible_messages(viewer: User) -> QuerySet[Message]:
    """Every message ``viewer`` may see (unordered; add filters, ordering, limits)."""
    return Message.filter(visible_to(viewer))


def visible_messages_for_record(
    viewer: User, record_id: int, shared_by_user_id: int | None = None
) -> QuerySet[Message]:
    """The Emails related list: messages linked to the record that ``viewer`` may see.

    With ``shared_by_user_id``, only those in that user's accounts. The query joins the
    record's links, so ordering by ``-links__date`` (the link's copy of the message date) reads
    the newest mail straight from the index ``message_link(record_id, date, message_id)`` and
    checks the policy only until a page is full, however busy the record is. Being linked to
    the record, the messages need no "has a link" check.
    """
    query = Message.filter(links__record_id=record_id).filter(_visible(viewer, known_linked=True))
    if shared_by_user_id is not None:
        accounts = MailAccount.filter(user_id=shared_by_user_id).values("id")
        query = query.filter(account_id__in=Subquery(accounts))
    return query


async def can_see(viewer: User, message_id: int) -> bool:
    """Whether ``viewer`` may see the message (one query, the same filter)."""
    return await Message.filter(visible_to(viewer), id=message_id).exists()


@dataclass(frozen=True)
class Explanation:
    """Why a viewer may or may not see a message, in words that reveal none of its content.

    ``code`` is stable for programs (see the ``CODE_*`` constants); ``reason`` is for people.
    """

    visible: bool
    reason: str
    code: str


CODE_OWNER = "owner"
CODE_SHARED_PUBLIC = "shared_public"
CODE_SHARED_CUSTOM = "shared_custom"
CODE_NOT_FOUND = "not_found"
CODE_OTHER_ORGANISATION = "hidden_other_organisation"
CODE_PRIVATE = "hidden_private"
CODE_UNLINKED = "hidden_unlinked"
CODE_COMPANY_DOMAIN = "hidden_company_domain"
CODE_ORG_EXCLUDED_DOMAIN = "hidden_org_excluded_domain"
CODE_ACCOUNT_EXCLUDED_DOMAIN = "hidden_account_excluded_domain"
CODE_NOT_SHARED = "hidden_not_shared"


def domain_within(domain: str, listed: str) -> bool:
    """``domain`` is ``listed`` or a subdomain of it (the Python twin of :data:`_WITHIN`)."""
    return domain == listed or domain.endswith("." + listed)


async def explain(viewer: User, message: Message | int) -> Explanation:
    """Say whether ``viewer`` may see ``message`` and why, agreeing with :func:`visible_to`.

    For diagnostics and support ("why can't I see this mail?"); gate access with
    :func:`visible_to` / :func:`can_see`. The reasons are tested against the query on
    generated organisations. The words name the account's permission, the offending listed
    domain, or linked records (only when the message is visible) — never a subject,
    an address or the owner of hidden mail. When several reasons hide a message, the first in
    this order is given: PRIVATE, no linked record, listed domain, Share Email not set.
    """
    message_id = message if isinstance(message, int) else message.id
    rows = await Message.filter(id=message_id).values(
        "account_id", "account__sharing", "account__user_id", "account__user__organisation_id"
    )
    if not rows:
        return Explanation(False, "hidden: no such message", CODE_NOT_FOUND)
    row = rows[0]
    account_id, owner_id = row["account_id"], row["account__user_id"]
    sharing = SharingPermission(row["account__sharing"])
    if owner_id == viewer.id:
        return Explanation(True, "owner", CODE_OWNER)
    if row["account__user__organisation_id"] != viewer.organisation_id:
        return Explanation(
            False, "hidden: the account belongs to another organisation", CODE_OTHER_ORGANISATION
        )
    if sharing == SharingPermission.PRIVATE:
        return Explanation(False, "hidden: PRIVATE account", CODE_PRIVATE)
    links = await (
        MessageLink.filter(message_id=message_id)
        .order_by("record_id")
        .values("record_id", "record__kind", "record__first_name", "record__last_name")
    )
    if not links:
        return Explanation(False, "hidden: not linked to any lead or contact", CODE_UNLINKED)
    offending = await _offending_domain(
        message_id, account_id, row["account__user__organisation_id"]
    )
    if offending is not None:
        code, label, listed = offending
        return Explanation(False, f"hidden: counterparty in {label} {listed}", code)
    if sharing == SharingPermission.PUBLIC:
        more = f" and {len(links) - 1} more" if len(links) > 1 else ""
        return Explanation(
            True, f"shared: PUBLIC account, linked to {_record_label(links[0])}{more}",
            CODE_SHARED_PUBLIC,
        )
    flagged = set(
        await ShareFlag.filter(
            user_id=owner_id, record_id__in=[link["record_id"] for link in links]
        ).values_list("record_id", flat=True)
    )
    shared = [link for link in links if link["record_id"] in flagged]
    if not shared:
        return Explanation(
            False, "hidden: CUSTOM account and Share Email not set on any linked record",
            CODE_NOT_SHARED,
        )
    return Explanation(
        True, f"shared: CUSTOM account, Share Email set on {_record_label(shared[0])}",
        CODE_SHARED_CUSTOM,
    )


def _record_label(link: dict[str, Any]) -> str:
    kind = "lead" if link["record__kind"] == RecordKind.LEAD else "contact"
    name = " ".join(p for p in (link["record__first_name"], link["record__last_name"]) if p)
    return f"{kind} {name}".strip()


async def _offending_domain(
    message_id: int, account_id: int, organisation_id: int
) -> tuple[str, str, str] | None:
    """The first listed domain (company, then org-excluded, then account-excluded, each
    alphabetically) that a counterparty of the message is within, as (code, label, domain)."""
    domains = set(
        await column_values(MessageAddress.filter(message_id=message_id, is_counterparty=True), "domain")
    )
    if not domains:
        return None
    org_listed = await OrganisationDomain.filter(organisation_id=organisation_id).values_list(
        "kind", "domain"
    )
    account_listed = await column_values(AccountExcludedDomain.filter(account_id=account_id), "domain")
    candidates = [
        *((CODE_COMPANY_DOMAIN, "company domain", d) for k, d in sorted(org_listed)
          if k == DomainKind.COMPANY),
        *((CODE_ORG_EXCLUDED_DOMAIN, "organisation-excluded domain", d)
          for k, d in sorted(org_listed) if k == DomainKind.EXCLUDED),
        *((CODE_ACCOUNT_EXCLUDED_DOMAIN, "account-excluded domain", d)
          for d in sorted(account_listed)),
    ]
    for candidate in candidates:
        if any(domain_within(domain, candidate[2]) for domain in domains):
            return candidate
    return None
