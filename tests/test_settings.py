"""The typed settings object read from SALESINBOX_* variables."""

from __future__ import annotations

import logging
import re
from dataclasses import fields
from pathlib import Path

import pytest

from salesinbox.core.errors import SalesInboxError
from salesinbox.core.settings import ENV_PREFIX, TEST_SUITE_VARIABLES, Settings, warn_about_unknown_variables


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


# -- unknown variables and the README table -------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parent.parent
VARIABLE = re.compile(r"SALESINBOX_[A-Z0-9_]*[A-Z0-9]")
SETTING_VARIABLES = {ENV_PREFIX + f.name.upper() for f in fields(Settings)}
#: misspelt on purpose, by the tests of the warning (here and in tests/test_plugin_loading.py)
DELIBERATE_TYPOS = {"SALESINBOX_DATABSE_URL", "SALESINBOX_TRACE_HOOK", "SALESINBOX_FROBNICATE",
                    "SALESINBOX_SECRETKEY"}


def test_an_unknown_variable_is_reported_with_the_closest_setting(caplog: pytest.LogCaptureFixture) -> None:
    environ = {
        "SALESINBOX_DATABSE_URL": "postgres://u:secret@h/db",  # a typo
        "SALESINBOX_TRACE_HOOK": "1",  # a missing letter
        "SALESINBOX_FROBNICATE": "yes",  # like nothing
        "SALESINBOX_PORT": "9000",
        "SALESINBOX_TEST_DATABASE_URL": "postgres://postgres@127.0.0.1/test",  # the test suite's
        "SALESINBOX_REQUIRE_SERVERS": "1",
        "SALESINBOXDATA_DIR": "/x",  # not our prefix: someone else's
        "HOME": "/root",
    }
    with caplog.at_level(logging.WARNING, logger="salesinbox.settings"):
        unknown = warn_about_unknown_variables(environ)
    assert unknown == {
        "SALESINBOX_DATABSE_URL": "SALESINBOX_DATABASE_URL",
        "SALESINBOX_FROBNICATE": None,
        "SALESINBOX_TRACE_HOOK": "SALESINBOX_TRACE_HOOKS",
    }
    messages = [record.getMessage() for record in caplog.records]
    assert messages[0] == ("SALESINBOX_DATABSE_URL is not a SalesInbox setting and is ignored: did you mean "
                           "SALESINBOX_DATABASE_URL? (the settings are listed in README.md, Configuration)")
    assert ("SALESINBOX_FROBNICATE is not a SalesInbox setting and is ignored: "
            "no setting has a similar name") in messages[1]
    assert len(messages) == 3
    assert not any("secret" in message for message in messages), "values are never logged"
    assert Settings.from_env(environ).port == 9000  # the known ones still apply


def test_the_cli_reports_an_unknown_variable_at_start(monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    from salesinbox.schema.command_line import main

    monkeypatch.setenv("SALESINBOX_SECRETKEY", "oops")
    with caplog.at_level(logging.WARNING, logger="salesinbox.settings"):
        assert main(["generate-key"]) == 0
    assert [record.getMessage().partition(" (")[0] for record in caplog.records] == [
        "SALESINBOX_SECRETKEY is not a SalesInbox setting and is ignored: did you mean SALESINBOX_SECRET_KEY?"]


def repository_variables(*patterns: str) -> dict[str, set[str]]:
    """Each SALESINBOX_* name found in the files matching ``patterns``, with where."""
    found: dict[str, set[str]] = {}
    for pattern in patterns:
        for path in REPO_ROOT.glob(pattern):
            if path.is_file():
                for name in VARIABLE.findall(path.read_text(encoding="utf-8", errors="replace")):
                    found.setdefault(name, set()).add(str(path.relative_to(REPO_ROOT)))
    return found


def test_every_variable_the_repository_uses_is_a_setting_or_a_test_suite_variable() -> None:
    """So a new test-suite variable is listed in TEST_SUITE_VARIABLES (else users running the
    tests would be told it is a typo), and no file names a setting that does not exist."""
    used = repository_variables("core/**/*.py", "schema/**/*.py", "plugins/**/*.py", "tests/**/*.py",
                                "scripts/**/*", ".ci/*", "bench/**/*.py", "README.md")
    strays = {name: where for name, where in used.items()
              if name not in SETTING_VARIABLES | TEST_SUITE_VARIABLES | DELIBERATE_TYPOS}
    assert not strays, f"neither a setting nor in TEST_SUITE_VARIABLES: {strays}"
    assert TEST_SUITE_VARIABLES <= set(used), "a test-suite variable nothing reads any more"
    assert not TEST_SUITE_VARIABLES & SETTING_VARIABLES


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    table = {name for line in section.splitlines() if line.startswith("| `SALESINBOX_")
             for name in VARIABLE.findall(line.split(" | ")[0])}
    assert SETTING_VARIABLES - table == set(), "document these settings in README.md, Configuration"
    assert table - SETTING_VARIABLES == set(), "the README documents settings that do not exist"


def test_disabled_plugins_is_a_comma_separated_list() -> None:
    settings = Settings.from_env({"SALESINBOX_DISABLED_PLUGINS": " acme_mail, salesinbox.plugins.gmail ,,"})
    assert settings.disabled_plugins == ("acme_mail", "salesinbox.plugins.gmail")
    assert Settings.from_env({}).disabled_plugins == ()
    assert Settings.from_env({}).trace_hooks is False
