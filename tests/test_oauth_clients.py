"""The organisation's OAuth clients (core/oauth/oauth_clients.py, schema/oauth.py), on a real database.

An admin registers the client the organisation created at Google or Microsoft; the secret is
stored encrypted, never returned nor logged; endpoints and tenant may be overridden.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest
from tortoise import connections

from salesinbox.core.credentials import SecretBox
from salesinbox.core.db.models import User
from salesinbox.core.errors import ErrorCode, SalesInboxError
from salesinbox.core.oauth.oauth_clients import (
    OAuthClientInput,
    delete_oauth_client,
    list_oauth_clients,
    oauth_client_for_sign_in,
    redirect_url,
    set_oauth_client,
)
from salesinbox.core.oauth.oauth_urls import check_admin_url, check_frontend_url, fill_tenant
from salesinbox.core.plugin_host.plugins import get_plugin_manager
from salesinbox.core.plugin_host.provider_registry import ProviderRegistry
from salesinbox.core.settings import Settings

from .conftest import GraphQLClient

SECRET = "GOCSPX-very-secret-Zq8"
NEW_SECRET = "GOCSPX-rotated-secret-Yk3"
CLIENT_ID = "1234-abc.apps.googleusercontent.com"

CLIENT_FIELDS = """provider clientId secretSet authorizationUrl tokenUrl revocationUrl userinfoUrl tenant
overrides redirectUrl frontendRedirectUrl updatedAt"""
SET = f"""mutation($input: OAuthClientInput!) {{ setOAuthClient(input: $input) {{ {CLIENT_FIELDS} }} }}"""
LIST = f"{{ oauthClients {{ {CLIENT_FIELDS} }} }}"
DELETE = "mutation($p: String!) { deleteOAuthClient(provider: $p) }"
PROVIDER_OAUTH = """{ providers { key oauth { authorizationUrl tokenUrl revocationUrl userinfoUrl scopes mechanism
authorizationParams { name value } addressClaims defaultTenant setupUrl configured redirectUrl } } }"""


def registry() -> ProviderRegistry:
    return ProviderRegistry(get_plugin_manager(load_entrypoints=False))


async def raw_rows() -> list[dict]:
    return await connections.get("default").execute_query_dict("SELECT * FROM oauth_client")


# -- GraphQL: the admin's round trip --------------------------------------------------------


async def test_admin_sets_reads_overrides_and_deletes(
    api: GraphQLClient, admin_token: str, db: Settings
) -> None:
    created = (await api.ok(SET, {"input": {
        "provider": "gmail", "clientId": f"  {CLIENT_ID} ", "clientSecret": SECRET,
        "frontendRedirectUrl": "https://crm.acme.test/settings/mail",
    }}, token=admin_token))["setOAuthClient"]
    assert created | {"updatedAt": None} == {
        "provider": "gmail", "clientId": CLIENT_ID, "secretSet": True,
        "authorizationUrl": "https://accounts.google.com/o/oauth2/v2/auth",
        "tokenUrl": "https://oauth2.googleapis.com/token",
        "revocationUrl": "https://oauth2.googleapis.com/revoke",
        "userinfoUrl": "https://openidconnect.googleapis.com/v1/userinfo",
        "tenant": None, "overrides": [],
        "redirectUrl": "http://127.0.0.1:8000/oauth/callback",
        "frontendRedirectUrl": "https://crm.acme.test/settings/mail", "updatedAt": None,
    }
    assert created["updatedAt"]
    assert (await api.ok(LIST, token=admin_token))["oauthClients"] == [created]

    # Override the token endpoint (a self-hosted proxy) without re-typing the secret.
    changed = (await api.ok(SET, {"input": {
        "provider": "gmail", "clientId": CLIENT_ID, "tokenUrl": "https://idp.acme.test/token",
        "revocationUrl": "  ",
    }}, token=admin_token))["setOAuthClient"]
    assert changed["tokenUrl"] == "https://idp.acme.test/token"
    assert changed["revocationUrl"] == "https://oauth2.googleapis.com/revoke"  # blank: the declaration
    assert changed["overrides"] == ["tokenUrl"]
    assert changed["frontendRedirectUrl"] is None and changed["secretSet"] is True
    admin = await User.get(email="admin@acme.test")
    _, secret = await oauth_client_for_sign_in(
        admin.organisation_id, "gmail", registry=registry(), secrets=SecretBox.from_settings(db), settings=db
    )
    assert secret.reveal() == SECRET  # kept

    assert (await api.ok(DELETE, {"p": "gmail"}, token=admin_token)) == {"deleteOAuthClient": True}
    assert (await api.ok(DELETE, {"p": "gmail"}, token=admin_token)) == {"deleteOAuthClient": False}
    for not_a_key in ("x" * 100, "Gmail", ""):
        error = await api.error(DELETE, {"p": not_a_key}, token=admin_token)
        assert error["extensions"] == {"code": "INVALID_INPUT", "field": "provider"}
    assert (await api.ok(LIST, token=admin_token))["oauthClients"] == []
    assert await raw_rows() == []


async def test_providers_expose_the_declaration_and_whether_it_is_configured(
    api: GraphQLClient, admin_token: str, rep_token: str
) -> None:
    await api.ok(SET, {"input": {"provider": "office365", "clientId": "app-id", "clientSecret": SECRET}},
                 token=admin_token)
    body = await api.post(PROVIDER_OAUTH, token=rep_token)  # any user: no secret in it
    assert "errors" not in body and SECRET not in str(body)
    oauth = {p["key"]: p["oauth"] for p in body["data"]["providers"]}
    assert oauth["yahoo"] is None and oauth["zoho_mail"] is None and oauth["custom_imap"] is None
    assert oauth["gmail"]["configured"] is False and oauth["office365"]["configured"] is True
    assert oauth["gmail"]["scopes"] == ["https://mail.google.com/", "openid", "email"]
    assert oauth["gmail"]["authorizationParams"] == [
        {"name": "access_type", "value": "offline"}, {"name": "prompt", "value": "consent"}
    ]
    assert oauth["gmail"]["mechanism"] == "XOAUTH2" and oauth["gmail"]["addressClaims"] == ["email"]
    microsoft = oauth["outlook"]
    assert microsoft["authorizationUrl"] == "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize"
    assert microsoft["revocationUrl"] is None and microsoft["userinfoUrl"] is None
    assert microsoft["defaultTenant"] == "consumers" and oauth["office365"]["defaultTenant"] == "organizations"
    assert microsoft["addressClaims"] == ["email", "preferred_username"]
    assert "offline_access" in microsoft["scopes"]
    assert microsoft["setupUrl"].startswith("https://")
    assert microsoft["redirectUrl"] == "http://127.0.0.1:8000/oauth/callback"


async def test_microsoft_tenant_default_and_override(api: GraphQLClient, admin_token: str) -> None:
    default = (await api.ok(SET, {"input": {"provider": "office365", "clientId": "app", "clientSecret": SECRET}},
                            token=admin_token))["setOAuthClient"]
    assert default["tenant"] == "organizations"
    assert default["tokenUrl"] == "https://login.microsoftonline.com/organizations/oauth2/v2.0/token"
    national = (await api.ok(SET, {"input": {
        "provider": "office365", "clientId": "app", "tenant": " contoso.onmicrosoft.com ",
        "authorizationUrl": "https://login.microsoftonline.us/{tenant}/oauth2/v2.0/authorize",
        "tokenUrl": "https://login.microsoftonline.us/{tenant}/oauth2/v2.0/token",
    }}, token=admin_token))["setOAuthClient"]
    assert national["tenant"] == "contoso.onmicrosoft.com"
    assert national["authorizationUrl"] == "https://login.microsoftonline.us/contoso.onmicrosoft.com/oauth2/v2.0/authorize"
    assert national["overrides"] == ["authorizationUrl", "tokenUrl", "tenant"]
    outlook = (await api.ok(SET, {"input": {"provider": "outlook", "clientId": "app", "clientSecret": SECRET}},
                            token=admin_token))["setOAuthClient"]
    assert outlook["authorizationUrl"] == "https://login.microsoftonline.com/consumers/oauth2/v2.0/authorize"
    listed = (await api.ok(LIST, token=admin_token))["oauthClients"]
    assert [row["provider"] for row in listed] == ["office365", "outlook"]


# -- secrets --------------------------------------------------------------------------------


async def test_secret_is_never_returned_logged_nor_stored_in_clear(
    api: GraphQLClient, admin_token: str, db: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        first = await api.post(SET, {"input": {"provider": "gmail", "clientId": CLIENT_ID, "clientSecret": SECRET}},
                               token=admin_token)
        rotated = await api.post(SET, {"input": {"provider": "gmail", "clientId": CLIENT_ID,
                                                 "clientSecret": NEW_SECRET}}, token=admin_token)
        listed = await api.post(LIST, token=admin_token)
        refused = await api.post(SET, {"input": {"provider": "gmail", "clientId": CLIENT_ID,
                                                 "clientSecret": NEW_SECRET, "tokenUrl": "ftp://x"}},
                                 token=admin_token)
    for body in (first, rotated, listed, refused):
        assert SECRET not in str(body) and NEW_SECRET not in str(body)
    assert refused["errors"][0]["extensions"] == {"code": "INVALID_INPUT", "field": "tokenUrl"}
    assert SECRET not in caplog.text and NEW_SECRET not in caplog.text
    assert "OAuth client for provider gmail set" in caplog.text
    [row] = await raw_rows()
    assert SECRET not in str(row) and NEW_SECRET not in str(row)
    assert SecretBox.from_settings(db).decrypt(row["client_secret"]).reveal() == NEW_SECRET


async def test_first_setting_needs_a_secret_and_a_blank_one_is_refused(
    api: GraphQLClient, admin_token: str
) -> None:
    missing = await api.error(SET, {"input": {"provider": "gmail", "clientId": CLIENT_ID}}, token=admin_token)
    assert missing["extensions"] == {"code": "INVALID_INPUT", "field": "clientSecret"}
    blank = await api.error(SET, {"input": {"provider": "gmail", "clientId": CLIENT_ID, "clientSecret": "  "}},
                            token=admin_token)
    assert blank["extensions"] == {"code": "INVALID_INPUT", "field": "clientSecret"}
    assert await raw_rows() == []


# -- who may -------------------------------------------------------------------------------


async def test_a_standard_user_is_forbidden(api: GraphQLClient, admin_token: str, rep_token: str) -> None:
    await api.ok(SET, {"input": {"provider": "gmail", "clientId": CLIENT_ID, "clientSecret": SECRET}},
                 token=admin_token)
    for query, variables in [
        (LIST, None),
        (SET, {"input": {"provider": "gmail", "clientId": "mine", "clientSecret": "x"}}),
        (SET, {"input": {"provider": "nope", "clientId": "mine"}}),  # FORBIDDEN before anything
        (DELETE, {"p": "gmail"}),
    ]:
        error = await api.error(query, variables, token=rep_token)
        assert error["extensions"]["code"] == "FORBIDDEN", error
        assert "Only an admin" in error["message"]
    [row] = await raw_rows()
    assert row["client_id"] == CLIENT_ID


# -- typed errors, nothing saved ------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"provider": "hotmail"}, "UNKNOWN_PROVIDER", "provider"),
        ({"provider": "yahoo"}, "INVALID_INPUT", "provider"),
        ({"provider": "custom_imap"}, "INVALID_INPUT", "provider"),
        ({"clientId": "  "}, "INVALID_INPUT", "clientId"),
        ({"clientId": "has spaces in it"}, "INVALID_INPUT", "clientId"),
        ({"tokenUrl": "http://idp.example.com/token"}, "INVALID_INPUT", "tokenUrl"),
        ({"authorizationUrl": "idp.example.com/auth"}, "INVALID_INPUT", "authorizationUrl"),
        ({"revocationUrl": "https://user:pw@idp.example.com/revoke"}, "INVALID_INPUT", "revocationUrl"),
        ({"userinfoUrl": "https://idp.example.com/userinfo#x"}, "INVALID_INPUT", "userinfoUrl"),
        ({"tokenUrl": "https://idp.example.com/{client}/token"}, "INVALID_INPUT", "tokenUrl"),
        ({"tenant": "common"}, "INVALID_INPUT", "tenant"),  # Google's URLs have no tenant
        ({"tokenUrl": "https://idp.example.com/{tenant}/token"}, "INVALID_INPUT", "tenant"),
        ({"provider": "office365", "tenant": "../../evil"}, "INVALID_INPUT", "tenant"),
        ({"provider": "office365", "tenant": "a/b"}, "INVALID_INPUT", "tenant"),
        ({"frontendRedirectUrl": "javascript:alert(1)"}, "INVALID_INPUT", "frontendRedirectUrl"),
        ({"frontendRedirectUrl": "/settings"}, "INVALID_INPUT", "frontendRedirectUrl"),
    ],
)
async def test_bad_input_gets_a_typed_error_and_saves_nothing(
    api: GraphQLClient, admin_token: str, changes: dict, code: str, field: str
) -> None:
    values = {"provider": "gmail", "clientId": CLIENT_ID, "clientSecret": SECRET} | changes
    error = await api.error(SET, {"input": values}, token=admin_token)
    assert error["extensions"] == {"code": code, "field": field}, error
    assert len(error["message"]) > 20 and SECRET not in error["message"]
    assert await raw_rows() == []


async def test_the_error_for_a_provider_without_oauth_names_those_with_it(
    api: GraphQLClient, admin_token: str
) -> None:
    error = await api.error(SET, {"input": {"provider": "zoho_mail", "clientId": "x", "clientSecret": "y"}},
                            token=admin_token)
    assert "Zoho Mail offers no OAuth sign-in" in error["message"]
    assert "gmail, outlook, office365" in error["message"]


async def test_loopback_http_endpoints_for_a_test_identity_provider(
    api: GraphQLClient, admin_token: str
) -> None:
    # The test settings allow private hosts (as SALESINBOX_ALLOW_PRIVATE_HOSTS=true does).
    data = await api.ok(SET, {"input": {
        "provider": "gmail", "clientId": CLIENT_ID, "clientSecret": SECRET,
        "authorizationUrl": "http://127.0.0.1:8555/authorize", "tokenUrl": "http://localhost:8555/token",
        "userinfoUrl": "https://10.1.2.3/userinfo",
    }}, token=admin_token)
    assert data["setOAuthClient"]["tokenUrl"] == "http://localhost:8555/token"


# -- the URL rules, for each operator setting ------------------------------------------------


@pytest.mark.parametrize(
    ("url", "settings", "accepted"),
    [
        ("https://idp.example.com/token", Settings(), True),
        ("https://idp.example.com:8443/t?p=b2c_1", Settings(), True),
        ("http://idp.example.com/token", Settings(), False),
        ("http://127.0.0.1:9000/token", Settings(), False),
        ("http://127.0.0.1:9000/token", Settings(allow_private_hosts=True), True),
        ("http://[::1]:9000/token", Settings(allow_private_hosts=True), True),
        ("http://idp.lan/token", Settings(allow_private_hosts=True), False),
        ("http://idp.example.com/token", Settings(allow_plaintext=True), True),
        ("https://192.168.1.5/token", Settings(), False),
        ("https://169.254.169.254/token", Settings(), False),
        ("https://192.168.1.5/token", Settings(allow_private_hosts=True), True),
        ("https://idp.example.com:notaport/token", Settings(), False),
        ("https://idp.example.com/" + "a" * 2000, Settings(), False),
        ("https://{tenant}.example.com/token", Settings(), False),
        ("https://idp.example.com/to ken", Settings(), False),
    ],
)
def test_admin_url_rules(url: str, settings: Settings, accepted: bool) -> None:
    if accepted:
        assert check_admin_url(f" {url} ", field="tokenUrl", settings=settings) == url
    else:
        with pytest.raises(SalesInboxError) as raised:
            check_admin_url(url, field="tokenUrl", settings=settings)
        assert raised.value.code == ErrorCode.INVALID_INPUT and raised.value.field == "tokenUrl"


def test_frontend_url_may_be_plain_http_but_must_be_absolute() -> None:
    assert check_frontend_url("http://crm.intranet/mail", field="f") == "http://crm.intranet/mail"
    for bad in ("crm.example.com", "https://crm.example.com/#/x", "data:text/html,hi", "https://{x}.example.com"):
        with pytest.raises(SalesInboxError):
            check_frontend_url(bad, field="f")


def test_fill_tenant_refuses_a_tenant_that_would_change_the_url() -> None:
    url = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"
    assert fill_tenant(url, "common") == "https://login.microsoftonline.com/common/oauth2/v2.0/token"
    assert fill_tenant("https://x.example/token", None) == "https://x.example/token"
    for bad in ("a/b", "a?b", "a#b", "a%2fb", "", "-x"):
        with pytest.raises(SalesInboxError):
            fill_tenant(url, bad)


@pytest.mark.parametrize(
    ("public_url", "expected"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000/oauth/callback"),
        ("https://crm.example.com/", "https://crm.example.com/oauth/callback"),
        ("https://example.com/salesinbox", "https://example.com/salesinbox/oauth/callback"),
    ],
)
def test_redirect_url_follows_the_public_url(public_url: str, expected: str) -> None:
    settings = Settings.from_env({"SALESINBOX_PUBLIC_URL": public_url})
    assert redirect_url(settings) == expected


@pytest.mark.parametrize("public_url", ["crm.example.com", "https://crm.example.com/?x=1", "ftp://crm.example.com"])
def test_a_malformed_public_url_is_named(public_url: str) -> None:
    with pytest.raises(SalesInboxError) as raised:
        redirect_url(Settings(public_url=public_url))
    assert raised.value.field == "SALESINBOX_PUBLIC_URL"


async def test_redirect_url_in_the_api_follows_the_setting(
    db: Settings, admin: User
) -> None:
    settings = db.with_overrides(public_url="https://crm.acme.test/inbox/")
    row = await set_oauth_client(
        admin, OAuthClientInput(provider="gmail", client_id=CLIENT_ID, client_secret=SECRET),
        registry=registry(), secrets=SecretBox.from_settings(db), settings=settings,
    )
    assert row.redirect_url == "https://crm.acme.test/inbox/oauth/callback"


# -- what the consent flow will read ----------------------------------------------------------


async def test_sign_in_settings_need_an_admin_to_have_set_the_client(db: Settings, admin: User, rep: User) -> None:
    secrets = SecretBox.from_settings(db)
    with pytest.raises(SalesInboxError) as raised:
        await oauth_client_for_sign_in(rep.organisation_id, "gmail", registry=registry(), secrets=secrets, settings=db)
    assert raised.value.code == ErrorCode.NOT_FOUND and "admin" in raised.value.message
    await set_oauth_client(
        admin, OAuthClientInput(provider="outlook", client_id="app", client_secret=SECRET, tenant="common"),
        registry=registry(), secrets=secrets, settings=db,
    )
    config, secret = await oauth_client_for_sign_in(
        rep.organisation_id, "outlook", registry=registry(), secrets=secrets, settings=db
    )
    assert config.token_url == "https://login.microsoftonline.com/common/oauth2/v2.0/token"
    assert config.server.scopes[0] == "https://outlook.office.com/IMAP.AccessAsUser.All"
    assert secret.reveal() == SECRET and SECRET not in repr(config) + repr(secret)


# -- a third-party provider -------------------------------------------------------------------


def thirdparty_registry() -> ProviderRegistry:
    """The built-ins plus tests/thirdparty_provider, loaded from its file (not installed)."""
    path = Path(__file__).parent / "thirdparty_provider" / "salesinbox_acme_mail" / "__init__.py"
    spec = importlib.util.spec_from_file_location("acme_mail_plugin_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(module, name="salesinbox_acme_mail")
    return ProviderRegistry(pm)


async def test_a_thirdparty_provider_gets_oauth_settings_with_no_core_change(db: Settings, admin: User) -> None:
    acme = thirdparty_registry()
    secrets = SecretBox.from_settings(db)
    row = await set_oauth_client(
        admin,
        OAuthClientInput(provider="acme_mail", client_id="acme-client", client_secret=SECRET,
                         userinfo_url="https://idp.acme.test/me"),
        registry=acme, secrets=secrets, settings=db,
    )
    assert (row.authorization_url, row.token_url) == (
        "https://auth.acme-mail.example/oauth2/authorize", "https://auth.acme-mail.example/oauth2/token"
    )
    assert row.userinfo_url == "https://idp.acme.test/me" and row.overrides == ("userinfo_url",)
    assert row.server.address_claims == ("mailbox",) and row.tenant is None
    _, secret = await oauth_client_for_sign_in(
        admin.organisation_id, "acme_mail", registry=acme, secrets=secrets, settings=db
    )
    assert secret.reveal() == SECRET
    # Once the plugin is uninstalled its client is inert: not listed, still removable.
    assert await list_oauth_clients(admin, registry=registry(), settings=db) == []
    assert [r.provider for r in await list_oauth_clients(admin, registry=acme, settings=db)] == ["acme_mail"]
    assert await delete_oauth_client(admin, "acme_mail") is True
    assert await raw_rows() == []
