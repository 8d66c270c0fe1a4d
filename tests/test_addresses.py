"""Address and domain normalisation: the matching rule of SPEC §2."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from salesinbox.core.addresses import domain_of, normalise_domain, normalise_email, normalise_optional_email
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
