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
it. The rule is enforced in SQL, never by filtering fetched rows in Python.
:mod:`.explanations` says why, to those who may know, and agrees with the query.

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

from tortoise.expressions import Q, Subquery
from tortoise.queryset import QuerySet

from ..db.models import (
    DomainKind,
    MailAccount,
    Message,
    SharingPermission,
    User,
)
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
