"""The SSRF guard: address classification, host/port validation, resolution and pinned connects.

Also home to network helpers the IMAP and SMTP tests share: a black hole (accepts TCP, never
answers), a STARTTLS-stripping man in the middle in front of a real server, and a resolver
that answers a name once.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from salesinbox.core.errors import ErrorCode, SalesInboxError
from salesinbox.core.settings import Settings
from salesinbox.core.transport.netguard import (
    connect_pinned,
    is_public_address,
    normalise_host,
    resolve_mail_host,
    validate_port,
)
from salesinbox.core.transport.server_login import ConnectPolicy
from tests.servers.dovecot import free_port

# --------------------------------------------------------------------------- shared helpers

@contextmanager
def black_hole() -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) and never says a word."""
    with socket.create_server(("127.0.0.1", 0), backlog=8) as listener:
        yield listener.getsockname()[1]


class StarttlsStripper:
    """A man in the middle between a client and a real server on 127.0.0.1:`port` that hides
    STARTTLS from the server's capability lists (IMAP CAPABILITY, SMTP EHLO) and records
    what the client sends in `from_client`. Use it as a context manager."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.from_client = bytearray()
        self.thread = threading.Thread(target=self._relay, daemon=True)
        self.thread.start()

    def _relay(self) -> None:
        try:
            client, _ = self.listener.accept()
        except OSError:
            return
        with client, socket.create_connection(("127.0.0.1", self.upstream), timeout=10) as server:
            with selectors.DefaultSelector() as selector:
                selector.register(client, selectors.EVENT_READ)
                selector.register(server, selectors.EVENT_READ)
                while events := selector.select(timeout=10):
                    for key, _mask in events:
                        data = key.fileobj.recv(65536)
                        if not data:
                            return  # either side hung up
                        if key.fileobj is client:
                            self.from_client += data
                            server.sendall(data)
                        else:
                            client.sendall(data.replace(b"STARTTLS", b"X-NOTLS"))

    def __enter__(self) -> StarttlsStripper:
        return self

    def __exit__(self, *exc: object) -> None:
        """Wait for the relay to end (the client hung up) and stop listening."""
        self.listener.close()
        self.thread.join(10)


def resolve_once(monkeypatch: pytest.MonkeyPatch, name: str) -> list[str]:
    """Resolve `name` to 127.0.0.1 once, then fail, like a name re-pointed after the check
    (a second lookup fails the caller); return the list of lookups made."""
    real = socket.getaddrinfo
    lookups: list[str] = []

    def getaddrinfo(host: str, port: int, *args: object, **kwargs: object) -> list:
        if host != name:
            return real(host, port, *args, **kwargs)  # type: ignore[arg-type]
        lookups.append(host)
        if len(lookups) > 1:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups


# ------------------------------------------------------------------------------------ tests

STRICT = ConnectPolicy(timeout=2.0)
PERMISSIVE = ConnectPolicy(timeout=2.0, allow_private_hosts=True)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.8.9.10",  # loopback
        "10.1.2.3", "172.16.0.1", "172.31.255.254", "192.168.1.1",  # RFC 1918
        "169.254.169.254",  # link-local: the cloud metadata service
        "100.64.0.1", "100.127.255.254",  # CGNAT shared space
        "0.0.0.0", "0.1.2.3",  # unspecified / "this network"
        "224.0.0.1", "239.255.255.250",  # multicast
        "240.0.0.1", "255.255.255.255",  # reserved, broadcast
        "192.0.2.10", "198.51.100.1", "203.0.113.5", "198.18.0.1",  # documentation, benchmark
        "::1", "::",  # loopback, unspecified
        "fe80::1", "fe80::1%1",  # link-local (with a scope id, as getaddrinfo gives it)
        "fc00::1", "fd12:3456::1",  # unique local (ULA)
        "ff02::1",  # multicast
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",  # IPv4-mapped
        "64:ff9b::a00:1", "64:ff9b::7f00:1",  # NAT64 of 10.0.0.1 / 127.0.0.1
        "2002:a00:1::1", "2002:7f00:1::",  # 6to4 of 10.0.0.1 / 127.0.0.1
        "2001:db8::1",  # documentation
        "::7f00:1",  # deprecated IPv4-compatible
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "74.125.140.108", "2001:4860:4860::8888", "2a00:1450:400c:c0b::6c",
     "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_public_addresses_pass(address: str) -> None:
    assert is_public_address(address)


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("imap.gmail.com", "imap.gmail.com"),
        ("  IMAP.Zoho.EU. ", "imap.zoho.eu"),
        ("[::1]", "::1"),
        ("127.0.0.1", "127.0.0.1"),
        ("mail.bücher.example", "mail.xn--bcher-kva.example"),
        ("mail_relay.corp.example", "mail_relay.corp.example"),
    ],
)
def test_normalise_host(given: str, normal: str) -> None:
    assert normalise_host(given) == normal


@pytest.mark.parametrize(
    "bad",
    ["", "   ", "imaps://imap.gmail.com", "imap.gmail.com/inbox", "imap.gmail.com:993",
     "imap gmail.com", "user@imap.gmail.com", "-bad.example", "a..b", "x" * 64 + ".com",
     "imap.example.com\r\nX"],
)
def test_malformed_hosts_are_invalid_input(bad: str) -> None:
    with pytest.raises(SalesInboxError) as caught:
        normalise_host(bad)
    assert caught.value.code is ErrorCode.INVALID_INPUT
    assert caught.value.field == "host"


@pytest.mark.parametrize("bad", [0, -1, 65536, True, "993", 993.0])
def test_port_range(bad: object) -> None:
    with pytest.raises(SalesInboxError) as caught:
        validate_port(bad)  # type: ignore[arg-type]
    assert (caught.value.code, caught.value.field) == (ErrorCode.INVALID_INPUT, "port")
    assert validate_port(993) == 993


def test_loopback_name_is_refused_without_naming_the_address() -> None:
    with pytest.raises(SalesInboxError) as caught:
        resolve_mail_host("localhost", 993, STRICT)
    error = caught.value
    assert error.code is ErrorCode.HOST_NOT_ALLOWED
    assert "localhost" in error.message and "SALESINBOX_ALLOW_PRIVATE_HOSTS" in error.message
    assert "127.0.0.1" not in error.message  # no mapping of internal DNS for the asker


def test_private_hosts_allowed_by_policy() -> None:
    assert resolve_mail_host("localhost", 993, PERMISSIVE) == [(socket.AF_INET, ("127.0.0.1", 993))]
    assert resolve_mail_host("[::1]", 143, PERMISSIVE)[0][1][:2] == ("::1", 143)


def test_ip_literals_are_checked_too() -> None:
    for literal in ("10.0.0.8", "169.254.169.254", "[::ffff:127.0.0.1]"):
        with pytest.raises(SalesInboxError) as caught:
            resolve_mail_host(literal, 993, STRICT)
        assert caught.value.code is ErrorCode.HOST_NOT_ALLOWED
    assert resolve_mail_host("8.8.8.8", 993, STRICT) == [(socket.AF_INET, ("8.8.8.8", 993))]


def _fake_dns(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    """Answer getaddrinfo for `answers`' names; return the list of names looked up."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host: str, port: int, *args: object, **kwargs: object) -> list:
        if host not in answers:
            return real(host, port, *args, **kwargs)  # type: ignore[arg-type]
        asked.append(host)
        return [
            (socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "",
             (ip, port, 0, 0) if ":" in ip else (ip, port))
            for ip in answers[host]
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


def test_any_private_answer_refuses_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    # A name answering with public AND private addresses is a rebinding trick: refuse it all.
    _fake_dns(monkeypatch, {"mx.mixed.example": ["93.184.216.34", "10.0.0.7"],
                            "mx.public.example": ["93.184.216.34", "2606:2800:220:1::1"]})
    with pytest.raises(SalesInboxError) as caught:
        resolve_mail_host("mx.mixed.example", 993, STRICT)
    assert caught.value.code is ErrorCode.HOST_NOT_ALLOWED
    assert [sockaddr[0] for _f, sockaddr in resolve_mail_host("mx.public.example", 993, STRICT)] == [
        "93.184.216.34", "2606:2800:220:1::1"]


def test_unresolvable_host_is_connection_failed() -> None:
    with pytest.raises(SalesInboxError) as caught:
        resolve_mail_host("nonexistent.invalid", 993, STRICT)
    error = caught.value
    assert error.code is ErrorCode.CONNECTION_FAILED
    assert error.message == "Cannot find the server nonexistent.invalid: check the server name."


def test_connect_pinned_tries_the_next_address() -> None:
    closed = free_port()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        addresses = [(socket.AF_INET, ("127.0.0.1", closed)), (socket.AF_INET, ("127.0.0.1", port))]
        with connect_pinned(addresses, 2.0) as sock:
            assert sock.getpeername() == ("127.0.0.1", port)
            assert sock.gettimeout() == 2.0


def test_connect_pinned_raises_the_last_error() -> None:
    addresses = [(socket.AF_INET, ("127.0.0.1", free_port())) for _ in range(2)]
    with pytest.raises(ConnectionRefusedError):
        connect_pinned(addresses, 2.0)


def test_connect_pinned_stays_within_its_time_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate black-holed addresses: each connect waits out the timeout it was given.
    waits: list[float] = []

    def slow_connect(self: socket.socket, address: object) -> None:
        waits.append(self.gettimeout() or 0.0)
        time.sleep(self.gettimeout() or 0.0)
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket.socket, "connect", slow_connect)
    addresses = [(socket.AF_INET, ("192.0.2.1", 993)), (socket.AF_INET, ("192.0.2.2", 993))]
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        connect_pinned(addresses, 0.4)
    assert time.monotonic() - started < 0.6
    assert waits[0] == pytest.approx(0.2, abs=0.05)  # the first leaves time for the second
    assert waits[1] == pytest.approx(0.2, abs=0.05)


def test_policy_defaults_are_strict_and_follow_settings(tmp_path: Path) -> None:
    assert ConnectPolicy() == ConnectPolicy(20.0, False, False, None)
    settings = Settings(data_dir=tmp_path, mail_timeout=7.5, allow_private_hosts=True,
                        allow_plaintext=True, extra_ca_file=tmp_path / "ca.pem")
    assert ConnectPolicy.from_settings(settings) == ConnectPolicy(7.5, True, True, tmp_path / "ca.pem")
