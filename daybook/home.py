"""Files Daybook keeps under ``DAYBOOK_HOME``: the generated admin key, the demo merchant."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import uuid
from pathlib import Path

import click
import psycopg

from adapters import merchants
from adapters.database import eventsourcing_env
from adapters.settings import Settings
from domain.application import Daybook
from domain.context import CommandContext

ADMIN_KEY_FILE = "admin-key"
METRICS_DIRECTORY = "metrics"
DEMO_MERCHANT_FILE = "demo-merchant.json"
DEMO_ACTOR = "system:serve"
"""The audit actor of the demo merchant's creation by ``daybook serve``."""


def write_private(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` readable by its owner only (mode 600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    path.chmod(0o600)


def fresh_metrics_directory(home: Path) -> Path:
    """``<home>/metrics``, emptied: the processes of one ``daybook serve`` count into it.

    Its files are Prometheus multiprocess files (``PROMETHEUS_MULTIPROC_DIR``); what an
    earlier run left there would otherwise be added to this run's counters.
    """
    directory = home / METRICS_DIRECTORY
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, mode=0o700)
    return directory


def admin_key(settings: Settings) -> str:
    """``DAYBOOK_ADMIN_KEY``, else the key in ``<home>/admin-key``, generated on first use."""
    if settings.admin_key:
        return settings.admin_key
    path = settings.home / ADMIN_KEY_FILE
    if path.exists():
        return path.read_text().strip()
    key = "dbk_admin_" + secrets.token_urlsafe(32)
    write_private(path, key + "\n")
    click.echo(f"Generated the admin key into {path}", err=True)
    return key


def ensure_demo_merchant(settings: Settings, database_url: str) -> None:
    """Creates the demo merchant once, saving its keys in ``<home>/demo-merchant.json``."""
    path = settings.home / DEMO_MERCHANT_FILE
    if path.exists():
        return
    context = CommandContext(actor=DEMO_ACTOR, request_id=f"serve:{uuid.uuid4()}")
    app = Daybook(env=eventsourcing_env(database_url, settings, pool_size=1))
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            created = merchants.create_merchant(conn, app, "Demo merchant", context)
    finally:
        app.close()
    text = json.dumps(created.as_json(), indent=2)
    write_private(path, text + "\n")
    click.echo(f"Created a demo merchant (saved in {path}):\n{text}")
