"""API keys: format, HMAC digests, constant-time verification, secrets on disk."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from modelshield.errors import ConfigError
from modelshield.identity.keys import issue_key, key_digest, parse_key_id, verify_key
from modelshield.identity.secret import load_secrets, read_or_create_secret_file
from modelshield.policy import demo_policy

SECRET = b"a-server-secret-of-enough-length"


def test_issued_key_is_stored_only_as_its_hmac() -> None:
    issued = issue_key(SECRET, "acc_1", now=3.0)
    assert issued.plaintext.startswith(f"msk_{issued.record.key_id}_")
    assert issued.plaintext not in repr(issued.record)
    assert issued.record.digest == key_digest(SECRET, issued.plaintext)
    assert issued.record.digest != key_digest(b"another-secret-entirely!", issued.plaintext)
    assert parse_key_id(issued.plaintext) == issued.record.key_id
    assert issue_key(SECRET, "acc_1", now=3.0).plaintext != issued.plaintext


def test_verification() -> None:
    issued = issue_key(SECRET, "acc_1", now=3.0)
    assert verify_key(SECRET, issued.plaintext, issued.record)
    assert not verify_key(SECRET, issued.plaintext[:-1] + "x", issued.record)
    assert not verify_key(b"wrong-secret-wrong-secret", issued.plaintext, issued.record)
    assert not verify_key(SECRET, issued.plaintext, None)
    revoked = dataclasses.replace(issued.record, revoked_at=4.0)
    assert not verify_key(SECRET, issued.plaintext, revoked)


@pytest.mark.parametrize(
    "text",
    ["", "msk_", "msk_xyz_abc", "sk-123", "msk_0123456789ab_short", "MSK_0123456789ab_" + "a" * 43],
)
def test_malformed_keys_have_no_id(text: str) -> None:
    assert parse_key_id(text) is None


def test_secret_files_are_created_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "secret"
    value = read_or_create_secret_file(path)
    assert len(value) >= 32 and path.stat().st_mode & 0o777 == 0o600
    assert read_or_create_secret_file(path) == value
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_or_create_secret_file(path)


def test_secrets_come_from_environment_first(tmp_path: Path) -> None:
    base = demo_policy()
    policy = base.model_copy(
        update={"server": base.server.model_copy(update={"state_dir": str(tmp_path)})}
    )
    from_files = load_secrets(policy, environ={})
    assert from_files.admin_token_source.endswith("admin-token")
    assert (tmp_path / "secret").exists()
    env = {"MODELSHIELD_SECRET": "s" * 20, "MODELSHIELD_ADMIN_TOKEN": "tok"}
    from_env = load_secrets(policy, environ=env)
    assert from_env.server_secret == b"s" * 20
    assert from_env.admin_token_source == "$MODELSHIELD_ADMIN_TOKEN"
    with pytest.raises(ConfigError, match=">= 16 bytes"):
        load_secrets(policy, environ={"MODELSHIELD_SECRET": "short"})
