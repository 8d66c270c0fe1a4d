"""Address and domain normalisation: docs/records-and-links.md#address-matching."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from salesinbox.core.address_normalisation import (
    domain_of,
    email_domain_lenient,
    normalise_domain,
    normalise_email,
    normalise_email_lenient,
    normalise_optional_email,
)
from salesinbox.core.errors import SalesInboxError


def test_case_and_spaces_do_not_matter() -> None:
    assert normalise_email("  Jane.Doe@ACME.Com ") == "jane.doe@acme.com"
    assert normalise_email("jane.doe@acme.com") == normalise_email("JANE.DOE@acme.COM")


def test_idn_domains_match_their_ascii_form() -> None:
    assert normalise_email("info@Bücher.example") == "info@xn--bcher-kva.example"
    assert normalise_domain("xn--bcher-kva.example") == normalise_domain("BÜCHER.example")


def test_domain_accepts_leading_at_and_trailing_dot() -> None:
    assert normalise_domain(" @Acme.COM. ") == "acme.com"
    assert domain_of("a@acme.com") == "acme.com"


@pytest.mark.parametrize("bad", ["", "plain", "@acme.com", "a@", "a@b", "a b@c.com", "a@-x.com", "a@x..com",
                                 "<a@b.com>", "a@" + "x" * 64 + ".com", "x" * 65 + "@a.com"])
def test_invalid_addresses_are_refused(bad: str) -> None:
    with pytest.raises(SalesInboxError) as caught:
        normalise_email(bad, field="primaryEmail")
    assert caught.value.field == "primaryEmail"


@pytest.mark.parametrize(("written", "meaning"), [
    ('"john.doe"@Example.com', "john.doe@example.com"),  # RFC 5321 4.1.2: the same mailbox
    ('"John..Doe"@example.com', "john..doe@example.com"),  # as accepted unquoted
    ('"Sales Team"@example.com', '"sales team"@example.com'),  # needs its quotes
    ('"a\\"b"@example.com', '"a\\"b"@example.com'),  # a quoted-pair stays escaped
    ('"a\\x"@example.com', "ax@example.com"),  # a needless one does not
    ('"a@b"@example.com', '"a@b"@example.com'),
    ("ops@[192.0.2.10]", "ops@[192.0.2.10]"),  # RFC 5321 4.1.3 address literals
    ("ops@[IPv6:2001:DB8:0:0:0:0:0:1]", "ops@[IPv6:2001:db8::1]"),
    ("ops@[ipv6:::1]", "ops@[IPv6:::1]"),
])
def test_quoted_local_parts_and_domain_literals(written: str, meaning: str) -> None:
    assert normalise_email(written) == meaning
    assert normalise_email(meaning) == meaning


@pytest.mark.parametrize("bad", ['""@example.com', '"a"b"@example.com', '"tab\there"@example.com',
                                 '"nul\x00"@example.com', "x@[999.1.1.1]", "x@[example.com]",
                                 "x@[IPv6:1.2.3.4]", "x@[192.0.2.1", 'a"b@example.com'])
def test_invalid_quoted_local_parts_and_literals_are_refused(bad: str) -> None:
    with pytest.raises(SalesInboxError):
        normalise_email(bad)


def test_optional_blank_is_none() -> None:
    assert normalise_optional_email("  ", field="f") is None
    assert normalise_optional_email(None, field="f") is None


@given(st.emails())
def test_normalising_is_idempotent(address: str) -> None:
    try:
        once = normalise_email(address)
    except SalesInboxError:
        return  # hypothesis makes some RFC-valid addresses we deliberately refuse
    assert normalise_email(once) == once
    assert normalise_email(address.upper()) == once


# -- the lenient variant: never raises, agrees with the strict one on valid addresses --------


@pytest.mark.parametrize(
    ("text", "email", "domain"),
    [
        ("  Bob@GMAIL.com ", "Bob@gmail.com", "gmail.com"),  # the local part keeps its case
        ("bob@", "bob@", None),
        ("@gmail.com", "@gmail.com", None),
        ("", "", None),
        ("   ", "", None),
        ("Bob", "Bob", None),
        ("bob@Gmail.com.", "bob@gmail.com.", "gmail.com"),
        ("bob@ Gmail.com", "bob@ gmail.com", "gmail.com"),
        ("a@b@Example.COM", "a@b@example.com", "example.com"),  # the last @ splits
        ("bob@Bücher.example", "bob@bücher.example", "bücher.example"),  # no IDNA
        ("bob@ｇｍａｉｌ.com", "bob@ｇｍａｉｌ.com", "ｇｍａｉｌ.com"),  # not folded to gmail.com
        ("bob@com", "bob@com", "com"),  # not checked
        ("bob@...", "bob@...", None),
    ],
)
def test_lenient_answers_on_half_typed_text(text: str, email: str, domain: str | None) -> None:
    assert normalise_email_lenient(text) == email
    assert email_domain_lenient(text) == domain


def _agree_with_strict(address: str) -> None:
    try:
        strict = normalise_email(address)
    except SalesInboxError:
        return  # only addresses the strict function accepts are compared
    lenient = normalise_email_lenient(address)
    assert normalise_email(lenient) == strict
    if not lenient.startswith('"'):  # a quoted local part is compared by its content
        assert lenient.rpartition("@")[0].lower() == strict.rpartition("@")[0]  # case aside
    domain = email_domain_lenient(address)
    assert domain is not None
    if domain.startswith("["):  # a domain literal is no domain name
        return
    assert normalise_domain(domain) == domain_of(strict)
    if domain.isascii():
        assert domain == domain_of(strict)


def test_lenient_and_strict_agree_on_examples() -> None:
    for address in ["  Jane.Doe@ACME.Com ", "info@Bücher.example", "a@xn--bcher-kva.example",
                    "bob@gmail.com.", "bob@ gmail.com", "x@Sub.Domain.Example.ORG",
                    '"J.Doe"@Example.com', '"Sales Team"@example.com', "ops@[192.0.2.10]"]:
        _agree_with_strict(address)
    assert email_domain_lenient("info@Bücher.example") == "bücher.example"


@given(st.emails())
def test_lenient_and_strict_agree_on_valid_addresses(address: str) -> None:
    _agree_with_strict(address)
    _agree_with_strict(f" {address.upper()}. ")


_AROUND_AT = st.text(alphabet=st.sampled_from(list("aZ.@ -_\t\u00fc\u0130\uff47\u3002")), max_size=12)


@given(st.one_of(st.text(), _AROUND_AT, st.builds("{}@{}".format, st.text(), st.text())))
def test_lenient_never_raises(text: str) -> None:
    email = normalise_email_lenient(text)
    domain = email_domain_lenient(text)
    assert email == email.strip()
    assert normalise_email_lenient(email) == email
    assert domain is None or (domain and domain == domain.lower() and not domain.endswith("."))
    _agree_with_strict(text)
