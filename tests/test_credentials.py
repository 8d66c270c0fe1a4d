"""Secrets at rest: encryption, the key file, rotation, and secrets that never print."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from salesinbox.core.credentials import Secret, SecretBox, generate_key, load_or_create_key_file
from salesinbox.core.errors import SalesInboxError
from salesinbox.core.settings import Settings


def test_round_trip_and_ciphertext_hides_the_secret() -> None:
    box = SecretBox([generate_key().encode()])
    token = box.encrypt(Secret("hunter2-app-password"))
    assert "hunter2" not in token
    assert box.decrypt(token).reveal() == "hunter2-app-password"
    assert box.encrypt("x") != box.encrypt("x")  # random IV: equal secrets do not look equal


def test_secret_never_shows_itself() -> None:
    secret = Secret("hunter2")
    assert "hunter2" not in repr(secret) and "hunter2" not in str(secret) and "hunter2" not in f"{secret}"
    assert "hunter2" not in repr({"password": secret})


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    box = SecretBox.from_settings(settings)
    key_file = tmp_path / "data" / "secret.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    token = box.encrypt("pw")
    assert SecretBox.from_settings(settings).decrypt(token).reveal() == "pw"


def test_world_readable_key_file_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "secret.key"
    load_or_create_key_file(key_file)
    key_file.chmod(0o644)
    with pytest.raises(SalesInboxError) as caught:
        load_or_create_key_file(key_file)
    assert "chmod 600" in caught.value.message


def test_key_rotation_keeps_old_secrets_readable() -> None:
    old, new = generate_key(), generate_key()
    token = SecretBox.from_settings(Settings(secret_key=old)).encrypt("pw")
    rotated = SecretBox.from_settings(Settings(secret_key=f"{new},{old}"))
    assert rotated.decrypt(token).reveal() == "pw"


def test_wrong_key_and_bad_key_are_clear_errors() -> None:
    token = SecretBox([generate_key().encode()]).encrypt("pw")
    with pytest.raises(SalesInboxError) as caught:
        SecretBox([generate_key().encode()]).decrypt(token)
    assert "SALESINBOX_SECRET_KEY" in caught.value.message
    with pytest.raises(SalesInboxError) as caught:
        SecretBox.from_settings(Settings(secret_key="not-a-key"))
    assert "generate-key" in caught.value.message
