"""Users and tokens through GraphQL: me, users, user, createUser, updateUser, tokens."""

from __future__ import annotations

from salesinbox.core.db.models import ApiToken, User

from .conftest import GraphQLClient

CREATE = "mutation($input: CreateUserInput!) { createUser(input: $input) { id email name profile isActive } }"


async def test_me(api: GraphQLClient, rep: User, rep_token: str) -> None:
    data = await api.ok("{ me { id email name profile isActive createdAt } }", token=rep_token)
    assert data["me"]["email"] == "rep@acme.test"
    assert data["me"]["profile"] == "STANDARD"
    assert data["me"]["id"] == str(rep.id)


async def test_admin_creates_user_and_duplicate_is_typed(api: GraphQLClient, admin_token: str) -> None:
    data = await api.ok(CREATE, {"input": {"email": " New.Rep@ACME.test ", "name": " New  Rep "}}, token=admin_token)
    assert data["createUser"] == {"id": data["createUser"]["id"], "email": "new.rep@acme.test",
                                  "name": "New Rep", "profile": "STANDARD", "isActive": True}
    error = await api.error(CREATE, {"input": {"email": "new.rep@acme.test", "name": "Again"}}, token=admin_token)
    assert error["extensions"] == {"code": "ALREADY_EXISTS", "field": "email"}
    assert await User.filter(email="new.rep@acme.test").count() == 1


async def test_malformed_email_is_typed_and_nothing_saved(api: GraphQLClient, admin_token: str) -> None:
    before = await User.all().count()
    error = await api.error(CREATE, {"input": {"email": "not an address", "name": "X"}}, token=admin_token)
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": "email"}
    assert await User.all().count() == before


async def test_standard_user_cannot_create_users(api: GraphQLClient, rep_token: str) -> None:
    error = await api.error(CREATE, {"input": {"email": "x@acme.test", "name": "X"}}, token=rep_token)
    assert error["extensions"]["code"] == "FORBIDDEN"


async def test_users_and_user(api: GraphQLClient, admin: User, rep: User, rep_token: str) -> None:
    data = await api.ok("{ users { email } }", token=rep_token)
    assert [u["email"] for u in data["users"]] == ["admin@acme.test", "rep@acme.test"]
    data = await api.ok("query($id: ID!) { user(id: $id) { name } }", {"id": str(admin.id)}, token=rep_token)
    assert data["user"]["name"] == "Ada Admin"
    error = await api.error("query($id: ID!) { user(id: $id) { name } }", {"id": "99999"}, token=rep_token)
    assert error["extensions"]["code"] == "NOT_FOUND"
    error = await api.error("query($id: ID!) { user(id: $id) { name } }", {"id": "abc"}, token=rep_token)
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": "id"}


async def test_update_user(api: GraphQLClient, admin: User, rep: User, admin_token: str) -> None:
    mutation = "mutation($id: ID!, $input: UpdateUserInput!) { updateUser(id: $id, input: $input) { name profile } }"
    data = await api.ok(mutation, {"id": str(rep.id), "input": {"profile": "ADMIN", "name": "Rex"}}, token=admin_token)
    assert data["updateUser"] == {"name": "Rex", "profile": "ADMIN"}
    error = await api.error(mutation, {"id": str(admin.id), "input": {"profile": "STANDARD"}}, token=admin_token)
    assert error["extensions"]["code"] == "INVALID_INPUT"


async def test_issue_use_list_and_revoke_token(api: GraphQLClient, admin_token: str, rep: User) -> None:
    issued = await api.ok(
        'mutation($u: ID!) { issueToken(name: "mobile", userId: $u, expiresInDays: 30) '
        "{ token apiToken { id name prefix userId expiresAt revokedAt } } }",
        {"u": str(rep.id)},
        token=admin_token,
    )
    token = issued["issueToken"]["token"]
    meta = issued["issueToken"]["apiToken"]
    assert token.startswith(meta["prefix"]) and meta["userId"] == str(rep.id) and meta["expiresAt"]
    # Only the hash is stored.
    assert not await ApiToken.filter(token_hash=token).exists()
    assert (await api.ok("{ me { email } }", token=token))["me"]["email"] == "rep@acme.test"

    listed = await api.ok("{ apiTokens { id name prefix createdAt lastUsedAt } }", token=token)
    assert meta["id"] in [t["id"] for t in listed["apiTokens"]]
    assert all("token" not in t for t in listed["apiTokens"])

    revoked = await api.ok("mutation($id: ID!) { revokeToken(id: $id) { revokedAt } }", {"id": meta["id"]}, token=token)
    assert revoked["revokeToken"]["revokedAt"]
    error = await api.error("{ me { email } }", token=token)
    assert error["extensions"]["code"] == "UNAUTHENTICATED" and "revoked" in error["message"]


async def test_standard_user_cannot_issue_or_list_for_others(
    api: GraphQLClient, rep_token: str, admin: User
) -> None:
    error = await api.error("mutation($u: ID!) { issueToken(name: \"x\", userId: $u) { token } }",
                            {"u": str(admin.id)}, token=rep_token)
    assert error["extensions"]["code"] == "FORBIDDEN"
    error = await api.error("query($u: ID!) { apiTokens(userId: $u) { id } }", {"u": str(admin.id)}, token=rep_token)
    assert error["extensions"]["code"] == "FORBIDDEN"


async def test_revoking_someone_elses_token_is_not_found(api: GraphQLClient, rep_token: str, admin_token: str) -> None:
    admin_tokens = await api.ok("{ apiTokens { id } }", token=admin_token)
    error = await api.error("mutation($id: ID!) { revokeToken(id: $id) { id } }",
                            {"id": admin_tokens["apiTokens"][0]["id"]}, token=rep_token)
    assert error["extensions"]["code"] == "NOT_FOUND"


async def test_token_name_is_validated(api: GraphQLClient, rep_token: str) -> None:
    error = await api.error('mutation { issueToken(name: "  ") { token } }', token=rep_token)
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": "name"}
