"""Hook tracing (``SALESINBOX_TRACE_HOOKS``): a log line naming the plugin behind each answer.

pluggy's hook-call monitoring sees a call's overall result, not which plugin gave it. So
when tracing is on, each plugin is registered through a stand-in whose hook implementations
are the plugin's own, wrapped to log every answer that is not ``None``: for a firstresult
hook that is the one answer that won (pluggy stops there), for ``salesinbox_providers`` each
plugin's list. A hook-call monitor logs the firstresult calls no plugin answered.

Log lines go to the ``salesinbox.plugins.trace`` logger at INFO; arguments and answers are
cut to about 200 characters each (:func:`~salesinbox.core.log_limits.short_repr`). Hooks get
no secrets (see :mod:`.hookspecs`), so none can reach these lines.
"""

from __future__ import annotations

import functools
import inspect
import logging
import types
from collections.abc import Callable, Mapping, Sequence

import pluggy

from ..log_limits import short_repr
from .providers import ProviderSpec

log = logging.getLogger("salesinbox.plugins.trace")


def traced(pm: pluggy.PluginManager, plugin: object, plugin_name: str) -> object:
    """A stand-in for ``plugin`` to register in ``pm`` instead: the same hook
    implementations (found as pluggy finds them, with the same options), each logging its
    answers."""
    stand_in = types.SimpleNamespace()
    marker = f"{pm.project_name}_impl"
    for attribute in dir(plugin):
        options = pm.parse_hookimpl_opts(plugin, attribute)
        if options is None:
            continue
        function = _logging_answers(getattr(plugin, attribute), attribute, plugin_name)
        setattr(function, marker, options)
        setattr(stand_in, attribute, function)
    return stand_in


def _logging_answers(
    function: Callable[..., object], hook_name: str, plugin_name: str
) -> Callable[..., object]:
    """``function``, logging each answer that is not ``None`` and each exception it raises."""
    parameters = list(inspect.signature(function).parameters)

    @functools.wraps(function)  # pluggy reads the argument names through __wrapped__
    def logging_answers(*args: object, **kwargs: object) -> object:
        def call() -> str:
            return _describe(hook_name, {**dict(zip(parameters, args, strict=False)), **kwargs})

        try:
            answer = function(*args, **kwargs)
        except Exception as error:
            log.info("%s raised in plugin %s: %s", call(), plugin_name, short_repr(error))
            raise
        if answer is not None:
            log.info("%s answered by plugin %s: %s", call(), plugin_name, _describe_answer(answer))
        return answer

    return logging_answers


def log_unanswered_calls(pm: pluggy.PluginManager) -> Callable[[], None]:
    """Log each firstresult hook call of ``pm`` that no plugin answered (all gave ``None``).

    :return: the function that stops it (pluggy's undo).
    """

    def before(hook_name: str, hook_impls: Sequence[object], kwargs: Mapping[str, object]) -> None:
        pass

    def after(
        outcome: pluggy.Result[object],
        hook_name: str,
        hook_impls: Sequence[object],
        kwargs: Mapping[str, object],
    ) -> None:
        spec = getattr(pm.hook, hook_name).spec
        firstresult = spec is not None and spec.opts.get("firstresult", False)
        if firstresult and outcome.exception is None and outcome.get_result() is None:
            log.info("%s: no plugin answered", _describe(hook_name, kwargs))

    return pm.add_hookcall_monitoring(before, after)


def _describe_answer(answer: object) -> str:
    """``answer`` cut short; a provider declaration as its keys (a whole spec is long)."""
    if isinstance(answer, list) and answer and all(isinstance(a, ProviderSpec) for a in answer):
        return "ProviderSpec " + ", ".join(spec.key for spec in answer)
    return short_repr(answer)


def _describe(hook_name: str, arguments: Mapping[str, object]) -> str:
    """``hook(name=value, …)`` with each value cut short."""
    listed = ", ".join(f"{name}={short_repr(value)}" for name, value in arguments.items())
    return f"{hook_name}({listed})"
