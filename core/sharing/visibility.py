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
accounts of V's organisation, PUBLIC accounts) are uncorrelated sub-queries, run once per query.
The checks on *this* message's links, addresses and owner's share flags are sub-queries
correlated with the outer ``"message"`` row; Tortoise 1.1 has no ``Exists``/``OuterRef``, so
every condition is a fixed SQL fragment (:class:`~..db.sql_fragment.SqlFragment`) whose only
values, the viewer's and organisation's ids, are bound parameters. The rule is written once,
as a tree of those fragments, and rendered both as a ``Q`` (:func:`visible_to`) and as SQL
text (:func:`visible_sql`) that the list views put in statements they run without the ORM
(:mod:`.page_rows`). The correlated checks read ``"message"."id" IN (correlated sub-query)``,
which SQLite and PostgreSQL both run per candidate row through the indexes ``message_link(message_id, …)``,
``share_flag(user_id, record_id)`` and ``message_address(message_id, …)``: cheap when the
candidates come from a record's links or from one account. Correlation matters on
PostgreSQL: the checks sit under ``OR`` (owner or shared), where an uncorrelated ``IN`` would
be computed over the whole table once per query. Cost is per candidate message, so a related
list costs in proportion to the record's links (see bench/bench_policy.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, reduce
from operator import and_, or_
from typing import Any

from tortoise.expressions import Q
from tortoise.queryset import QuerySet

