"""Why a viewer may or may not see a message (docs/sharing.md#explaining-visibility), said
only to those who may know it.

Who learns what:

- anyone asking about themselves and a message they may see gets the reason they see it;
- the message's owner (the account's user) and the admins of the owner's organisation get
  the full explanation, hidden reasons and listed domain included, for themselves or for any
  user of the organisation they name;
- anyone else gets :data:`NOT_FOUND`, exactly the answer an id that does not exist gets
  (ids are sequential: any other answer would let a user walk them and learn of colleagues'
  hidden mail and its excluded customer domains). The decision is one query whose ``WHERE``
  holds the policy, so a hidden message and a missing one take the same path.

The reasons agree with :func:`~.visibility.visible_to`; tests/test_policy.py checks both, and
who is told, against tests/policy_model.py on generated organisations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tortoise.expressions import Q, Subquery

from ..db.models import (
    AccountExcludedDomain,
    DomainKind,
    MailAccount,
    Message,
    MessageAddress,
    MessageLink,
    OrganisationDomain,
    Profile,
    RecordKind,
    ShareFlag,
    SharingPermission,
    User,
)
from ..db.orm_values import column_values
from ..errors import ErrorCode, SalesInboxError, not_found
from .visibility import visible_to


@dataclass(frozen=True)
class Explanation:
    """Whether a viewer may see a message and why, in words that reveal none of its content.

    ``code`` is stable for programs (see the ``CODE_*`` constants); ``reason`` is for people.
    """

    visible: bool
    reason: str
    code: str


CODE_OWNER = "owner"
CODE_SHARED_PUBLIC = "shared_public"
CODE_SHARED_CUSTOM = "shared_custom"
CODE_NOT_FOUND = "not_found"
CODE_PRIVATE = "hidden_private"
CODE_UNLINKED = "hidden_unlinked"
CODE_COMPANY_DOMAIN = "hidden_company_domain"
CODE_ORG_EXCLUDED_DOMAIN = "hidden_org_excluded_domain"
CODE_ACCOUNT_EXCLUDED_DOMAIN = "hidden_account_excluded_domain"
CODE_NOT_SHARED = "hidden_not_shared"

#: The one answer for an id that does not exist and for a message the asker may not know of.
NOT_FOUND = Explanation(False, "no such message, or you may not see it", CODE_NOT_FOUND)

_ROW = ("account_id", "account__sharing", "account__user_id", "account__user__organisation_id")


def domain_within(domain: str, listed: str) -> bool:
    """``domain`` is ``listed`` or a subdomain of it (the Python twin of the SQL rule)."""
    return domain == listed or domain.endswith("." + listed)


async def explain(asker: User, message: Message | int, *, viewer: User | int | None = None) -> Explanation:
    """Say whether ``viewer`` (default: ``asker``) may see ``message`` and why, as far as
    ``asker`` may know it (see the module docstring).

    For diagnostics and support ("why can't I see this mail?", "why can't my colleague?");
    gate access with :func:`~.visibility.visible_to`. The words name the account's
    permission, the offending listed domain, or linked records (only when the message is
    visible to the viewer): never a subject, an address or the owner of hidden mail. When
    several reasons hide a message, the first in this order is given: PRIVATE, no linked
    record, listed domain, Share Email not set.

    Raises ``FORBIDDEN`` when a user who is not an admin names another viewer for a message
    that is not theirs (whether or not it exists), and ``NOT_FOUND`` when the named viewer is
    not a user of the asker's organisation.
    """
    message_id = message if isinstance(message, int) else message.id
    viewer_id = viewer.id if isinstance(viewer, User) else viewer
    about_self = viewer_id is None or viewer_id == asker.id
    is_admin = asker.profile == Profile.ADMIN
    if about_self:
        may_know = visible_to(asker) | _administered(asker) if is_admin else visible_to(asker)
    else:
        may_know = _administered(asker) if is_admin else _owned(asker)
    rows = await Message.filter(may_know, id=message_id).values(*_ROW)
    if not rows:
        if about_self or is_admin:
            return NOT_FOUND
        raise SalesInboxError(
            ErrorCode.FORBIDDEN,
            "Only the message's owner or an admin can ask whether someone else may see it: "
            "leave out viewerId to ask about yourself.",
        )
    if about_self:
        subject = asker
    elif isinstance(viewer, User) and viewer.organisation_id == asker.organisation_id:
        subject = viewer
    else:
        found = await User.get_or_none(id=viewer_id, organisation_id=asker.organisation_id)
        if found is None:
            raise not_found("user")
        subject = found
    return await _explain_rule(subject, message_id, rows[0])


def _owned(asker: User) -> Q:
    """The message is in one of ``asker``'s accounts."""
    return Q(account_id__in=Subquery(MailAccount.filter(user_id=asker.id).values("id")))


def _administered(admin: User) -> Q:
    """The message is in an account of a user of ``admin``'s organisation."""
    accounts = MailAccount.filter(user__organisation_id=admin.organisation_id).values("id")
    return Q(account_id__in=Subquery(accounts))


async def _explain_rule(viewer: User, message_id: int, row: dict[str, Any]) -> Explanation:
    """The full explanation of docs/sharing.md#the-rule for ``viewer`` and the message of
    ``row`` (its account's columns): for those who may know it only. The message is in the
    viewer's organisation (:func:`explain` answers nothing else), so that condition holds."""
    account_id, owner_id = row["account_id"], row["account__user_id"]
    sharing = SharingPermission(row["account__sharing"])
    if owner_id == viewer.id:
        return Explanation(True, "owner", CODE_OWNER)
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
