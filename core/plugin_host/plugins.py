"""The plugin host: builds the pluggy manager that every provider question goes through.

Built-in providers are loaded exactly like third-party ones, by module name, so the core never
imports :mod:`salesinbox.plugins` statically (``core`` must not depend on ``plugins``). The
order of registration is: the hookspecs, the core's ``trylast`` defaults, the built-in
plugins, then third-party plugins found through the entry-point group
``salesinbox.providers``.

A plugin named in ``SALESINBOX_DISABLED_PLUGINS`` (by entry-point name or module name, like
pytest's ``-p no:NAME``) is not imported at all, so a broken package can be set aside
without uninstalling it; a plugin that fails to load stops the start with a message naming
it and that variable. ``SALESINBOX_TRACE_HOOKS`` logs which plugin answered each hook call
(:mod:`.hook_tracing`).

Ask provider questions through :class:`salesinbox.core.plugin_host.provider_registry.ProviderRegistry`,
which validates input and turns the hook results into typed errors.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import pluggy

from . import hookspecs
from .default_hooks import CoreDefaults
from .hook_tracing import log_unanswered_calls, traced

#: the entry-point group third-party provider packages declare in their ``pyproject.toml``
ENTRYPOINT_GROUP = "salesinbox.providers"

#: the built-in provider plugins, by module name, in the order a form lists them
DEFAULT_PLUGINS: tuple[str, ...] = (
    "salesinbox.plugins.zoho_mail",
    "salesinbox.plugins.gmail",
    "salesinbox.plugins.outlook",
    "salesinbox.plugins.office365",
    "salesinbox.plugins.yahoo",
    "salesinbox.plugins.custom_imap",
)

#: the name the core defaults are registered under (for ``pm.get_plugin``)
CORE_DEFAULTS_NAME = "salesinbox.core.plugin_host.default_hooks"

#: the setting (``Settings.disabled_plugins``) that lists the plugins not to load
BLOCK_VARIABLE = "SALESINBOX_DISABLED_PLUGINS"

log = logging.getLogger("salesinbox.plugins")


class PluginLoadError(RuntimeError):
    """A provider plugin could not be imported or registered (an import error, a hook with a
    wrong name or signature). The message names the plugin and how to start without it; the
    plugin's own error is the ``__cause__``."""


@dataclass(frozen=True)
class _Candidate:
    """A plugin that may be loaded: its registration name, the names that block it, where it
    comes from (for messages) and how to import it."""

    name: str
    blocked_by: frozenset[str]
    origin: str
    load: Callable[[], object]


def get_plugin_manager(
    load_entrypoints: bool = True, *, blocked: Iterable[str] = (), trace_hooks: bool = False
) -> pluggy.PluginManager:
    """Build a new, fully loaded plugin manager.

    Every call returns a fresh manager (no module-level state), so tests and tools can build
    one with or without third-party plugins and register extra plugins of their own.

    :param load_entrypoints: also load third-party plugins declared under the entry-point
        group ``salesinbox.providers``; pass ``False`` to get the built-ins only.
    :param blocked: plugins not to load, by entry-point name or module name (the built-ins:
        ``salesinbox.plugins.gmail``…); they are not imported, and pluggy refuses to
        register anything under their names. A name that matches no plugin is logged.
    :param trace_hooks: log which plugin answered each hook call (:mod:`.hook_tracing`).
    :return: a manager with the hookspecs, the core defaults and the plugins registered.
    :raises PluginLoadError: when a plugin that is not blocked fails to import, implements a
        hook with a wrong signature or a ``salesinbox_*`` hook that does not exist (a typo
        would otherwise be ignored silently).
    """
    blocked_names = frozenset(name.strip() for name in blocked if name.strip())
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    if trace_hooks:
        log_unanswered_calls(pm)
    # The defaults need the manager to read a provider's ProviderSpec (presets, username
    # format), so they are an object holding it rather than module-level functions.
    defaults = CoreDefaults(pm)
    pm.register(traced(pm, defaults, CORE_DEFAULTS_NAME) if trace_hooks else defaults,
                name=CORE_DEFAULTS_NAME)
    candidates = [*_builtins(), *(_entry_points() if load_entrypoints else ())]
    for candidate in candidates:
        if candidate.blocked_by & blocked_names:
            pm.set_blocked(candidate.name)
            log.info("Provider plugin %s (%s) not loaded: %s names it", candidate.name,
                     candidate.origin, BLOCK_VARIABLE)
        elif not pm.has_plugin(candidate.name):  # an entry point found twice on sys.path
            _register(pm, candidate, blocked_names, trace_hooks)
    unmatched = blocked_names.difference(*(c.blocked_by for c in candidates))
    if unmatched:
        log.warning("%s names %s, which is no provider plugin here: the plugins are %s",
                    BLOCK_VARIABLE, ", ".join(sorted(unmatched)),
                    ", ".join(c.name for c in candidates))
    return pm


def _builtins() -> Iterator[_Candidate]:
    for module_name in DEFAULT_PLUGINS:
        yield _Candidate(module_name, frozenset({module_name}), "built-in",
                         functools.partial(importlib.import_module, module_name))


def _entry_points() -> Iterator[_Candidate]:
    """The group's entry points of every installed distribution, without importing them
    (as pluggy's ``load_setuptools_entrypoints`` finds them)."""
    for dist in importlib.metadata.distributions():
        for entry_point in dist.entry_points:
            if entry_point.group == ENTRYPOINT_GROUP:
                yield _Candidate(
                    entry_point.name,
                    frozenset({entry_point.name, entry_point.module}),
                    f"entry point {entry_point.name} = {entry_point.value} of package {dist.name}",
                    entry_point.load,
                )


def _register(pm: pluggy.PluginManager, candidate: _Candidate, blocked: frozenset[str],
              trace_hooks: bool) -> None:
    """Import and register ``candidate``, or raise :class:`PluginLoadError` naming it."""
    try:
        plugin = candidate.load()
        pm.register(traced(pm, plugin, candidate.name) if trace_hooks else plugin,
                    name=candidate.name)
        pm.check_pending()  # a hook that no spec declares: a typo, in this plugin
    except Exception as error:
        raise PluginLoadError(
            f"Provider plugin {candidate.name} ({candidate.origin}) failed to load: "
            f"{type(error).__name__}: {error}. Fix or uninstall it, or "
            f"{start_without(blocked | {candidate.name})}"
        ) from error


def start_without(plugin_names: Iterable[str]) -> str:
    """The advice that ends an error about a broken plugin: the setting that blocks
    ``plugin_names`` (with the ones already blocked)."""
    return f"start without it: {BLOCK_VARIABLE}={','.join(sorted(plugin_names))}"
