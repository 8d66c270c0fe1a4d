"""Mail events and token changes shared by every process on one PostgreSQL database, over
LISTEN/NOTIFY.

:class:`NotifyRelay` is the :class:`~..sync.events.EventBus` of a process that runs beside
others (API processes, workers). Its :meth:`~NotifyRelay.publish` sends the event with
``pg_notify`` instead of delivering it, and its one LISTEN connection feeds what comes back
(from every process, this one included) to the local subscribers: a subscriber gets each
event once, whichever process synced. It also carries :meth:`TokenCache.forget_user
<..crm.api_tokens.TokenCache.forget_user>` across processes, so that revoking a token in one
process closes the WebSocket subscriptions of the others at once.

Sending goes through an in-memory queue drained by one task on its own connection, in order,
in batches (one transaction each). ``publish`` never blocks and never raises: when the
database is away, or the queue is full, events are dropped, counted
(``salesinbox_relay_notifications_dropped_total``) and logged once per episode, as the sync
must not wait for subscribers (they re-query). Events published before :meth:`stop` are sent
before it returns. Notifications sent while the LISTEN connection is down are lost for this
process; it reconnects with backoff.

Payloads (:mod:`.notify_payload`) stay under PostgreSQL's 8000-byte limit: an event with more
message ids is split over several notifications of one transaction and joined again on
arrival, so subscribers always get it whole. Each names its sender (a random id per relay), so
that a process does not apply its own token changes twice nor send back those of others.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from ..crm.api_tokens import TokenCache, token_cache
from ..observability.metrics import RELAY_DROPPED, RELAY_RECONNECTS
from ..sync.events import EventBus, MailEvent
from .notify_payload import Inbox, encode_event, encode_token_change

__all__ = [
    "EVENTS_CHANNEL",
    "RELAY_DROPPED",
    "RELAY_RECONNECTS",
    "TOKENS_CHANNEL",
    "NotifyRelay",
    "asyncpg_dsn",
]

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "salesinbox_mail_events"
TOKENS_CHANNEL = "salesinbox_token_changes"
_BATCH = 500  # notifications per transaction at most (a split event's parts stay together)
_CONNECT_TIMEOUT = 5.0
_HEALTH_INTERVAL = 30.0  # a silent LISTEN connection is probed this often (half-open TCP)
# Query parameters of Tortoise's URLs that configure its pool, not the connection.
_POOL_PARAMETERS = {"minsize", "maxsize", "max_queries", "max_inactive_connection_lifetime",
                    "connection_class", "loop", "schema"}
# What an unreachable, restarting or dropped database raises (too many connections included).
_NETWORK_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError,
                   asyncpg.InternalClientError)  # e.g. "cannot switch to state": a killed backend

def asyncpg_dsn(database_url: str) -> str:
    """The asyncpg DSN of a Tortoise PostgreSQL URL: scheme ``postgresql://``, Tortoise's pool
    parameters (``minsize``, ``maxsize``…) removed, the rest (e.g. ``sslmode``) kept."""
    parts = urlsplit(database_url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k not in _POOL_PARAMETERS]
    return urlunsplit(parts._replace(scheme="postgresql", query=urlencode(query)))


class _TokenChange:
    """A user whose tokens this process forgot, to tell the others."""

    __slots__ = ("user_id",)

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id


_STOP = object()


class NotifyRelay(EventBus):
    """This process's :class:`EventBus` when several processes share a PostgreSQL database.

    ``database_url`` is the server's (Tortoise) URL; ``tokens`` the cache whose
    ``forget_user`` calls are relayed both ways (default: the process-wide one). Call
    :meth:`start` before the sync starts and :meth:`stop` after it stops. Use it from the
    event loop's thread only, as :class:`EventBus`.
    """

    def __init__(self, database_url: str, *, tokens: TokenCache = token_cache,
                 queue_size: int = 10_000, reconnect_delay: float = 0.5,
                 max_reconnect_delay: float = 30.0) -> None:
        super().__init__()
        self.dsn = asyncpg_dsn(database_url)
        self.tokens = tokens
        self.queue_size = queue_size
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        #: this relay's id in every payload it sends
        self.sender = uuid.uuid4().hex
        self._seq = 0
        self._outbox: asyncio.Queue[object] = asyncio.Queue()
        self._queued_events = 0
        self._stopped = False
        self._applying_remote = False  # a forget_user from another process is being applied
        self._send_conn: asyncpg.Connection | None = None
        self._send_retry_at = 0.0
        self._send_delay = reconnect_delay
        self._send_outage = False
        self._queue_full = False
        self._listen_conn: asyncpg.Connection | None = None
        self._listening = asyncio.Event()
        self._sender_task: asyncio.Task[None] | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._inbox = Inbox()

    # -- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the LISTEN connection and start sending; returns once this process listens.
        Raises the connection error if the database cannot be reached at all (start-up should
        fail as loudly as opening the database does); later outages are retried."""
        if self._listen_task is not None or self._stopped:
            raise RuntimeError("a NotifyRelay starts once")
        connection = await self._listen_connection()
        self._listen_task = asyncio.create_task(self._listen_loop(connection), name="notify-relay-listen")
        self._sender_task = asyncio.create_task(self._send_loop(), name="notify-relay-send")
        self.tokens.add_listener(self._on_local_forget)

    async def stop(self, timeout: float = 5.0) -> None:
        """Send what was published so far (waiting at most ``timeout`` seconds), then close both
        connections. Events published afterwards are dropped. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self.tokens.remove_listener(self._on_local_forget)
        self._outbox.put_nowait(_STOP)
        if self._sender_task is not None:
            try:
                await asyncio.wait_for(self._sender_task, timeout)
            except TimeoutError:
                log.warning("Cross-process relay: stopped before %d notification(s) could be sent",
                            self._outbox.qsize())
        if self._listen_task is not None:
            self._listen_task.cancel()
            await asyncio.gather(self._listen_task, return_exceptions=True)
        for connection in (self._send_conn, self._listen_conn):
            if connection is not None:
                connection.terminate()
        self._send_conn = self._listen_conn = None
        self._listening.clear()

    @property
    def listening(self) -> bool:
        """Whether the LISTEN connection is up right now."""
        return self._listening.is_set()

    @property
    def listener_pid(self) -> int | None:
        """The PostgreSQL backend pid of the LISTEN connection (for operators and tests)."""
        return self._listen_conn.get_server_pid() if self._listen_conn is not None else None

    @property
    def sender_pid(self) -> int | None:
        """The backend pid of the sending connection, when open."""
        return self._send_conn.get_server_pid() if self._send_conn is not None else None

    # -- publishing --------------------------------------------------------------------------

    def publish(self, event: MailEvent) -> None:
        """Queue ``event`` for every process's subscribers, this one's included (they get it
        back through LISTEN). Never blocks, never raises: see the module's docstring."""
        try:
            if self._stopped:
                RELAY_DROPPED.labels("mail_events", "stopped").inc()
                return
            if self._queued_events >= self.queue_size:
                RELAY_DROPPED.labels("mail_events", "queue_full").inc()
                if not self._queue_full:
                    self._queue_full = True
                    log.warning("Cross-process relay: %d events wait to be sent; dropping new ones",
                                self._queued_events)
                return
            self._queued_events += 1
            self._outbox.put_nowait(event)
        except Exception:  # the sync must go on whatever happens here
            log.exception("Cross-process relay: could not queue a mail event")

    def _on_local_forget(self, user_id: int) -> None:
        """TokenCache listener: tell the other processes, unless they told us."""
        if self._applying_remote or self._stopped:
            return
        self._outbox.put_nowait(_TokenChange(user_id))  # not bounded: rare, and they matter

    async def _send_loop(self) -> None:
        """Drain the outbox in order, a batch per transaction, until :data:`_STOP`."""
        while True:
            batch = [await self._outbox.get()]
            while batch[-1] is not _STOP and len(batch) < _BATCH and not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            stop = batch[-1] is _STOP
            items = [item for item in batch if item is not _STOP]
            self._queued_events -= sum(isinstance(item, MailEvent) for item in items)
            if items:
                try:
                    await self._send(items)
                except Exception:  # a bug must not end the relay: log, drop, go on
                    log.exception("Cross-process relay: could not send %d notification(s)", len(items))
            if stop:
                return

    def _encode(self, items: list[object]) -> list[tuple[str, str]]:
        rows: list[tuple[str, str]] = []
        for item in items:
            self._seq += 1
            if isinstance(item, MailEvent):
                rows += [(EVENTS_CHANNEL, p) for p in encode_event(self.sender, self._seq, item)]
            elif isinstance(item, _TokenChange):
                rows.append((TOKENS_CHANNEL, encode_token_change(self.sender, self._seq, item.user_id)))
        return rows

    async def _send(self, items: list[object]) -> None:
        rows = self._encode(items)
        for _ in range(2):  # a connection killed since the last batch: once more on a new one
            connection = await self._sender_connection()
            if connection is None:
                break
            try:
                await connection.executemany("SELECT pg_notify($1, $2)", rows)
            except _NETWORK_ERRORS:
                connection.terminate()
                self._send_conn = None
                continue
            if self._send_outage:
                self._send_outage = False
                log.info("Cross-process relay: sending again")
            self._queue_full = False
            return
        self._drop(items, "database_unavailable")

    async def _sender_connection(self) -> asyncpg.Connection | None:
        """The open sending connection, a new one, or None while the database is away (a new
        connection is tried after a backoff, so that an outage drops events fast)."""
        if self._send_conn is not None and not self._send_conn.is_closed():
            return self._send_conn
        if time.monotonic() < self._send_retry_at:
            return None
        try:
            self._send_conn = await asyncpg.connect(self.dsn, timeout=_CONNECT_TIMEOUT,
                                                    server_settings={"application_name": "salesinbox relay send"})
        except _NETWORK_ERRORS:
            self._send_retry_at = time.monotonic() + self._send_delay
            self._send_delay = min(self._send_delay * 2, self.max_reconnect_delay)
            return None
        self._send_delay = self.reconnect_delay
        return self._send_conn

    def _drop(self, items: list[object], reason: str) -> None:
        events = sum(isinstance(item, MailEvent) for item in items)
        if events:
            RELAY_DROPPED.labels("mail_events", reason).inc(events)
        if len(items) > events:
            RELAY_DROPPED.labels("token_changes", reason).inc(len(items) - events)
        if not self._send_outage:
            self._send_outage = True
            log.warning("Cross-process relay: the database is unreachable; mail events and token "
                        "changes are dropped until it is back (other processes' subscribers "
                        "miss them, their token caches expire as usual)")

    # -- listening ---------------------------------------------------------------------------

    async def _listen_connection(self) -> asyncpg.Connection:
        connection = await asyncpg.connect(self.dsn, timeout=_CONNECT_TIMEOUT,
                                           server_settings={"application_name": "salesinbox relay listen"})
        try:
            await connection.add_listener(EVENTS_CHANNEL, self._on_event)
            await connection.add_listener(TOKENS_CHANNEL, self._on_token)
        except BaseException:
            connection.terminate()
            raise
        self._listen_conn = connection
        self._inbox.reset()
        self._listening.set()
        return connection

    async def _listen_loop(self, connection: asyncpg.Connection) -> None:
        """Watch the LISTEN connection; when it is lost, reconnect with backoff (one WARNING
        per outage, one INFO when back)."""
        while True:
            await self._watch(connection)
            self._listening.clear()
            self._listen_conn = None
            connection.terminate()
            log.warning("Cross-process relay: lost the LISTEN connection; mail events and token "
                        "changes of other processes are missed until it is back")
            delay = self.reconnect_delay
            while True:
                await asyncio.sleep(delay)
                try:
                    connection = await self._listen_connection()
                    break
                except _NETWORK_ERRORS as error:
                    log.debug("Cross-process relay: reconnecting failed: %s", error)
                    delay = min(delay * 2, self.max_reconnect_delay)
            RELAY_RECONNECTS.inc()
            self._send_retry_at = 0.0  # the database is back: the sender need not wait either
            log.info("Cross-process relay: listening again")

    async def _watch(self, connection: asyncpg.Connection) -> None:
        """Return when ``connection`` is lost (asyncpg tells, or a periodic probe fails)."""
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        while not connection.is_closed():
            try:
                await asyncio.wait_for(lost.wait(), _HEALTH_INTERVAL)
                return
            except TimeoutError:
                pass
            try:
                await connection.fetchval("SELECT 1", timeout=_CONNECT_TIMEOUT)
            except _NETWORK_ERRORS:
                return

    def _on_event(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            event = self._inbox.event(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("Cross-process relay: ignored a malformed mail event notification")
            return
        if event is not None:
            super().publish(event)

    def _on_token(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            user_id = self._inbox.token_change(payload, ignore_sender=self.sender)
        except (ValueError, KeyError, TypeError):
            log.warning("Cross-process relay: ignored a malformed token change notification")
            return
        if user_id is None:
            return  # ours (forgotten here already) or a duplicate
        self._applying_remote = True  # its listeners run now, and must not send it back
        try:
            self.tokens.forget_user(user_id)
        finally:
            self._applying_remote = False
