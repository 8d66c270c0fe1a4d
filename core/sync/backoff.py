"""Exponential backoff between retries, shared by the sync scheduler and the IDLE watcher."""

from __future__ import annotations


def backoff_delay(failures: int, *, base: float, cap: float) -> float:
    """Seconds to wait after ``failures`` consecutive failures: base·2ⁿ⁻¹, at most ``cap``."""
    return min(cap, base * 2.0 ** max(0, failures - 1))
