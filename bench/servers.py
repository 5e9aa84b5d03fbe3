"""Start, probe and stop the benchmark's server processes (loopback only).

Each server is one uvicorn process with one worker, its stdout and stderr captured to
files so a failed start can show what went wrong. :class:`ServerProcess` is a context
manager: leaving it always terminates the process and waits for it (killing it if a
graceful shutdown takes too long), whatever happened inside.

Example:
    >>> first, second = free_ports(2)
    >>> first != second
    True
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType

import httpx

HOST = "127.0.0.1"
TAIL_LINES = 40
GRACEFUL_STOP_S = 30.0


class ServerFailed(RuntimeError):
    """A server exited early or never became ready; the message carries its output tail."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports the OS says are free on loopback (each bound to port 0).

    All sockets stay open until every port is chosen, so the ports differ.
    """
    with ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(sock.getsockname()[1])
        return ports


def tail(path: Path, lines: int = TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no output)"
    return "\n".join(text.splitlines()[-lines:]) or "(no output)"


class ServerProcess:
    """One server process on ``127.0.0.1:port``.

    Example:
        >>> server = ServerProcess("bare", ["python", "-m", "http.server"], 8000,
        ...                        env={}, cwd=Path("."), log_dir=Path("."))
        >>> server.base_url
        'http://127.0.0.1:8000'
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        port: int,
        *,
        env: Mapping[str, str],
        cwd: Path,
        log_dir: Path,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.port = port
        self.env = dict(env)
        self.cwd = cwd
        self.stdout_path = log_dir / f"{name}.stdout.log"
        self.stderr_path = log_dir / f"{name}.stderr.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def __enter__(self) -> ServerProcess:
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            # a new session keeps a terminal's Ctrl-C away from the server, so the
            # benchmark's own cleanup (terminate + wait) is what stops it
            self._process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> int | None:
        """Terminate and wait (SIGKILL after GRACEFUL_STOP_S); the exit code."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=GRACEFUL_STOP_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return process.returncode

    def exit_code(self) -> int | None:
        """None while running."""
        return None if self._process is None else self._process.poll()

    def failure(self, reason: str) -> ServerFailed:
        return ServerFailed(
            f"{self.name} server {reason}\n"
            f"command: {' '.join(self.argv)}\n"
            f"--- stderr (last {TAIL_LINES} lines) ---\n{tail(self.stderr_path)}\n"
            f"--- stdout (last {TAIL_LINES} lines) ---\n{tail(self.stdout_path)}"
        )

    def check_alive(self) -> None:
        code = self.exit_code()
        if code is not None:
            raise self.failure(f"exited with code {code}")

    def wait_ready(self, timeout_s: float, path: str = "/v2/health/live") -> float:
        """Poll ``GET path`` until it answers 200; seconds it took, or ServerFailed."""
        started = time.monotonic()
        deadline = started + timeout_s
        with httpx.Client(base_url=self.base_url, timeout=1.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                self.check_alive()
                try:
                    if client.get(path).status_code == 200:
                        return time.monotonic() - started
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        self.check_alive()
        raise self.failure(f"was not ready at {self.base_url}{path} within {timeout_s:.0f} s")


def child_env(extra: Mapping[str, str], drop: Sequence[str] = ()) -> dict[str, str]:
    """This process's environment plus ``extra``, minus ``drop``."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return env
