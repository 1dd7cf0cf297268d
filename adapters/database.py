"""Connections: psycopg pools for SQL paths and the eventsourcing application's env."""

from __future__ import annotations

from typing import Any

import msgspec
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import set_json_dumps
from psycopg_pool import ConnectionPool

from adapters import event_store
from adapters.settings import Settings

# JSON parameters (read-model lines and anomalies, stored headers) dumped by msgspec
# rather than the standard library: a fifth of a rebuild's time went to json.dumps.
set_json_dumps(msgspec.json.encode)

APPLICATION_NAME = "daybook"
READER_ROLE = "daybook_reader"
"""The role the API reads read models as: row-level security applies to it (schema/0041)."""


def connection_pool(
    database_url: str, settings: Settings, *, size: int | None = None, name: str = "sql", role: str | None = None
) -> ConnectionPool:
    """An open pool whose connections carry Daybook's statement and lock timeouts.

    With ``role``, every connection acts as that role from its start (``SET ROLE``):
    the API's read pool is :data:`READER_ROLE`.
    """
    options = (
        f"-c statement_timeout={settings.statement_timeout_ms} "
        f"-c lock_timeout={settings.lock_timeout_ms} "
        "-c idle_in_transaction_session_timeout=60000"
    )
    if role is not None:
        options += f" -c role={role}"
    max_size = size or settings.database_pool_size
    pool = ConnectionPool(
        database_url,
        min_size=1,
        max_size=max_size,
        kwargs={
            "options": options,
            "application_name": f"{APPLICATION_NAME}-{name}",
            "autocommit": True,
        },
        timeout=10.0,
        max_waiting=1_000,
        name=name,
        open=False,
    )
    pool.open(wait=True, timeout=30.0)
    return pool


def eventsourcing_env(database_url: str, settings: Settings, *, pool_size: int = 5) -> dict[str, str]:
    """The eventsourcing environment for the Daybook application on ``database_url``.

    Tables come from ``schema/`` migrations, never from the library at run time.
    """
    info: dict[str, Any] = conninfo_to_dict(database_url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(info.get("dbname", "postgres")),
        "POSTGRES_HOST": str(info.get("host", "127.0.0.1")),
        "POSTGRES_PORT": str(info.get("port", "5432")),
        "POSTGRES_USER": str(info.get("user", "postgres")),
        "POSTGRES_PASSWORD": str(info.get("password", "")),
        "POSTGRES_POOL_SIZE": str(pool_size),
        "POSTGRES_MAX_OVERFLOW": "0",
        "POSTGRES_CONNECT_TIMEOUT": "10",
        "POSTGRES_LOCK_TIMEOUT": str(max(1, settings.lock_timeout_ms // 1000)),
        "POSTGRES_IDLE_IN_TRANSACTION_SESSION_TIMEOUT": "60",
        # No ping per checkout (a round trip on every save); the recorder retries
        # operations that fail on a dropped connection.
        "POSTGRES_PRE_PING": "n",
        "CREATE_TABLE": "n",
        "APPLICATION_RECORDER_TOPIC": event_store.TOPIC,
        "MAPPER_TOPIC": event_store.MAPPER_TOPIC,
        # Loads start from the latest snapshot; saves snapshot what is due (domain/snapshots/).
        "SNAPSHOTS": "y" if settings.snapshots else "n",
    }
