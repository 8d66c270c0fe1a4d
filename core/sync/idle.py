"""Watching a mailbox with IMAP IDLE (RFC 2177) for as long as asked, across lost connections.

imapclient's ``idle_check`` cannot tell "nothing arrived" from "the server closed the
connection": it reads without blocking, and at EOF, as when no data is waiting, the read comes
back empty, so both return ``[]`` (looping on it spins a core). A relay or NAT that dropped the
connection silently sends nothing at all. So the watcher waits on the socket itself: a
readable socket that yields no response is suspect, and a round trip (DONE, then IDLE again)
proves the connection alive, on suspicion and every ``probe_interval`` anyway. A lost
connection is replaced after a backoff wait, and every new connection starts with a catch-up
(``on_change``), since whatever changed while nobody watched went unseen.
"""

from __future__ import annotations

import imaplib
import logging
import selectors
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from imapclient import IMAPClient

from ..errors import ErrorCode, SalesInboxError
from ..observability.metrics import IDLE_CONNECTIONS
from ..transport.imap import close_quietly, open_imap
from ..transport.server_login import ConnectPolicy, ServerLogin
from .backoff import backoff_delay

__all__ = ["IdleTiming", "watch_mailbox"]

log = logging.getLogger(__name__)

# Connection failures worth retrying here: the server or the network is away. Any other
# (a refused login, TLS, an address the guard refuses) is the sync pass's to report.
_TRANSIENT = frozenset({ErrorCode.CONNECTION_FAILED, ErrorCode.TIMEOUT})
# Untagged status responses: news about the connection, not about the mailbox.
_STATUS = frozenset({b"OK", b"NO", b"BAD"})


@dataclass(frozen=True, slots=True)
class IdleTiming:
    """How an IDLE watcher paces itself, in seconds.

    :param probe_interval: end IDLE and start it again this often. The round trip proves the
        connection alive, so one that died silently is noticed within ``probe_interval`` plus
        the connect policy's timeout; it also renews IDLE well within RFC 2177's 29 minutes,
        and its traffic keeps NAT mappings alive.
    :param check_interval: the longest wait for server data between looks at the stop flag.
    :param backoff_base: the wait before the first reconnection attempt; it doubles with
        each failed attempt up to ``backoff_cap``, and starts over once a new connection
        has passed a probe.
    :param backoff_cap: the longest wait between reconnection attempts.
    """

    probe_interval: float = 120.0
    check_interval: float = 1.0
    backoff_base: float = 1.0
    backoff_cap: float = 30.0


class _ConnectionLost(Exception):
    """The server said BYE: it is closing the connection."""


def offers_idle(capabilities: Iterable[object] | None) -> bool:
    """Whether an account's stored capabilities (as probed when connecting) include IDLE."""
    return any(str(capability).upper() == "IDLE" for capability in capabilities or ())


def watch_mailbox(
    login: ServerLogin | Callable[[], ServerLogin],
    policy: ConnectPolicy,
    on_change: Callable[[], None],
    stop: threading.Event,
    timing: IdleTiming = IdleTiming(),
    folder: str = "INBOX",
) -> None:
    """Watch ``folder`` with IDLE until ``stop`` is set; call ``on_change`` when the server
    reports a change (new mail, expunge, flags) and after every (re)connection (catch-up).

    Blocking: run it in a thread of its own; it returns within ``timing.check_interval`` (plus
    one round trip) of ``stop`` being set. A lost connection (EOF, BYE, socket error, a probe
    unanswered within ``policy.timeout``) is replaced after a backoff wait, which ``stop``
    ends at once. A failure the sync pass must report (refused login, TLS, an address not
    allowed) ends the watcher after one last ``on_change``, so the sync pass meets it.

    ``login`` may be a callable called for each (re)connection: an account signed in with
    OAuth gets a current access token each time. Its ``SalesInboxError`` counts like a
    failed connection (``CONNECTION_FAILED``/``TIMEOUT`` are retried, others end the watcher).
    """
    _Watcher(login, policy, on_change, stop, timing, folder).run()


