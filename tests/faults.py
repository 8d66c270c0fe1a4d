"""Faults for the sync tests, and the seed and tally of tests/test_fault_injection.py.

The seed is new for every run unless ``SALESINBOX_FAULT_SEED`` names one; the tally is
printed at the end of the run (see ``pytest_terminal_summary`` in conftest.py).
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from salesinbox.core.sync import folder_sync

SEED_ENV = "SALESINBOX_FAULT_SEED"
_run_seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(2**32))


def fault_seed() -> int:
    """The seed of this run's fault injection."""
    return _run_seed


class FaultTally:
    """How many faults of each kind this run injected."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()

    def record(self, kind: str) -> None:
        self.kinds[kind] += 1

    def summary(self) -> str | None:
        """One line for the end of the run, or None when no fault was injected."""
        if not self.kinds:
            return None
        detail = ", ".join(f"{kind} {count}" for kind, count in sorted(self.kinds.items()))
        return f"fault injection: {sum(self.kinds.values())} faults ({detail}), seed {_run_seed}"


FAULTS = FaultTally()


class Killed(BaseException):
    """Process death in process: nothing catches it, nothing is saved on the way out."""


@contextmanager
def dying_after_batches(batches: int) -> Iterator[None]:
    """Within the block, a sync dies (raises :class:`Killed`) right after committing its
    ``batches``-th batch: what a SIGKILL leaves, without the cost of a process."""
    real_store = folder_sync.store_batch  # type: ignore[attr-defined]  # patched where the sync uses it
    committed = 0

    async def store_then_die(*args: Any, **kwargs: Any) -> Any:
        nonlocal committed
        result = await real_store(*args, **kwargs)
        committed += 1
        if committed == batches:
            raise Killed
        return result

    folder_sync.store_batch = store_then_die  # type: ignore[attr-defined]  # patched where sync uses it
    try:
        yield
    finally:
        folder_sync.store_batch = real_store  # type: ignore[attr-defined]  # patched where sync uses it
