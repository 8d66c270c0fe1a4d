"""The deployment's organisation: created on first use, with its company and excluded domains."""

from __future__ import annotations

from tortoise.transactions import in_transaction

from ..db.models import DomainKind, Organisation, OrganisationDomain

DEFAULT_ORGANISATION_NAME = "My organisation"


async def get_organisation() -> Organisation:
    """Return the deployment's organisation, creating it on first use."""
    organisation = await Organisation.all().order_by("id").first()
    if organisation is not None:
        return organisation
    async with in_transaction():
        organisation = await Organisation.all().order_by("id").first()
        if organisation is None:
            organisation = await Organisation.create(name=DEFAULT_ORGANISATION_NAME)
    return organisation


async def organisation_domains(organisation: Organisation, kind: DomainKind) -> list[str]:
    """Return the organisation's domains of ``kind``, sorted."""
    rows = await OrganisationDomain.filter(organisation=organisation, kind=kind).order_by(
        "domain"
    )
    return [row.domain for row in rows]
