"""The curated public API (STYLE.md #2): fails when __all__ drifts."""

from __future__ import annotations

import subprocess
import sys

import modelshield

EXPECTED = {
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
}


def test_all_is_exactly_the_curated_list() -> None:
    assert set(modelshield.__all__) == EXPECTED
    for name in modelshield.__all__:
        assert getattr(modelshield, name) is not None, name


def test_import_does_no_work() -> None:
    code = (
        "import sys, modelshield; "
        "heavy = [m for m in ('fastapi', 'sklearn', 'uvicorn', 'httpx') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
