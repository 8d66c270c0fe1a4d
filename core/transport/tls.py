"""TLS client contexts for IMAP and SMTP connections.

One verifying context per extra CA file, cached: building a context loads the whole system
trust store (milliseconds of CPU), and an :class:`ssl.SSLContext` is safe to share between
threads as long as nobody changes it after creation, which this module guarantees.
"""

from __future__ import annotations

import functools
import ssl
from pathlib import Path

from ..errors import ErrorCode, SalesInboxError

__all__ = ["client_ssl_context"]


def client_ssl_context(extra_ca_file: Path | None) -> ssl.SSLContext:
    """Return a client context that verifies the server certificate and its host name.

    Certificates are checked against the system's default CA store plus, when given,
    ``extra_ca_file`` (PEM; ``SALESINBOX_EXTRA_CA_FILE``, for self-hosted servers with their
    own CA). TLS 1.2 is the minimum. Contexts are cached per file path, and rebuilt when the
    file changes (size or modification time), so replacing the CA file needs no restart.
    Callers must not modify the returned context.

    :raises SalesInboxError: ``INVALID_INPUT`` when the extra CA file cannot be read or holds
        no usable certificate.
    """
    if extra_ca_file is None:
        return _build(None, None)
    path = Path(extra_ca_file).expanduser()
    try:
        stat = path.stat()
    except OSError as exc:
        raise _bad_ca_file(path, exc.strerror or str(exc)) from None
    return _build(str(path.resolve()), (stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _build(ca_file: str | None, _version: tuple[int, int] | None) -> ssl.SSLContext:
    # create_default_context(cafile=...) would load ONLY that file and skip the system
    # store, so load the defaults first and add the extra file on top.
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
            raise _bad_ca_file(Path(ca_file), str(reason)) from None
    return context


def _bad_ca_file(path: Path, reason: str) -> SalesInboxError:
    return SalesInboxError(
        ErrorCode.INVALID_INPUT,
        f"The extra CA file {path} (SALESINBOX_EXTRA_CA_FILE) cannot be used: {reason}. "
        "Give the path of a PEM file with the CA certificate(s).",
        field="SALESINBOX_EXTRA_CA_FILE",
    )
