"""What every benchmark records about the machine and the code it measured."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent


def git_commit() -> str | None:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=BENCH_DIR,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except OSError:
        return None
    return commit or None


def machine_info(**versions: Any) -> dict[str, Any]:
    """CPU, Python, platform, modelshield version and commit, plus ``versions``.

    Example:
        >>> machine_info(numpy="2.0")["numpy"]
        '2.0'
    """
    import modelshield

    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "modelshield": modelshield.__version__,
        "git_commit": git_commit(),
        **versions,
    }
