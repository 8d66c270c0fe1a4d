"""Throw-away TLS material for the test mail servers.

`make_certs()` writes a private test CA, a server certificate signed by it for
127.0.0.1 / ::1 / localhost, and an *untrusted* self-signed certificate for
the same names (to provoke certificate-verification failures, e.g. TLS_FAILED
tests). Keys are ECDSA P-256: generating them takes milliseconds, unlike RSA.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_DNS_NAMES = ("localhost",)
DEFAULT_IPS = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class CertBundle:
    """Paths of the PEM files written by `make_certs()`."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path  # leaf certificate signed by the test CA
    server_key: Path
    untrusted_cert: Path  # self-signed, same names, NOT signed by the test CA
    untrusted_key: Path

    def cert_and_key(self, untrusted: bool = False) -> tuple[Path, Path]:
        """Return (cert, key) of the trusted server certificate or the untrusted one."""
        if untrusted:
            return self.untrusted_cert, self.untrusted_key
        return self.server_cert, self.server_key


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SalesInbox tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    # Backdate a little so clock skew between processes never matters.
    now = dt.datetime.now(dt.UTC)
    return builder.not_valid_before(now - dt.timedelta(days=1)).not_valid_after(
        now + dt.timedelta(days=365)
    )


def _leaf(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    signing_key: ec.EllipticCurvePrivateKey,
    dns_names: tuple[str, ...],
    ips: tuple[str, ...],
) -> x509.Certificate:
    san = [x509.DNSName(n) for n in dns_names] + [
        x509.IPAddress(ipaddress.ip_address(i)) for i in ips
    ]
    builder = (
        _validity(x509.CertificateBuilder())
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        # Python 3.13's default context sets VERIFY_X509_STRICT, which requires an AKI.
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()),
            critical=False,
        )
    )
    return builder.sign(signing_key, hashes.SHA256())


def make_certs(
    directory: str | Path,
    dns_names: tuple[str, ...] = DEFAULT_DNS_NAMES,
    ips: tuple[str, ...] = DEFAULT_IPS,
) -> CertBundle:
    """Generate a test CA, a CA-signed server cert and an untrusted self-signed cert.

    Files are written as PEM into `directory` (created if needed); keys are
    mode 0600, certificates world-readable.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("SalesInbox Test CA")
    ca_cert = (
        _validity(x509.CertificateBuilder())
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _leaf(
        _name(dns_names[0] if dns_names else ips[0]), ca_name,
        server_key.public_key(), ca_key, dns_names, ips,
    )

    # Self-signed leaf for the same names: valid-looking, but chains to nothing we trust.
    bad_key = ec.generate_private_key(ec.SECP256R1())
    bad_name = _name("Untrusted self-signed")
    bad_cert = _leaf(bad_name, bad_name, bad_key.public_key(), bad_key, dns_names, ips)

    bundle = CertBundle(
        directory=directory,
        ca_cert=directory / "ca.pem",
        ca_key=directory / "ca.key",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        untrusted_cert=directory / "untrusted.pem",
        untrusted_key=directory / "untrusted.key",
    )
    pem = serialization.Encoding.PEM
    for path, data, mode in (
        (bundle.ca_cert, ca_cert.public_bytes(pem), 0o644),
        (bundle.ca_key, _key_pem(ca_key), 0o600),
        (bundle.server_cert, server_cert.public_bytes(pem), 0o644),
        (bundle.server_key, _key_pem(server_key), 0o600),
        (bundle.untrusted_cert, bad_cert.public_bytes(pem), 0o644),
        (bundle.untrusted_key, _key_pem(bad_key), 0o600),
    ):
        path.write_bytes(data)
        path.chmod(mode)
    return bundle


def client_ssl_context(certs: CertBundle | str | Path) -> ssl.SSLContext:
    """Client-side context that verifies hostnames and trusts ONLY the test CA.

    Accepts a `CertBundle` or the path of a CA PEM file.
    """
    cafile = certs.ca_cert if isinstance(certs, CertBundle) else Path(certs)
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cafile))
    return ctx


def server_ssl_context(certs: CertBundle, untrusted: bool = False) -> ssl.SSLContext:
    """Server-side context presenting the CA-signed cert (or the untrusted one)."""
    cert, key = certs.cert_and_key(untrusted)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx
