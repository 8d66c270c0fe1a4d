"""What a sync pass tells the operator: log lines at INFO and the sync metrics.

- an initial pass (the first sync of an account, possibly hours of mail) logs its start, its
  progress every :data:`PROGRESS_INTERVAL` seconds per folder, and its end;
- every pass ends with one line: duration, new messages, folders, failed folders, state; an
  incremental pass logs its start at DEBUG only (its end line says it all);
- :data:`~..observability.metrics.SYNC_PASSES` and ``SYNC_PASS_DURATION`` get every pass,
  ``SYNC_MESSAGES_STORED`` every stored batch.

Accounts are named by id and folders by their (bounded) name: never an address, a credential
or anything of a message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from ..db.models import SyncState
from ..log_limits import short_repr
from ..observability.metrics import SYNC_MESSAGES_STORED, SYNC_PASS_DURATION, SYNC_PASSES

log = logging.getLogger("salesinbox.core.sync.engine")

#: seconds between two progress lines of one folder's initial sync
PROGRESS_INTERVAL = 30.0


@dataclass
class PassLog:
    """One pass of ``account_id``: started now; :meth:`began`, :meth:`stored`, :meth:`ended`."""

    account_id: int
    started: float = field(default_factory=time.monotonic)
    initial: bool = False
    _last_progress: dict[str, float] = field(default_factory=dict)

    def began(self, *, initial: bool, folders: int) -> None:
        """The account is logged in and ``folders`` folders are about to be synced."""
        self.initial = initial
        kind = "initial sync" if initial else "incremental sync"
        log.log(logging.INFO if initial else logging.DEBUG, "Sync of account %s started: %s of %d folder(s)",
                self.account_id, kind, folders)

    def stored(self, folder: str, new: int, stored: int, total: int | None) -> None:
        """A batch of ``new`` messages of ``folder`` was committed; ``stored`` of ``total``
        are now in the store. Logs progress at most every :data:`PROGRESS_INTERVAL` s."""
        SYNC_MESSAGES_STORED.inc(new)
        now = time.monotonic()
        last = self._last_progress.setdefault(folder, self.started)
        if now - last >= PROGRESS_INTERVAL:
            self._last_progress[folder] = now
            of_total = f" of {total}" if total is not None else ""
            log.info("Sync of account %s, folder %s: %d%s messages stored", self.account_id,
                     short_repr(folder), stored, of_total)

    def ended(self, state: SyncState, *, new: int, folders: int, failed_folders: int) -> None:
        """The pass finished (some folders may have failed): one line and the metrics."""
        seconds = time.monotonic() - self.started
        outcome = ("needs_reauth" if state == SyncState.NEEDS_REAUTH
                   else "partial" if failed_folders else "complete")
        self._count(outcome, seconds)
        failed = f", {failed_folders} folder(s) failed (retried in 5 min)" if failed_folders else ""
        log.info("Sync of account %s done in %.1f s (%s): %d new message(s) in %d folder(s)%s; state %s",
                 self.account_id, seconds, "initial" if self.initial else "incremental", new, folders,
                 failed, state.value)

    def refused(self, by: str = "the mail server refused the login") -> None:
        """The login was refused (``by`` says by whom): the account waits for new credentials."""
        self._count("needs_reauth", time.monotonic() - self.started)
        log.info("Sync of account %s stopped: %s; the account needs new credentials (NEEDS_REAUTH)",
                 self.account_id, by)

    def failed(self, error: BaseException) -> None:
        """The pass raised (the scheduler logs why and retries): counted only."""
        outcome = "cancelled" if isinstance(error, asyncio.CancelledError) else "failed"
        self._count(outcome, time.monotonic() - self.started)

    def _count(self, outcome: str, seconds: float) -> None:
        SYNC_PASSES.labels(outcome).inc()
        SYNC_PASS_DURATION.observe(seconds)
