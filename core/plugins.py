"""The plugin host: builds the pluggy manager that every provider question goes through.

Built-in providers are loaded exactly like third-party ones, by module name, so the core never
imports :mod:`salesinbox.plugins` statically (``core`` must not depend on ``plugins``). The
order of registration is: the hookspecs, the core's ``trylast`` defaults, the built-in
plugins, then third-party plugins found through the entry-point group
``salesinbox.providers``.

Ask provider questions through :class:`salesinbox.core.provider_registry.ProviderRegistry`,
which validates input and turns the hook results into typed errors.
"""

from __future__ import annotations

import importlib

import pluggy

from . import hookspecs
from .default_hooks import CoreDefaults

#: the entry-point group third-party provider packages declare in their ``pyproject.toml``
ENTRYPOINT_GROUP = "salesinbox.providers"

#: the built-in provider plugins, by module name, in the order a form lists them
DEFAULT_PLUGINS: tuple[str, ...] = (
    "salesinbox.plugins.zoho_mail",
    "salesinbox.plugins.gmail",
    "salesinbox.plugins.microsoft",  # Outlook.com, then Office 365
    "salesinbox.plugins.yahoo",
    "salesinbox.plugins.custom_imap",
)

#: the name the core defaults are registered under (for ``pm.get_plugin``)
CORE_DEFAULTS_NAME = "salesinbox.core.default_hooks"


def get_plugin_manager(load_entrypoints: bool = True) -> pluggy.PluginManager:
    """Build a new, fully loaded plugin manager.

    Every call returns a fresh manager (no module-level state), so tests and tools can build
    one with or without third-party plugins and register extra plugins of their own.

    :param load_entrypoints: also load third-party plugins declared under the entry-point
        group ``salesinbox.providers``; pass ``False`` to get the built-ins only.
    :return: a manager with the hookspecs, the core defaults and the plugins registered.
    :raises pluggy.PluginValidationError: when a plugin implements a hook with a wrong
        signature or a ``salesinbox_*`` hook that does not exist (a typo would otherwise be
        ignored silently).
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    # The defaults need the manager to read a provider's ProviderSpec (presets, username
    # format), so they are an object holding it rather than module-level functions.
    pm.register(CoreDefaults(pm), name=CORE_DEFAULTS_NAME)
    for module_name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(module_name), name=module_name)
    if load_entrypoints:
        pm.load_setuptools_entrypoints(ENTRYPOINT_GROUP)
    pm.check_pending()
    return pm
