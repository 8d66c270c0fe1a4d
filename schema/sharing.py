"""Sharing settings: account permission, Share Email, excluded and company domains."""

from __future__ import annotations

import strawberry

from salesinbox.core.crm.organisation import get_organisation
from salesinbox.core.db.models import DomainKind, SharingPermission
from salesinbox.core.sharing import sharing_settings as sharing

from .accounts import MailAccountType, SharingEnum
from .context import Info
from .ids import parse_id

DomainKindEnum = strawberry.enum(
    DomainKind, name="DomainKind", description="COMPANY: your own domains. EXCLUDED: never shared."
)


@strawberry.type(name="Organisation", description="Organisation-wide settings.")
class OrganisationType:
    name: str
    company_domains: list[str]
    excluded_domains: list[str]
    disabled_providers: list[str]


@strawberry.type
class SharingQueries:
    @strawberry.field(description="Your organisation's domains and provider settings.")
    async def organisation(self, info: Info) -> OrganisationType:
        viewer = info.context.user
        organisation = await get_organisation()
        return OrganisationType(
            name=organisation.name,
            company_domains=await sharing.organisation_domains(viewer, DomainKind.COMPANY),
            excluded_domains=await sharing.organisation_domains(viewer, DomainKind.EXCLUDED),
            disabled_providers=list(organisation.disabled_providers),
        )


@strawberry.type
class SharingMutations:
    @strawberry.mutation(description="Who else may see this account's mail: PRIVATE, CUSTOM or PUBLIC.")
    async def set_account_sharing(self, info: Info, account_id: strawberry.ID,
                                  permission: SharingEnum) -> MailAccountType:  # type: ignore[valid-type]
        row = await sharing.set_account_sharing(
            info.context.user, parse_id(account_id, field="accountId"), SharingPermission(permission)
        )
        return MailAccountType.from_model(row)

    @strawberry.mutation(description="Tick or clear Share Email on a lead/contact (your account must be CUSTOM).")
    async def set_share_email(self, info: Info, record_id: strawberry.ID, shared: bool) -> bool:
        return await sharing.set_share_email(info.context.user, parse_id(record_id, field="recordId"), shared)

    @strawberry.mutation(description="Never share this account's mail with a domain (and its subdomains).")
    async def add_account_excluded_domain(self, info: Info, account_id: strawberry.ID, domain: str) -> list[str]:
        return await sharing.add_account_excluded_domain(
            info.context.user, parse_id(account_id, field="accountId"), domain
        )

    @strawberry.mutation(description="Remove an account-level excluded domain.")
    async def remove_account_excluded_domain(self, info: Info, account_id: strawberry.ID, domain: str) -> list[str]:
        return await sharing.remove_account_excluded_domain(
            info.context.user, parse_id(account_id, field="accountId"), domain
        )

    @strawberry.mutation(description="Add a company or excluded domain for the whole organisation (admins).")
    async def add_organisation_domain(self, info: Info, kind: DomainKindEnum, domain: str) -> list[str]:  # type: ignore[valid-type]
        return await sharing.add_organisation_domain(info.context.user, DomainKind(kind), domain)

    @strawberry.mutation(description="Remove a company or excluded domain of the organisation (admins).")
    async def remove_organisation_domain(self, info: Info, kind: DomainKindEnum, domain: str) -> list[str]:  # type: ignore[valid-type]
        return await sharing.remove_organisation_domain(info.context.user, DomainKind(kind), domain)

