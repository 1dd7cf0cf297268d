"""``daybook serve``: everything in one command, embedded servers by default."""

from __future__ import annotations

import logging
import os
import sys

import click

from adapters.migrate import migrate
from adapters.settings import Settings
from daybook.embedded import embedded_servers
from daybook.home import admin_key, ensure_demo_merchant
from daybook.supervisor import Child, Supervisor

log = logging.getLogger(__name__)


def serve(settings: Settings, host: str, port: int) -> int:
    """Starts servers if needed, migrates, then supervises API, workers and projections."""
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
        }
        python = sys.executable
        children = [
            Child("api", [python, "-m", "daybook", "api", "--host", host, "--port", str(port)]),
            Child("worker", [python, "-m", "daybook", "worker"]),
            Child("projections", [python, "-m", "daybook", "projections"]),
        ]
        click.echo(f"Daybook is serving on http://{host}:{port} (Ctrl-C stops it)", err=True)
        return Supervisor(children, env).run()
