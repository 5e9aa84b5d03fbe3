"""Choose a store backend by URI (``memory://``, ``sqlite:///path``, ``redis://host/db``).

Backends are imported lazily, so an optional driver is only needed when its scheme is
used.

Example:
    >>> store = open_store("memory://")
    >>> type(store).__name__
    'MemoryStore'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from urllib.parse import urlsplit

from modelshield.errors import ConfigError
from modelshield.storage.base import Store

# scheme -> "module:factory"; factories take the URI
_BACKENDS: dict[str, str] = {
    "memory": "modelshield.storage.memory:MemoryStore",
    "sqlite": "modelshield.storage.sqlite:SQLiteStore",
    "redis": "modelshield.storage.redis:RedisStore",
}


def register_backend(scheme: str, target: str) -> None:
    """Make ``scheme://`` URIs open the store class named by ``module:attribute``."""
    _BACKENDS[scheme] = target


def supported_schemes() -> list[str]:
    return sorted(_BACKENDS)


def open_store(uri: str) -> Store:
    """Build (not yet connect) the store for ``uri``."""
    scheme = urlsplit(uri).scheme
    target = _BACKENDS.get(scheme)
    if target is None:
        raise ConfigError(
            f"storage.uri: unsupported scheme {scheme!r}; use one of "
            + ", ".join(f"{s}://" for s in supported_schemes())
        )
    module_name, attribute = target.split(":")
    module = importlib.import_module(module_name)
    factory: Callable[[str], Store] = getattr(module, attribute)
    return factory(uri)
