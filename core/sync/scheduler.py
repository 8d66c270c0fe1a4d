"""Where syncs run: a small interface, and the in-process implementation used by default.

The server runs one asyncio task per account: it syncs, then waits for a trigger (new mail
seen by IDLE, a ``syncNow`` request, a credentials update) or the poll interval. Failures
back off exponentially up to a cap; a refused login waits for new credentials. With
``SALESINBOX_SYNC_RUNNER=workers`` the server uses another :class:`SyncScheduler` instead,
which hands requests to ``salesinbox worker`` processes (:mod:`..scale_out`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import CancelledError as FutureCancelled
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Protocol

from tortoise.exceptions import DoesNotExist

from ..db.models import Folder, MailAccount, SyncState
from ..db.orm_values import column_values
from ..errors import ErrorCode
from ..mail_accounts.stored_logins import stored_logins
from ..oauth.oauth_tokens import OAuthTokens, TokenEndpointUnavailable
from ..transport.server_login import ServerLogin
from .backoff import backoff_delay
from .engine import SyncServices, sync_account
from .idle import IdleTiming, offers_idle, watch_mailbox
from .imap_fetch import shutdown_parse_pool, start_parse_pool

log = logging.getLogger(__name__)


class SyncScheduler(Protocol):
    """What the API needs from whoever runs syncs."""

    async def start(self) -> None:
        """Begin syncing every connected account."""

    async def stop(self) -> None:
        """Stop all syncs (in-flight batches are committed or rolled back whole)."""

    def request_sync(self, account_id: int) -> None:
        """Sync ``account_id`` as soon as possible (starting to follow it if new)."""


class InProcessScheduler:
    """Runs syncs as tasks of the server's event loop, with IDLE watchers in threads
    (:mod:`.idle`, paced by ``idle_timing``) that wake an account's task on news."""

    def __init__(
        self,
        services: SyncServices,
        *,
        poll_interval: float = 300.0,
        backoff_base: float = 5.0,
        backoff_cap: float = 900.0,
        use_idle: bool = True,
        idle_timing: IdleTiming = IdleTiming(),  # noqa: B008 - frozen: one shared default is safe
    ) -> None:
        self.services = services
        self.poll_interval = poll_interval
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.use_idle = use_idle
        self.idle_timing = idle_timing
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._wake: dict[int, asyncio.Event] = {}
        self._stopping = threading.Event()

    async def start(self) -> None:
        # The parsing processes start now, not in the middle of the first sync.
        await asyncio.to_thread(start_parse_pool)
        for account_id in await column_values(MailAccount.all(), "id"):
            self.request_sync(account_id)

    async def stop(self) -> None:
        self._stopping.set()
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        await asyncio.to_thread(shutdown_parse_pool)

    def request_sync(self, account_id: int) -> None:
        if self._stopping.is_set():
            return
        self._wake.setdefault(account_id, asyncio.Event()).set()
        if account_id not in self._tasks or self._tasks[account_id].done():
            self._tasks[account_id] = asyncio.create_task(
                self._follow(account_id), name=f"sync-account-{account_id}"
            )

    async def _follow(self, account_id: int) -> None:
        wake = self._wake.setdefault(account_id, asyncio.Event())
        failures = 0
        idle_thread: threading.Thread | None = None
        idle_stop = threading.Event()  # ends this account's IDLE watcher
        try:
            while not self._stopping.is_set():
                wake.clear()
                wait: float | None = self.poll_interval
                try:
                    report = await sync_account(account_id, self.services)
                    failures = 0
                    if report.state == SyncState.NEEDS_REAUTH:
                        wait = None  # only new credentials (request_sync) wake it up
                        idle_stop.set()
                    elif self.use_idle and (idle_thread is None or not idle_thread.is_alive()):
                        idle_stop = threading.Event()
                        idle_thread = await self._start_idle(account_id, wake, idle_stop)
                except DoesNotExist:
                    return  # the account was disconnected
                except Exception as error:  # noqa: BLE001 - every failure is retried with backoff
                    failures += 1
                    wait = backoff_delay(failures, base=self.backoff_base, cap=self.backoff_cap)
                    log.warning("Sync of account %s failed (%s): retry in %.0f s", account_id, error, wait)
                    await record_retry(account_id, str(error), wait)
                try:
                    await asyncio.wait_for(wake.wait(), timeout=wait)
                except TimeoutError:
                    pass
        finally:
            idle_stop.set()

    async def _start_idle(
        self, account_id: int, wake: asyncio.Event, idle_stop: threading.Event
    ) -> threading.Thread | None:
        loop = asyncio.get_running_loop()
        login = await watch_login(account_id, self.services, loop)
        if login is None:
            return None

        def on_change() -> None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop is closed: the scheduler has stopped
                pass

        thread = threading.Thread(
            target=watch_mailbox,
            args=(login, self.services.policy, on_change, idle_stop, self.idle_timing),
            name=f"idle-account-{account_id}",
            daemon=True,
        )
        thread.start()
        return thread


async def record_retry(account_id: int, message: str, delay: float) -> None:
    """Note on the account's folders why its last pass failed and when it is retried."""
    retry_at = datetime.now(UTC) + timedelta(seconds=delay)
    await Folder.filter(account_id=account_id).update(last_error=message[:2000], retry_at=retry_at)


async def watch_login(
    account_id: int, services: SyncServices, loop: asyncio.AbstractEventLoop
) -> ServerLogin | Callable[[], ServerLogin] | None:
    """The login an IDLE watcher of ``account_id`` connects with (a callable fetching a current
    access token through ``loop`` for an OAuth account), or ``None`` when the account is gone
    or its server does not offer IDLE."""
    account = await MailAccount.get_or_none(id=account_id)
    if account is None or not offers_idle(account.capabilities):
        return None
    stored = stored_logins(account, services.secrets, services.registry).imap
    tokens = services.tokens
    if tokens is not None and await tokens.has_grant(account_id):
        return _token_login(stored, tokens, account_id, loop, services.policy.timeout)
    return stored


def _token_login(
    login: ServerLogin, tokens: OAuthTokens, account_id: int, loop: asyncio.AbstractEventLoop,
    timeout: float,
) -> Callable[[], ServerLogin]:
    """For the IDLE thread: ``login`` with a current access token, fetched through the event
    loop (where the grant's lock and the database live) at each (re)connection."""

    def current() -> ServerLogin:
        try:
            future = asyncio.run_coroutine_threadsafe(tokens.current_access_token(account_id), loop)
            token = future.result(timeout=timeout * 2)
        except (TimeoutError, FutureCancelled, RuntimeError):  # slow endpoint, loop stopping
            raise TokenEndpointUnavailable(
                ErrorCode.TIMEOUT, "No access token in time for the IDLE connection: retrying."
            ) from None
        return login if token is None else replace(login, secret=token)

    return current
