"""API keys: ``msk_<key id>_<secret>``, stored only as HMAC-SHA256 digests.

The key id is public (it is how a key is looked up and named in logs and the admin
API); the digest is HMAC-SHA256(server secret, whole key) and is compared in constant
time. Unknown, revoked and malformed keys are indistinguishable to the caller.

Example:
    >>> issued = issue_key(b"server-secret", "acc_1", now=0.0, token=b"\\x00" * 32)
    >>> issued.plaintext.startswith("msk_" + issued.record.key_id + "_")
    True
    >>> verify_key(b"server-secret", issued.plaintext, issued.record)
    True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from modelshield.identity.records import ApiKey

KEY_PREFIX = "msk"
_KEY_RE = re.compile(r"^msk_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_DUMMY_DIGEST = "0" * 64


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A newly issued key: ``plaintext`` is shown once and never stored."""

    plaintext: str
    record: ApiKey


def key_digest(secret: bytes, plaintext: str) -> str:
    # the one-shot C implementation: a fraction of hmac.new's cost, on every request
    return hmac.digest(secret, plaintext.encode("utf-8"), hashlib.sha256).hex()


def issue_key(
    secret: bytes,
    account_id: str,
    *,
    now: float,
    token: bytes | None = None,
    key_id: str | None = None,
    label: str | None = None,
) -> IssuedKey:
    """Mint a key for ``account_id``; ``token``/``key_id`` are for reproducible tests."""
    raw = token if token is not None else secrets.token_bytes(32)
    if len(raw) != 32:
        raise ValueError("token must be 32 bytes")
    kid = key_id if key_id is not None else secrets.token_hex(6)
    body = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    plaintext = f"{KEY_PREFIX}_{kid}_{body}"
    record = ApiKey(
        key_id=kid,
        account_id=account_id,
        digest=key_digest(secret, plaintext),
        created_at=now,
        label=label,
    )
    return IssuedKey(plaintext=plaintext, record=record)


def parse_key_id(plaintext: str) -> str | None:
    """The key id of a well-formed key, else None."""
    match = _KEY_RE.match(plaintext)
    return match.group(1) if match else None


def verify_key(secret: bytes, plaintext: str, record: ApiKey | None) -> bool:
    """Constant-time check of ``plaintext`` against ``record`` (None: always False).

    The HMAC is computed and compared even when there is no record, so the time taken
    does not tell an unknown key from a wrong one.
    """
    return digest_matches(key_digest(secret, plaintext), record)


def digest_matches(digest: str, record: ApiKey | None) -> bool:
    """Constant-time check of a presented key's ``digest`` (see :func:`key_digest`)."""
    expected = record.digest if record is not None else _DUMMY_DIGEST
    matches = hmac.compare_digest(digest, expected)
    return matches and record is not None and record.active
