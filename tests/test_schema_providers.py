"""Provider presets through GraphQL: providers, provider, detectProvider, providerServers."""

from __future__ import annotations

from .conftest import GraphQLClient

FIELDS = """key displayName incoming { host port security } outgoing { host port security } authKinds
usernameFormat domains options { name label default choices { value label } } appPasswordUrl helpUrl notes
userSuppliesServers"""


async def test_providers_lists_the_six_built_ins(api: GraphQLClient, rep_token: str) -> None:
    data = await api.ok(f"{{ providers {{ {FIELDS} }} }}", token=rep_token)
    by_key = {p["key"]: p for p in data["providers"]}
    assert {"zoho_mail", "gmail", "outlook", "office365", "yahoo", "custom_imap"} <= set(by_key)
    assert by_key["gmail"]["incoming"] == {"host": "imap.gmail.com", "port": 993, "security": "SSL"}
    assert by_key["custom_imap"]["incoming"] is None and by_key["custom_imap"]["userSuppliesServers"]
    assert by_key["outlook"]["authKinds"] == ["XOAUTH2"]
    assert {o["name"] for o in by_key["zoho_mail"]["options"]} >= {"region"}


async def test_provider_by_key_and_unknown(api: GraphQLClient, rep_token: str) -> None:
    data = await api.ok('{ provider(key: "yahoo") { displayName outgoing { host port } } }', token=rep_token)
    assert data["provider"]["outgoing"] == {"host": "smtp.mail.yahoo.com", "port": 465}
    error = await api.error('{ provider(key: "nope") { key } }', token=rep_token)
    assert error["extensions"]["code"] == "UNKNOWN_PROVIDER"
    assert "gmail" in error["message"]


async def test_detect_provider(api: GraphQLClient, rep_token: str) -> None:
    data = await api.ok(
        '{ a: detectProvider(email: "x@Hotmail.com") { key } b: detectProvider(email: "x@acme.test") { key } }',
        token=rep_token,
    )
    assert data == {"a": {"key": "outlook"}, "b": None}


async def test_provider_servers_resolve_zoho_regions(api: GraphQLClient, rep_token: str) -> None:
    query = """query($o: [ProviderOptionValue!]) {
               providerServers(provider: "zoho_mail", email: "a@acme.eu", options: $o)
               { incoming { host port security } outgoing { host port security } } }"""
    data = await api.ok(query, {"o": [{"name": "region", "value": "eu"}]}, token=rep_token)
    assert data["providerServers"]["incoming"]["host"].endswith("zoho.eu")
    error = await api.error(query, {"o": [{"name": "region", "value": "mars"}]}, token=rep_token)
    assert error["extensions"]["code"] == "INVALID_INPUT"
    custom = await api.ok(
        '{ providerServers(provider: "custom_imap", email: "a@b.com") { incoming { host } } }', token=rep_token
    )
    assert custom["providerServers"] is None
