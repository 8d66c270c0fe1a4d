"""Sharing settings (docs/sharing.md): account permission, Share Email per record, excluded domains.

Every change applies on the next query, to old and new mail alike: the policy reads these
rows at query time, nothing is copied onto messages.
"""

from __future__ import annotations

from tortoise.exceptions import IntegrityError

from ..address_normalisation import normalise_domain
from ..crm.users import require_admin
from ..db.models import (
    AccountExcludedDomain,
    CrmRecord,
    DomainKind,
    MailAccount,
    OrganisationDomain,
    ShareFlag,
    SharingPermission,
    User,
)
from ..db.orm_values import column_values
from ..errors import ErrorCode, SalesInboxError, not_found
from ..mail_accounts.accounts import get_account


async def set_account_sharing(actor: User, account_id: int, sharing: SharingPermission) -> MailAccount:
    """Set who else may see the account's mail (owner, or an admin on their behalf)."""
    account = await get_account(actor, account_id)
    account.sharing = sharing
    await account.save(update_fields=["sharing"])
    return account


async def set_share_email(actor: User, record_id: int, shared: bool) -> bool:
    """Tick or clear "Share Email" on a lead/contact for the actor's own mail.

    Ticking is refused unless one of the actor's accounts is CUSTOM: under PUBLIC every
    linked message is shared already and under PRIVATE nothing is, so the box would lie.
    Clearing is always allowed.
    """
    record = await CrmRecord.get_or_none(id=record_id, organisation_id=actor.organisation_id)
    if record is None:
        raise not_found("lead or contact")
    if not shared:
        await ShareFlag.filter(user_id=actor.id, record_id=record.id).delete()
        return False
    permissions = set(await column_values(MailAccount.filter(user_id=actor.id), "sharing"))
    if not permissions:
        raise SalesInboxError(ErrorCode.NO_MAIL_ACCOUNT, "You have no mail account: there is no mail to share.")
    if SharingPermission.CUSTOM not in permissions:
        if SharingPermission.PUBLIC in permissions:
            message = ("Your mail is shared as PUBLIC: all mail linked to leads and contacts is already "
                       "visible to colleagues, so Share Email has no effect. Switch the account to "
                       "CUSTOM to choose record by record.")
        else:
            message = ("Your mail is PRIVATE: switch the account's sharing to CUSTOM to share the mail "
                       "of chosen leads and contacts.")
        raise SalesInboxError(ErrorCode.INVALID_INPUT, message, field="shared")
    try:
        await ShareFlag.get_or_create(user_id=actor.id, record_id=record.id)
    except IntegrityError:
        pass  # ticked twice at once: it is ticked
    return True


async def shared_record_ids(actor: User, record_ids: list[int]) -> set[int]:
    """Which of ``record_ids`` the actor has ticked Share Email on."""
    rows = await column_values(ShareFlag.filter(user_id=actor.id, record_id__in=record_ids), "record_id")
    return set(rows)


async def account_excluded_domains(account_id: int) -> list[str]:
    return await column_values(AccountExcludedDomain.filter(account_id=account_id).order_by("domain"), "domain")


async def add_account_excluded_domain(actor: User, account_id: int, domain: str) -> list[str]:
    """Never share this account's mail with counterparties in ``domain`` (or its subdomains)."""
    account = await get_account(actor, account_id)
    await AccountExcludedDomain.get_or_create(account_id=account.id, domain=normalise_domain(domain))
    return await account_excluded_domains(account.id)


async def remove_account_excluded_domain(actor: User, account_id: int, domain: str) -> list[str]:
    account = await get_account(actor, account_id)
    await AccountExcludedDomain.filter(account_id=account.id, domain=normalise_domain(domain)).delete()
    return await account_excluded_domains(account.id)


async def organisation_domains(actor: User, kind: DomainKind) -> list[str]:
    return await column_values(
        OrganisationDomain.filter(organisation_id=actor.organisation_id, kind=kind).order_by("domain"), "domain"
    )


async def add_organisation_domain(actor: User, kind: DomainKind, domain: str) -> list[str]:
    """Add a company domain or an organisation-wide excluded domain (admins only)."""
    require_admin(actor, "change the organisation's domains")
    await OrganisationDomain.get_or_create(
        organisation_id=actor.organisation_id, kind=kind, domain=normalise_domain(domain)
    )
    return await organisation_domains(actor, kind)


async def remove_organisation_domain(actor: User, kind: DomainKind, domain: str) -> list[str]:
    require_admin(actor, "change the organisation's domains")
    await OrganisationDomain.filter(
        organisation_id=actor.organisation_id, kind=kind, domain=normalise_domain(domain)
    ).delete()
    return await organisation_domains(actor, kind)
