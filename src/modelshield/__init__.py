"""modelshield: protect machine-learning models served over an API from extraction.

The curated public API; implementation modules may change, these names do not
(guarded by ``tests/test_public_api.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Account",
    "AccountService",
    "ApiKey",
    "Clock",
    "FakeClock",
    "ModelBackend",
    "ModelShieldError",
    "Policy",
    "QueryEvent",
    "Store",
    "SystemClock",
    "__version__",
    "create_app",
    "demo_policy",
    "load_policy",
    "open_store",
]

_LOCATIONS = {
    "Account": "modelshield.identity.records",
    "AccountService": "modelshield.identity.service",
    "ApiKey": "modelshield.identity.records",
    "Clock": "modelshield.clock",
    "FakeClock": "modelshield.clock",
    "ModelBackend": "modelshield.models.base",
    "ModelShieldError": "modelshield.errors",
    "Policy": "modelshield.policy.schema",
    "QueryEvent": "modelshield.events.record",
    "Store": "modelshield.storage.base",
    "SystemClock": "modelshield.clock",
    "create_app": "modelshield.gateway.app",
    "demo_policy": "modelshield.policy.demo",
    "load_policy": "modelshield.policy.loader",
    "open_store": "modelshield.storage.registry",
}

if TYPE_CHECKING:
    from modelshield.clock import Clock, FakeClock, SystemClock
    from modelshield.errors import ModelShieldError
    from modelshield.events.record import QueryEvent
    from modelshield.gateway.app import create_app
    from modelshield.identity.records import Account, ApiKey
    from modelshield.identity.service import AccountService
    from modelshield.models.base import ModelBackend
    from modelshield.policy.demo import demo_policy
    from modelshield.policy.loader import load_policy
    from modelshield.policy.schema import Policy
    from modelshield.storage.base import Store
    from modelshield.storage.registry import open_store


def __getattr__(name: str) -> Any:
    # lazy: `import modelshield` stays cheap (no FastAPI, no scikit-learn at import time)
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module 'modelshield' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
