"""``daybook serve``: everything in one command, embedded servers by default."""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys

import click
import psycopg

from api import merchant_store
from daybook.cli import merchant_json, write_private
from daybook.embedded import embedded_servers
from daybook.migrate import migrate
from daybook.settings import Settings
from daybook.supervisor import Child, Supervisor

log = logging.getLogger(__name__)

ADMIN_KEY_FILE = "admin-key"
DEMO_MERCHANT_FILE = "demo-merchant.json"


def serve(settings: Settings, host: str, port: int) -> int:
    """Starts servers if needed, migrates, then supervises API, workers and projections."""
    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    admin_key = settings.admin_key or _admin_key_from_file(settings)
    with embedded_servers(home, database_url=settings.database_url, redis_url=settings.redis_url) as (
        database_url,
        redis_url,
    ):
        migrate(database_url)
        if settings.embedded_database and settings.demo_merchant:
            _ensure_demo_merchant(settings, database_url)
        env = {
            **os.environ,
            "DAYBOOK_DATABASE_URL": database_url,
            "DAYBOOK_REDIS_URL": redis_url,
            "DAYBOOK_ADMIN_KEY": admin_key,
        }
        python = sys.executable
        children = [
            Child("api", [python, "-m", "daybook", "api", "--host", host, "--port", str(port)]),
            Child("worker", [python, "-m", "daybook", "worker"]),
            Child("projections", [python, "-m", "daybook", "projections"]),
        ]
        click.echo(f"Daybook is serving on http://{host}:{port} (Ctrl-C stops it)", err=True)
        return Supervisor(children, env).run()


def _admin_key_from_file(settings: Settings) -> str:
    path = settings.home / ADMIN_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    key = "dbk_admin_" + secrets.token_urlsafe(32)
    write_private(path, key + "\n")
    click.echo(f"Generated the admin key into {path}", err=True)
    return key


def _ensure_demo_merchant(settings: Settings, database_url: str) -> None:
    path = settings.home / DEMO_MERCHANT_FILE
    if path.exists():
        return
    with psycopg.connect(database_url, autocommit=True) as conn:
        created = merchant_store.create_merchant(conn, "Demo merchant")
    text = json.dumps(merchant_json(created), indent=2)
    write_private(path, text + "\n")
    click.echo(f"Created a demo merchant (saved in {path}):\n{text}")
