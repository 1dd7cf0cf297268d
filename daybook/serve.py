"""``daybook serve``: everything in one command, embedded servers by default."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import sys

import click

from adapters.migrate import migrate
from adapters.settings import Settings
from api.scrape import MULTIPROCESS_DIR_VARIABLE
from daybook.embedded import embedded_servers
from daybook.home import admin_key, ensure_demo_merchant, fresh_metrics_directory
from daybook.supervisor import Child, Readiness, Supervisor

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 0.5


def serve(settings: Settings, host: str, port: int) -> int:
    """Starts servers if needed, migrates, then supervises API, workers and projections.

    Raises:
        click.ClickException: the port is taken (checked before anything starts).
    """
    check_port_free(host, port)
    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    key = admin_key(settings)
    with embedded_servers(home, database_url=settings.database_url, redis_url=settings.redis_url) as (
        database_url,
        redis_url,
    ):
        migrate(database_url)
        if settings.embedded_database and settings.demo_merchant:
            ensure_demo_merchant(settings, database_url)
        env = {
            **os.environ,
            "DAYBOOK_DATABASE_URL": database_url,
            "DAYBOOK_REDIS_URL": redis_url,
            "DAYBOOK_ADMIN_KEY": key,
            # Every part counts into one directory, so the API's /metrics speaks for all.
            MULTIPROCESS_DIR_VARIABLE: str(fresh_metrics_directory(home)),
        }
        python = sys.executable
        children = [
            Child("api", [python, "-m", "daybook", "api", "--host", host, "--port", str(port)]),
            Child("worker", [python, "-m", "daybook", "worker"]),
            Child("projections", [python, "-m", "daybook", "projections"]),
        ]
        readiness = Readiness(
            check=lambda: listens(host, port),
            on_ready=lambda: click.echo(f"Daybook is serving on http://{host}:{port} (Ctrl-C stops it)", err=True),
        )
        code = Supervisor(children, env, readiness).run()
        if code != 0:
            click.echo("Daybook stopped: a part failed to start or kept failing (see the log above).", err=True)
        return code


def check_port_free(host: str, port: int) -> None:
    """Fails with a clear message when something already listens on ``host:port``.

    Raises:
        click.ClickException: the address is in use, or cannot be bound at all.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # As uvicorn binds: a port left in TIME_WAIT by a previous run is not "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                msg = f"port {port} on {host} is already in use; stop what listens there or pass --port"
                raise click.ClickException(msg) from None
            raise click.ClickException(f"cannot listen on {host}:{port}: {error.strerror}") from None


def listens(host: str, port: int) -> bool:
    """Whether something accepts connections on ``host:port`` (a wildcard host means this machine)."""
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    with contextlib.suppress(OSError), socket.create_connection((target, port), timeout=CONNECT_TIMEOUT_S):
        return True
    return False
