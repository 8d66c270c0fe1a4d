"""CRM users: creation by admins (or the CLI for the first admin), listing, activation."""

from __future__ import annotations

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from ..address_normalisation import normalise_email
from ..db.models import Profile, User
from ..errors import ErrorCode, SalesInboxError, invalid_input, not_found
from .api_tokens import token_cache
from .organisation import get_organisation


def require_admin(actor: User, action: str) -> None:
    """Raise ``FORBIDDEN`` unless ``actor`` is an admin; ``action`` completes "Only an admin can …"."""
    if actor.profile != Profile.ADMIN:
        raise SalesInboxError(ErrorCode.FORBIDDEN, f"Only an admin can {action}.")


def _clean_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned or len(cleaned) > 200:
        raise invalid_input("A user needs a name of 1 to 200 characters.", field="name")
    return cleaned


async def create_user(
    actor: User | None, *, email: str, name: str, profile: Profile = Profile.STANDARD
) -> User:
    """Create a user. ``actor`` must be an admin; ``None`` means the server operator (CLI).

    Raises ``ALREADY_EXISTS`` when the email is taken (emails are compared normalised).
    """
    if actor is not None:
        require_admin(actor, "create users")
    address = normalise_email(email)
    clean_name = _clean_name(name)
    organisation = await get_organisation()
    try:
        async with in_transaction():
            if await User.filter(email=address).exists():
                raise _duplicate(address)
            return await User.create(
                organisation=organisation, email=address, name=clean_name, profile=profile
            )
    except IntegrityError:
        # Lost a race with a concurrent creation of the same address.
        raise _duplicate(address) from None


def _duplicate(address: str) -> SalesInboxError:
    return SalesInboxError(
        ErrorCode.ALREADY_EXISTS,
        f"A user with the email {address} already exists: use that user or another address.",
        field="email",
    )


async def list_users(actor: User) -> list[User]:
    """All users of the actor's organisation, by name (every user may see colleagues' names)."""
    return await User.filter(organisation_id=actor.organisation_id).order_by("name", "id")


async def get_user(actor: User, user_id: int) -> User:
    """One user of the actor's organisation, or ``NOT_FOUND``."""
    user = await User.get_or_none(id=user_id, organisation_id=actor.organisation_id)
    if user is None:
        raise not_found("user")
    return user


async def update_user(
    actor: User,
    user_id: int,
    *,
    name: str | None = None,
    profile: Profile | None = None,
    is_active: bool | None = None,
) -> User:
    """Change a user's name, profile or activation (admins only).

    An admin cannot demote or deactivate themself, so that an organisation always keeps one.
    """
    require_admin(actor, "change users")
    user = await get_user(actor, user_id)
    if user.id == actor.id and (profile == Profile.STANDARD or is_active is False):
        raise invalid_input(
            "You cannot demote or deactivate yourself: ask another admin to do it.",
            field="profile" if profile is not None else "isActive",
        )
    if name is not None:
        user.name = _clean_name(name)
    if profile is not None:
        user.profile = profile
    if is_active is not None:
        user.is_active = is_active
    await user.save()
    # Cached authentications carry the old profile/activation: drop them now.
    token_cache.forget_user(user.id)
    return user
