"""Users and API tokens: ``me``, ``users``, and the admin mutations that create them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import strawberry

from salesinbox.core.crm import api_tokens as tokens
from salesinbox.core.crm import users
from salesinbox.core.db.models import ApiToken, Profile, User

from .context import Info
from .ids import parse_id, to_id

ProfileEnum = strawberry.enum(Profile, name="Profile", description="A user's profile.")


@strawberry.type(name="User", description="A CRM user.")
class UserType:
    id: strawberry.ID
    email: str
    name: str
    profile: ProfileEnum  # type: ignore[valid-type]
    is_active: bool
    created_at: datetime

    @classmethod
    def from_model(cls, row: User) -> UserType:
        return cls(
            id=to_id(row.id),
            email=row.email,
            name=row.name,
            profile=row.profile,
            is_active=row.is_active,
            created_at=row.created_at,
        )

    @classmethod
    def from_values(cls, row: Mapping[str, Any]) -> UserType:
        """From a ``values()`` row with the columns of ``loaders.USER_FIELDS``."""
        return cls(
            id=to_id(row["id"]), email=row["email"], name=row["name"], profile=row["profile"],
            is_active=row["is_active"], created_at=row["created_at"],
        )


@strawberry.type(name="ApiToken", description="An API token (its secret is never shown again).")
class ApiTokenType:
    id: strawberry.ID
    name: str
    prefix: str = strawberry.field(description="The token's first characters, to recognise it.")
    user_id: strawberry.ID
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_model(cls, row: ApiToken) -> ApiTokenType:
        return cls(
            id=to_id(row.id),
            name=row.name,
            prefix=row.prefix,
            user_id=to_id(row.user_id),
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
        )


@strawberry.type(description="A newly issued token. `token` is shown this once: store it now.")
class IssuedToken:
    token: str
    api_token: ApiTokenType


@strawberry.input(description="A new user.")
class CreateUserInput:
    email: str
    name: str
    profile: ProfileEnum = Profile.STANDARD  # type: ignore[valid-type]


@strawberry.input(description="Changes to a user; omitted fields stay as they are.")
class UpdateUserInput:
    name: str | None = None
    profile: ProfileEnum | None = None  # type: ignore[valid-type]
    is_active: bool | None = None


@strawberry.type
class UserQueries:
    @strawberry.field(description="The authenticated user.")
    async def me(self, info: Info) -> UserType:
        return UserType.from_model(info.context.user)

    @strawberry.field(description="Every user of the organisation, by name.")
    async def users(self, info: Info) -> list[UserType]:
        return [UserType.from_model(u) for u in await users.list_users(info.context.user)]

    @strawberry.field(description="One user of the organisation.")
    async def user(self, info: Info, id: strawberry.ID) -> UserType:
        return UserType.from_model(await users.get_user(info.context.user, parse_id(id)))

    @strawberry.field(description="API tokens of a user (default: yours). Admins see anyone's.")
    async def api_tokens(self, info: Info, user_id: strawberry.ID | None = None) -> list[ApiTokenType]:
        target = parse_id(user_id, field="userId") if user_id is not None else None
        rows = await tokens.list_tokens(info.context.user, target)
        return [ApiTokenType.from_model(row) for row in rows]


@strawberry.type
class UserMutations:
    @strawberry.mutation(description="Create a user (admins only).")
    async def create_user(self, info: Info, input: CreateUserInput) -> UserType:
        row = await users.create_user(
            info.context.user, email=input.email, name=input.name, profile=Profile(input.profile)
        )
        return UserType.from_model(row)

    @strawberry.mutation(description="Change a user's name, profile or activation (admins only).")
    async def update_user(self, info: Info, id: strawberry.ID, input: UpdateUserInput) -> UserType:
        row = await users.update_user(
            info.context.user,
            parse_id(id),
            name=input.name,
            profile=Profile(input.profile) if input.profile is not None else None,
            is_active=input.is_active,
        )
        return UserType.from_model(row)

    @strawberry.mutation(
        description="Issue an API token for yourself, or for any user when you are an admin."
    )
    async def issue_token(
        self,
        info: Info,
        name: str,
        user_id: strawberry.ID | None = None,
        expires_in_days: int | None = None,
    ) -> IssuedToken:
        target = parse_id(user_id, field="userId") if user_id is not None else None
        row, clear = await tokens.issue_token_for(
            info.context.user, target, name, expires_in_days=expires_in_days
        )
        return IssuedToken(token=clear, api_token=ApiTokenType.from_model(row))

    @strawberry.mutation(description="Revoke a token: yours, or anyone's when you are an admin.")
    async def revoke_token(self, info: Info, id: strawberry.ID) -> ApiTokenType:
        return ApiTokenType.from_model(await tokens.revoke_token(info.context.user, parse_id(id)))