class _Watcher:
    def __init__(
        self,
        login: ServerLogin | Callable[[], ServerLogin],
        policy: ConnectPolicy,
        on_change: Callable[[], None],
        stop: threading.Event,
        timing: IdleTiming,
        folder: str,
    ) -> None:
        self._login = login
        self.endpoint = getattr(login, "endpoint", "the mail server")  # for the logs
        self.policy = policy
        self.on_change = on_change
        self.stop = stop
        self.timing = timing
        self.folder = folder
        self.failures = 0  # consecutive lost or failed connections

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                login = self._login() if callable(self._login) else self._login
                self.endpoint = login.endpoint
                client = open_imap(login, self.policy)
            except SalesInboxError as error:  # MailServerError, or no token to log in with
                if error.code not in _TRANSIENT:
                    log.info("IDLE watcher for %s ends: %s", self.endpoint, error.message)
                    self.on_change()
                    return
                self._back_off(error.message)
                continue
            try:
                self._watch(client)
            except (OSError, imaplib.IMAP4.error, _ConnectionLost) as error:
                _drop(client)  # no LOGOUT: it would wait for an answer that may never come
                self._back_off(str(error) or type(error).__name__)
            except BaseException:
                _drop(client)
                raise
            else:
                close_quietly(client)  # stop was asked for

    def _back_off(self, reason: str) -> None:
        self.failures += 1
        delay = backoff_delay(self.failures, base=self.timing.backoff_base, cap=self.timing.backoff_cap)
        # One line per outage; the attempts that follow are debug detail.
        level = logging.INFO if self.failures == 1 else logging.DEBUG
        log.log(level, "IDLE watcher for %s has no connection (%s): reconnecting in %.1f s",
                self.endpoint, reason, delay)
        self.stop.wait(delay)

    def _watch(self, client: IMAPClient) -> None:
        """IDLE on ``client`` until ``stop`` (returns) or the connection is lost (raises)."""
        client.select_folder(self.folder, readonly=True)
        if self.failures:
            log.info("IDLE watcher reconnected to %s", self.endpoint)
        self.on_change()  # catch up: what changed before IDLE began went unseen
        with IDLE_CONNECTIONS.track_inprogress(), selectors.DefaultSelector() as readable:
            readable.register(client.socket(), selectors.EVENT_READ)
            while not self.stop.is_set():
                client.idle()
                self._idle_until_probe(client, readable)
                # The probe: DONE is answered within the socket timeout by a live server;
                # a closed connection raises EOF or a socket error, a silent one times out.
                _text, responses = client.idle_done()
                self.failures = 0
                if responses:
                    self._report(responses)

    def _idle_until_probe(self, client: IMAPClient, readable: selectors.BaseSelector) -> None:
        """Report what the server sends until a probe is due, ``stop`` is set, or the socket
        turns readable without a whole response (EOF, or part of a TLS record: the probe
        tells which)."""
        probe_at = time.monotonic() + self.timing.probe_interval
        while not self.stop.is_set():
            left = probe_at - time.monotonic()
            if left <= 0:
                return
            if not readable.select(min(left, self.timing.check_interval)):
                continue
            responses = client.idle_check(timeout=0)
            if not responses:
                return
            self._report(responses)

    def _report(self, responses: list[Any]) -> None:
        """``on_change`` for mailbox news (EXISTS, EXPUNGE, FETCH…), not for status lines
        such as Dovecot's "* OK Still here" keepalive; BYE means the connection ends."""
        heads = [r[0] if isinstance(r, tuple) and r else None for r in responses]
        if b"BYE" in heads:
            raise _ConnectionLost("the server said BYE")
        if any(head not in _STATUS for head in heads):
            self.on_change()


def _drop(client: IMAPClient) -> None:
    try:
        client.shutdown()
    except Exception:  # closing a dead socket: nothing left to do
        log.debug("closing a lost IDLE connection failed", exc_info=True)
