"""The typed settings object read from SALESINBOX_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from salesinbox.core.errors import SalesInboxError
from salesinbox.core.settings import Settings


def test_defaults_need_no_configuration(tmp_path: Path) -> None:
    settings = Settings.from_env({"SALESINBOX_DATA_DIR": str(tmp_path)})
    assert settings.effective_database_url == f"sqlite://{tmp_path / 'salesinbox.sqlite3'}"
    assert settings.effective_secret_key_file == tmp_path / "secret.key"
    assert settings.allow_private_hosts is False and settings.allow_plaintext is False


def test_typed_values_are_parsed() -> None:
    settings = Settings.from_env({
        "SALESINBOX_PORT": "9000", "SALESINBOX_MAIL_TIMEOUT": "2.5", "SALESINBOX_ALLOW_PRIVATE_HOSTS": "yes",
        "SALESINBOX_DATABASE_URL": "postgres://u@h/db", "SALESINBOX_EXTRA_CA_FILE": "/etc/ca.pem",
    })
    assert settings.port == 9000 and settings.mail_timeout == 2.5 and settings.allow_private_hosts is True
    assert settings.effective_database_url == "postgres://u@h/db"
    assert settings.extra_ca_file == Path("/etc/ca.pem")


@pytest.mark.parametrize(("name", "value"), [("SALESINBOX_PORT", "eighty"), ("SALESINBOX_PORT", "-1"),
                                             ("SALESINBOX_GRAPHIQL", "maybe"), ("SALESINBOX_MAIL_TIMEOUT", "0"),
                                             ("SALESINBOX_TOKEN_CACHE_SECONDS", "-1")])
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(SalesInboxError) as caught:
        Settings.from_env({name: value})
    assert caught.value.field == name and name in caught.value.message


def test_zero_turns_the_token_cache_off() -> None:
    assert Settings.from_env({"SALESINBOX_TOKEN_CACHE_SECONDS": "0"}).token_cache_seconds == 0


def test_with_overrides() -> None:
    assert Settings().with_overrides(port=1234).port == 1234
