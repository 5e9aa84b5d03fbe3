"""Server secret and admin token: from the environment, else from owner-only files.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "secret"
    >>> first = read_or_create_secret_file(path)
    >>> first == read_or_create_secret_file(path), oct(path.stat().st_mode & 0o777)
    (True, '0o600')
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from modelshield.errors import ConfigError
from modelshield.policy.schema import Policy

ADMIN_TOKEN_ENV = "MODELSHIELD_ADMIN_TOKEN"
MIN_SECRET_BYTES = 16


def read_or_create_secret_file(path: Path) -> str:
    """Read a secret file, creating it (mode 0600, 32 random bytes) when missing."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race: use its secret
            return path.read_text(encoding="utf-8").strip()
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(value + "\n")
        return value
    except OSError as exc:
        raise ConfigError(f"cannot read secret file {path}: {exc.strerror}") from None
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"secret file {path} must be readable by its owner only (chmod 600)")
    if not value:
        raise ConfigError(f"secret file {path} is empty")
    return value


@dataclass(frozen=True, slots=True)
class Secrets:
    server_secret: bytes
    server_secret_source: str
    admin_token: str
    admin_token_source: str


def load_secrets(policy: Policy, environ: Mapping[str, str] | None = None) -> Secrets:
    """Resolve the server secret and admin token for ``policy``."""
    env = os.environ if environ is None else environ
    state_dir = Path(policy.server.state_dir)
    server_env = policy.server.secret_env
    if env.get(server_env):
        server = env[server_env]
        server_source = f"${server_env}"
    else:
        file = Path(policy.server.secret_file or state_dir / "secret")
        server = read_or_create_secret_file(file)
        server_source = str(file)
    if len(server.encode("utf-8")) < MIN_SECRET_BYTES:
        raise ConfigError(f"the server secret from {server_source} must be >= 16 bytes")
    if env.get(ADMIN_TOKEN_ENV):
        admin = env[ADMIN_TOKEN_ENV]
        admin_source = f"${ADMIN_TOKEN_ENV}"
    else:
        file = state_dir / "admin-token"
        admin = read_or_create_secret_file(file)
        admin_source = str(file)
    return Secrets(server.encode("utf-8"), server_source, admin, admin_source)
