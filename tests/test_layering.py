"""The core's layering, as each subpackage's docstring states it ("May import: …"), checked
on the source: every import of a ``salesinbox.core`` module from another is allowed by the
table below, and nothing in the core imports the web layer (``salesinbox.schema``) or a
plugin. Imports under ``if TYPE_CHECKING:`` are for annotations only and not counted."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "core"

#: modules at the top of salesinbox.core that every subpackage may use
SHARED = {"errors", "settings", "credentials", "private_files", "log_limits", "address_normalisation"}

#: what each subpackage may import besides itself and SHARED: a subpackage, or one module of it
ALLOWED: dict[str, set[str]] = {
    "db": {"plugin_host.providers"},
    "parsing": set(),  # stricter still, see test_parsing_loads_no_more_of_the_core
    "plugin_host": {"oauth.oauth_urls"},
    "transport": {"plugin_host.providers"},
    "crm": {"db"},
    "mail_accounts": {"db", "crm", "plugin_host", "transport"},
    "observability": {"db"},
    "oauth": {"db", "crm", "plugin_host", "mail_accounts", "transport", "observability"},
    "sharing": {"db", "crm", "mail_accounts"},
    "sync": {"db", "crm", "plugin_host", "transport", "parsing", "mail_accounts", "oauth",
             "observability", "sending.sent_copy"},
    "sending": {"db", "crm", "plugin_host", "transport", "parsing", "oauth", "sharing.visibility",
                "sync.store", "sync.message_flags"},
    "scale_out": {"db", "crm", "plugin_host", "transport", "mail_accounts", "oauth", "observability",
                  "sync", "sending"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(CORE).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__")


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every runtime import in ``path`` (TYPE_CHECKING skipped)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = ["salesinbox", "core", *_module_name(path).split(".")]
    if path.name != "__init__.py":
        package = package[:-1]
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            if node.module is None:  # from . import x: each name is a module
                found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, module))
    return found


def _core_target(module: str) -> str | None:
    prefix = "salesinbox.core."
    return module[len(prefix):] if module.startswith(prefix) else None


def test_the_core_imports_neither_the_web_layer_nor_plugins() -> None:
    bad = [f"{path.relative_to(CORE.parent)}:{line}: {module}"
           for path in CORE.rglob("*.py") for line, module in _imports(path)
           if module.startswith(("salesinbox.schema", "salesinbox.plugins", "starlette", "strawberry"))]
    assert not bad, "\n".join(bad)


def test_each_subpackage_imports_only_what_its_docstring_allows() -> None:
    bad = []
    for path in CORE.rglob("*.py"):
        name = _module_name(path)
        package = name.split(".")[0]
        if package not in ALLOWED or name.startswith("db.migrations"):
            continue
        for line, module in _imports(path):
            target = _core_target(module)
            if target is None or target.split(".")[0] in (package, *SHARED):
                continue
            allowed = ALLOWED[package]
            if package == "parsing" and target.split(".")[0] not in {"errors", "address_normalisation"}:
                bad.append(f"core/{path.relative_to(CORE)}:{line}: {module}")
            elif target.split(".")[0] not in allowed and ".".join(target.split(".")[:2]) not in allowed:
                bad.append(f"core/{path.relative_to(CORE)}:{line}: {module}")
    assert not bad, "imports the layering does not allow:\n" + "\n".join(bad)


def test_the_shared_modules_import_only_each_other() -> None:
    bad = [f"core/{name}.py:{line}: {module}"
           for name in SHARED for line, module in _imports(CORE / f"{name}.py")
           if (target := _core_target(module)) is not None and target.split(".")[0] not in SHARED]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_imports() -> None:
    """The checks above cannot pass vacuously: known imports are found and resolved."""
    found = {module for _, module in _imports(CORE / "sync" / "engine.py")}
    assert "salesinbox.core.sync.store" in found and "salesinbox.core.transport.imap" in found
    assert "salesinbox.core.errors" in {module for _, module in _imports(CORE / "crm" / "records.py")}
