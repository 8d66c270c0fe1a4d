"""The package installs as salesinbox.schema.command_line / .core / .schema / .plugins.<name>, with its data files."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: use the venv's setuptools, so the build needs no network.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = out.glob("salesinbox-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_wheel_maps_top_level_folders_under_salesinbox(wheel_names: set[str]) -> None:
    for expected in ("salesinbox/core/db/models.py", "salesinbox/core/db/migrations/0001_initial.py",
                     "salesinbox/schema/asgi_app.py", "salesinbox/schema/command_line/commands.py",
                     "salesinbox/core/plugin_host/provider_contract.py", "salesinbox/plugins/gmail/__init__.py",
                     "salesinbox/plugins/custom_imap/__init__.py"):
        assert expected in wheel_names
    assert not any(name.startswith(("cli/", "core/", "schema/", "plugins/", "tests/")) for name in wheel_names)


def test_wheel_carries_every_package(wheel_names: set[str]) -> None:
    """Every folder with an ``__init__.py`` under core/, schema/ and plugins/ is in the wheel
    (pyproject.toml lists the packages one by one: a new subpackage must be added there)."""
    for top in ("core", "schema", "plugins"):
        for init in (ROOT / top).rglob("__init__.py"):
            installed = "salesinbox/" + init.relative_to(ROOT).as_posix()
            assert installed in wheel_names, f"{installed} missing: add its package to pyproject.toml"

def test_wheel_carries_every_builtin_plugin(wheel_names: set[str]) -> None:
    from salesinbox.core.plugin_host.plugins import DEFAULT_PLUGINS

    missing = [m for m in DEFAULT_PLUGINS if f"{m.replace('.', '/')}/__init__.py" not in wheel_names]
    assert not missing, f"list these in pyproject.toml's packages: {missing}"


def test_wheel_carries_data_files(wheel_names: set[str]) -> None:
    assert "salesinbox/schema/schema.graphql" in wheel_names
    assert "salesinbox/schema/static/graphiql_app.js" in wheel_names
    assert "salesinbox/schema/static/graphiql/graphiql@3.8.3/graphiql.min.js" in wheel_names
    assert "salesinbox/schema/static/graphiql/@graphiql/plugin-explorer@1.0.2/dist/index.umd.js" in wheel_names


def test_console_script_is_declared(wheel_names: set[str]) -> None:
    assert any(name.endswith(".dist-info/entry_points.txt") for name in wheel_names)
    completed = subprocess.run([Path(sys.executable).with_name("salesinbox"), "--help"],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0 and "create-admin" in completed.stdout
    assert "check-plugins" in completed.stdout
    assert "``" not in completed.stdout, "the help is plain text, not reStructuredText"
