"""TLS client contexts: verification on, TLS >= 1.2, system store plus the extra CA, cached."""

from __future__ import annotations

import os
import socket
import ssl
from pathlib import Path

import pytest

from salesinbox.core.errors import ErrorCode, SalesInboxError
from salesinbox.core.transport.tls import client_ssl_context
from tests.servers.certs import CertBundle
from tests.servers.dovecot import DovecotServer


def test_context_verifies_certificates_and_names() -> None:
    context = client_ssl_context(None)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.protocol is ssl.PROTOCOL_TLS_CLIENT


def test_extra_ca_is_added_to_the_system_store(server_certs: CertBundle) -> None:
    system = client_ssl_context(None).cert_store_stats()["x509_ca"]
    extra = client_ssl_context(server_certs.ca_cert)
    assert extra.cert_store_stats()["x509_ca"] == system + 1  # not instead of it
    subjects = [dict(item[0] for item in ca["subject"]) for ca in extra.get_ca_certs()]  # type: ignore[misc]
    assert {"organizationName": "SalesInbox tests", "commonName": "SalesInbox Test CA"} in subjects


def test_contexts_are_cached_per_file_and_rebuilt_when_it_changes(
    server_certs: CertBundle, tmp_path: Path
) -> None:
    assert client_ssl_context(None) is client_ssl_context(None)
    copy = tmp_path / "ca.pem"
    copy.write_bytes(server_certs.ca_cert.read_bytes())
    first = client_ssl_context(copy)
    assert client_ssl_context(copy) is first
    assert client_ssl_context(server_certs.ca_cert) is not first
    copy.write_bytes(server_certs.ca_cert.read_bytes() + b"\n")  # replaced by the admin
    os.utime(copy, ns=(1, 1))
    assert client_ssl_context(copy) is not first


@pytest.mark.parametrize("content", [None, b"not a certificate\n"])
def test_unusable_extra_ca_file_is_reported(tmp_path: Path, content: bytes | None) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SalesInboxError) as caught:
        client_ssl_context(path)
    error = caught.value
    assert (error.code, error.field) == (ErrorCode.INVALID_INPUT, "SALESINBOX_EXTRA_CA_FILE")
    assert str(path) in error.message


@pytest.mark.dovecot
@pytest.mark.parametrize("name", ["localhost", "127.0.0.1"])
def test_handshake_with_the_test_server(dovecot: DovecotServer, server_certs: CertBundle,
                                        name: str) -> None:
    context = client_ssl_context(server_certs.ca_cert)
    with socket.create_connection((dovecot.host, dovecot.ssl_port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=name) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")
            assert tls.recv(4) == b"* OK"


@pytest.mark.dovecot
def test_system_store_alone_does_not_trust_the_test_ca(dovecot: DovecotServer) -> None:
    with socket.create_connection((dovecot.host, dovecot.ssl_port), timeout=5) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            client_ssl_context(None).wrap_socket(raw, server_hostname="localhost")