from ..db.models import (
    DomainKind,
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
_SHAREABLE = f"('{SharingPermission.PUBLIC}', '{SharingPermission.CUSTOM}')"


# --- The rule, written once ----------------------------------------------------------------
# A tree of conditions on the outer "message" row. Each leaf is `"message".<column> IN
# (sub-query)`, the sub-query's ``{}`` being bound parameters named by ``params`` ("viewer":
# the viewer's user id, "organisation": the viewer's organisation id). The tree is rendered
# two ways: a Tortoise ``Q`` (:func:`visible_to`, composed with any ORM query) and SQL text
# (:func:`visible_sql`, for the list views' hand-assembled page statements). Both come from
# the same leaves, so the ORM and the SQL paths cannot disagree about who sees what.

@dataclass(frozen=True)
class _In:
    column: str  # of the outer "message" row: "id" or "account_id"
    subquery: str  # parenthesised; one {} per name in params
    params: tuple[str, ...] = ()


@dataclass(frozen=True)
class _All:
    parts: tuple[_Node, ...]


@dataclass(frozen=True)
class _Any:
    parts: tuple[_Node, ...]


@dataclass(frozen=True)
class _Not:
    part: _In


_Node = _In | _All | _Any | _Not

#: The mail accounts of one user (a parameter): the ``sharedBy`` filter of a record's lists.
ACCOUNTS_OF_USER = "(SELECT acc_u.id FROM mail_account acc_u WHERE acc_u.user_id = {})"

# V's own accounts.
_OWN = _In("account_id", "(SELECT pol_o.id FROM mail_account pol_o WHERE pol_o.user_id = {})", ("viewer",))
# PRIVATE accounts never share; owners outside V's organisation never share with V.
_SHAREABLE_ACCOUNT = _In("account_id", f"""
    (SELECT pol_sa.id FROM mail_account pol_sa JOIN app_user pol_u ON pol_u.id = pol_sa.user_id
     WHERE pol_u.organisation_id = {{}} AND pol_sa.sharing IN {_SHAREABLE})""", ("organisation",))
_PUBLIC_ACCOUNT = _In("account_id", f"""
    (SELECT pol_p.id FROM mail_account pol_p WHERE pol_p.sharing = '{SharingPermission.PUBLIC}')""")
# M is linked to at least one lead/contact.
_HAS_LINK = _In("id", """
    (SELECT pol_l.message_id FROM message_link pol_l WHERE pol_l.message_id = "message"."id")""")
# The account's owner ticked Share Email on at least one record M is linked to.
_OWNER_SHARED = _In("id", """
    (SELECT pol_l.message_id FROM message_link pol_l
     JOIN share_flag pol_s ON pol_s.record_id = pol_l.record_id
     JOIN mail_account pol_m ON pol_m.user_id = pol_s.user_id
     WHERE pol_l.message_id = "message"."id" AND pol_m.id = "message"."account_id")""")
# Some counterparty of M is in a company or excluded domain of the organisation (the viewer's:
# shared mail only ever comes from it) or in one of the account's excluded domains. The
# organisation is a parameter so each address costs one index range, not a join.
_HIDDEN_COUNTERPARTY = _In("id", f"""
    (SELECT pol_a.message_id FROM message_address pol_a
     WHERE pol_a.message_id = "message"."id" AND pol_a.is_counterparty
       AND (EXISTS (SELECT 1 FROM organisation_domain pol_d
                    WHERE pol_d.organisation_id = {{}} AND pol_d.kind IN {_KINDS}
                      AND {_WITHIN.format(d="pol_a.domain", l="pol_d.domain")})
            OR EXISTS (SELECT 1 FROM account_excluded_domain pol_x
                       WHERE pol_x.account_id = "message"."account_id"
                         AND {_WITHIN.format(d="pol_a.domain", l="pol_x.domain")})))""", ("organisation",))


@cache
def _rule(known_linked: bool) -> _Node:
    """V may see M: V owns it, or it is shared (rule 2 of the module docstring).

    Cheapest tests first, as the databases evaluate AND/OR operands in the order written:
    account sets (hashed once per query), then index-only probes of links and share flags,
    last the counterparty addresses (a read of message_address per message).
    ``known_linked``: the caller's query only holds linked messages (a record's list).
    """
    shared: list[_Node] = [_SHAREABLE_ACCOUNT]
    if not known_linked:
        shared.append(_HAS_LINK)
    shared += [_Any((_PUBLIC_ACCOUNT, _OWNER_SHARED)), _Not(_HIDDEN_COUNTERPARTY)]
    return _Any((_OWN, _All(tuple(shared))))


def _values(viewer: User) -> dict[str, int]:
    return {"viewer": viewer.id, "organisation": viewer.organisation_id}


def _as_q(node: _Node, values: dict[str, int]) -> Q:
    if isinstance(node, _In):
        fragment = SqlFragment(node.subquery, *(values[name] for name in node.params))
        lookup: dict[str, Any] = {f"{node.column}__in": fragment}  # Any: Q's keywords include join_type
        return Q(**lookup)
    if isinstance(node, _Not):
        return ~_as_q(node.part, values)
    parts = [_as_q(part, values) for part in node.parts]
    return reduce(and_ if isinstance(node, _All) else or_, parts)


def _as_sql(node: _Node) -> tuple[str, tuple[str, ...]]:
    if isinstance(node, _In):
        return f'"message"."{node.column}" IN {" ".join(node.subquery.split())}', node.params
    if isinstance(node, _Not):
        text, params = _as_sql(node.part)
        return f"NOT ({text})", params
    rendered = [_as_sql(part) for part in node.parts]
    joiner = " AND " if isinstance(node, _All) else " OR "
    return (
        "(" + joiner.join(text for text, _ in rendered) + ")",
        tuple(name for _, params in rendered for name in params),
    )


@cache
def _rendered(known_linked: bool) -> tuple[str, tuple[str, ...]]:
    return _as_sql(_rule(known_linked))


def visible_sql(*, known_linked: bool = False) -> str:
    """The condition "the viewer may see this message" as SQL text over a table named
    ``"message"`` (the outer query must not alias it), with ``{}`` for each bound value
    (:func:`visible_sql_values` gives them, in order). Built once per ``known_linked`` and
    reused, so callers can assemble it into statements they keep (see ``page_rows``).

    ``known_linked``: every message the outer query can return is linked to a record (it
    joins a record's links), so the "has a link" test is left out. The same rule as
    :func:`visible_to`, rendered from the same definition.
    """
    return _rendered(known_linked)[0]


def visible_sql_values(viewer: User, *, known_linked: bool = False) -> list[int]:
    """The values of :func:`visible_sql`'s placeholders for ``viewer``, in order."""
    values = _values(viewer)
    return [values[name] for name in _rendered(known_linked)[1]]


def _visible(viewer: User, *, known_linked: bool) -> Q:
    return _as_q(_rule(known_linked), _values(viewer))


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
        query = query.filter(account_id__in=SqlFragment(ACCOUNTS_OF_USER, shared_by_user_id))
    return query


async def can_see(viewer: User, message_id: int) -> bool:
    """Whether ``viewer`` may see the message (one query, the same filter)."""
    return await Message.filter(visible_to(viewer), id=message_id).exists()
