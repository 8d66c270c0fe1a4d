"""Secrets at rest: mail passwords and OAuth tokens encrypted with Fernet (``cryptography``).

The key comes from ``SALESINBOX_SECRET_KEY`` (one or more comma-separated Fernet keys, the
first encrypts, all decrypt, so keys can be rotated) or from a key file created on first
start with mode 0600. Only the code that logs in to a mail server calls :meth:`reveal`.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .errors import ErrorCode, SalesInboxError
from .private_files import ensure_private_directory
from .settings import Settings


class Secret:
    """A clear-text secret that never shows itself in ``repr``, ``str`` or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the clear text. Call it only where the secret is sent to a server."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class SecretBox:
    """Encrypts and decrypts stored secrets with the deployment's key(s)."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("SecretBox needs at least one key")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        """Load the key(s) from the settings, creating the key file if there is none."""
        if settings.secret_key:
            raw_keys = [k.strip() for k in settings.secret_key.split(",") if k.strip()]
            try:
                return cls([k.encode() for k in raw_keys])
            except ValueError:
                raise SalesInboxError(
                    ErrorCode.INVALID_INPUT,
                    "SALESINBOX_SECRET_KEY is not a valid Fernet key: generate one with "
                    "`salesinbox generate-key`.",
                ) from None
        return cls([load_or_create_key_file(settings.effective_secret_key_file)])

    def encrypt(self, secret: Secret | str) -> str:
        """Return the Fernet token (ASCII text) of ``secret``."""
        value = secret.reveal() if isinstance(secret, Secret) else secret
        return self._fernet.encrypt(value.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> Secret:
        """Return the secret in ``token``; a token made with an unknown key is an error."""
        try:
            return Secret(self._fernet.decrypt(token.encode("ascii")).decode("utf-8"))
        except InvalidToken:
            raise SalesInboxError(
                ErrorCode.INTERNAL_ERROR,
                "A stored credential cannot be decrypted with the configured key: restore the "
                "previous SALESINBOX_SECRET_KEY (or key file), or enter the password again.",
            ) from None


def load_or_create_key_file(path: Path) -> bytes:
    """Read the key at ``path``; create it (mode 0600, atomically) when it does not exist."""
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise SalesInboxError(
                ErrorCode.INVALID_INPUT,
                f"The key file {path} is readable by other users: run `chmod 600 {path}`.",
            )
        return path.read_bytes().strip()
    ensure_private_directory(path.parent)  # 0700 when we create it (the data directory)
    key = Fernet.generate_key()
    # O_EXCL: two processes starting at once must not overwrite each other's key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load_or_create_key_file(path)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
    return key


def generate_key() -> str:
    """Return a new random Fernet key, for ``SALESINBOX_SECRET_KEY``."""
    return Fernet.generate_key().decode("ascii")
