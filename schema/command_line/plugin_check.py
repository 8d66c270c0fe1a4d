"""``salesinbox check-plugins``: the provider plugin contract, run against what is installed.

A plugin author installs their plugin next to SalesInbox and runs this command: each plugin
(built-in or found through the ``salesinbox.providers`` entry points) gets one PASS or FAIL
line, and each failed check a line saying what is wrong. The checks themselves live in
:mod:`salesinbox.core.plugin_host.provider_contract`, which the test suite runs too.
"""

from __future__ import annotations

import importlib.metadata
from typing import TextIO

import pluggy

from salesinbox.core.plugin_host.plugins import ENTRYPOINT_GROUP, get_plugin_manager
from salesinbox.core.plugin_host.provider_contract import CHECKS, ProviderDeclarationError, check_plugins


def _plugin_label(pm: pluggy.PluginManager, name: str) -> str:
    """``name``, with the distribution that installed it (``acme_mail (salesinbox-acme-mail 1.0)``):
    plugins are registered under their entry point's name (core/plugin_host/plugins.py)."""
    if name.startswith("salesinbox.plugins."):
        return f"{name} (built in)"
    for dist in importlib.metadata.distributions():
        if any(ep.group == ENTRYPOINT_GROUP and ep.name == name for ep in dist.entry_points):
            return f"{name} ({dist.name} {dist.version})"
    return name


def check_installed_plugins(out: TextIO, pm: pluggy.PluginManager | None = None) -> int:
    """Check every provider of every installed plugin (or of ``pm``); write a report to
    ``out``. Returns the exit status: 0 when every plugin passes, 1 otherwise."""
    try:
        pm = pm or get_plugin_manager(load_entrypoints=True)
        reports = check_plugins(pm)
    except (ProviderDeclarationError, pluggy.PluginValidationError, ImportError) as error:
        print(f"FAIL  the plugins cannot be loaded: {type(error).__name__}: {error}", file=out)
        return 1
    for report in reports:
        verdict = "PASS" if report.passed else "FAIL"
        providers = ", ".join(report.providers) or "no providers"
        print(f"{verdict}  {_plugin_label(pm, report.plugin)}: {providers}; "
              f"{report.checks_run - len(report.failures)}/{report.checks_run} checks passed", file=out)
        for provider, check, problem in report.failures:
            print(f"      {provider}: {check}: {problem}", file=out)
    failed = [report for report in reports if not report.passed]
    print(f"{len(reports) - len(failed)} of {len(reports)} plugins keep the contract "
          f"({len(CHECKS)} checks per provider).", file=out)
    return 1 if failed else 0
