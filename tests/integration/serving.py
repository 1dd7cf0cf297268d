"""Helpers to run a whole ``daybook serve`` as a user would, and to wait on it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], T | None], *, timeout_s: float, what: str) -> T:
    """Polls ``condition`` until it returns something truthy, or fails after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


SERVING_LINE = "Daybook is serving on"
"""What ``daybook serve`` prints once its supervisor found every part ready."""


class ServeProcess:
    """``daybook serve`` in a directory of its own, on the embedded servers."""

    def __init__(self, directory: Path, port: int, extra_env: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        env = {
            k: v
            for k, v in os.environ.items()
            if k
            not in {
                "DAYBOOK_DATABASE_URL",
                "DAYBOOK_REDIS_URL",
                "DAYBOOK_ADMIN_KEY",
                "DAYBOOK_HOME",
            }
        }
        env.update(extra_env or {})
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "serve.log"
        self._serving_lines = 0

    def start(self) -> None:
        """Starts the process (in a process group of its own, as a shell does); waits until it serves.

        Serving is ``/readyz`` 200 and the supervisor saying so: the API can answer before
        the supervisor's own readiness check has passed, and a child that dies in between
        stops ``daybook serve`` instead of being restarted.
        """
        self._serving_lines = self._serving_count()
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daybook", "serve", "--port", str(self.port)],
            cwd=self.directory,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._ready, timeout_s=90, what=f"daybook serve to be ready (log: {self.log_path})")

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"daybook serve exited early:\n{self.log_path.read_text()[-4000:]}")
        try:
            ready = httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False
        return ready and self._serving_count() > self._serving_lines

    def _serving_count(self) -> int:
        if not self.log_path.exists():
            return 0
        return self.log_path.read_text(errors="replace").count(SERVING_LINE)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 60) -> int:
        """Sends ``sig`` and returns the exit code."""
        assert self.process is not None
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout_s)
        self.process = None
        return code

    def interrupt(self, timeout_s: float = 60) -> int:
        """Ctrl-C in its terminal: SIGINT to its whole process group; returns the exit code."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGINT)
        code = self.process.wait(timeout=timeout_s)
        self.process = None
        return code

    def kill_if_running(self) -> None:
        """Last-resort cleanup for a failed test."""
        if self.process is not None and self.process.poll() is None:
            self.stop(signal.SIGTERM)

    def redis_url(self) -> str:
        """The URL of this serve's embedded Redis."""
        config = (self.directory / ".daybook" / "redis" / "redis.conf").read_text().splitlines()
        port = next(line.split()[1] for line in config if line.startswith("port "))
        return f"redis://127.0.0.1:{port}/0"


API_ADMIN_KEY = "dbk_admin_api_process_test_key"
ROOT = Path(__file__).resolve().parents[2]


class ApiProcess:
    """``python -m daybook api`` on the session's servers, as compose runs it."""

    def __init__(
        self,
        database_url: str,
        redis_url: str,
        log_path: Path,
        *,
        port: int | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {
            **os.environ,
            "DAYBOOK_DATABASE_URL": database_url,
            "DAYBOOK_REDIS_URL": redis_url,
            "DAYBOOK_ADMIN_KEY": API_ADMIN_KEY,
            "DAYBOOK_RATE_LIMIT_PER_MINUTE": "1000000",
            "DAYBOOK_LOG_LEVEL": "WARNING",
            **(extra_env or {}),
        }
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "daybook", "api", "--port", str(self.port)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its server's worker processes are in its group
            )
        wait_for(self._up, timeout_s=30, what=f"daybook api to answer (log: {log_path})")

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"daybook api exited early:\n{self.log_path.read_text()[-4000:]}")
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def pids(self) -> set[int]:
        """``daybook api`` and its server's worker processes (they run the application)."""
        parent = psutil.Process(self.process.pid)
        return {parent.pid, *(child.pid for child in parent.children(recursive=True))}

    def create_merchant(self, name: str = "Test merchant") -> dict[str, Any]:
        """A merchant made through the admin endpoint, with its keys."""
        response = httpx.post(
            f"{self.base_url}/v1/admin/merchants",
            json={"name": name},
            headers={"Authorization": f"Bearer {API_ADMIN_KEY}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.process.wait(timeout=5)
        self._kill_group()

    def kill(self) -> None:
        """``kill -9`` of the API and its server's workers: no shutdown hook runs, in-flight batches die mid-way."""
        self._kill_group()
        self.process.wait(timeout=10)

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
