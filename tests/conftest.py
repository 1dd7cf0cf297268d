"""Real servers for the tests: the configured ones, else the embedded ones.

``DAYBOOK_DATABASE_URL`` / ``DAYBOOK_REDIS_URL`` point the suite at running servers
(CI uses the machine's). Without them the embedded PostgreSQL and Redis start in a
temporary directory of the session's own. Either way every test session gets a fresh
database (dropped at the end) and Redis database 13, emptied before and after.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from adapters.migrate import migrate
from adapters.settings import Settings
from daybook.embedded import embedded_servers

TEST_REDIS_DB = 13


@dataclass(frozen=True)
class Servers:
    """The servers a test session talks to."""

    admin_database_url: str
    redis_base_url: str


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    """Configured servers, or embedded ones started for the session."""
    # A home of its own per session: two test runs at once never stop each other's servers.
    home = Path(tempfile.mkdtemp(prefix="daybook-test-"))
    database_url = os.environ.get("DAYBOOK_DATABASE_URL") or None
    redis_url = os.environ.get("DAYBOOK_REDIS_URL") or None
    try:
        with embedded_servers(home, database_url=database_url, redis_url=redis_url) as (db, rd):
            yield Servers(db, rd)
    finally:
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def fresh_database(servers: Servers) -> Iterator[str]:
    """A new, migrated database on the session's server; dropped afterwards."""
    name = f"daybook_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(servers.admin_database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(servers.admin_database_url)
    params["dbname"] = name
    url = make_conninfo(**params)
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(servers.admin_database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def database_url(servers: Servers) -> Iterator[str]:
    """A fresh, migrated database for this session; dropped afterwards."""
    with fresh_database(servers) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(servers: Servers) -> Iterator[str]:
    """A Redis database index of its own, emptied before and after the session."""
    base = servers.redis_base_url.rsplit("/", 1)[0]
    url = f"{base}/{TEST_REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def settings() -> Settings:
    """Default settings (tests pass server URLs explicitly)."""
    return Settings()
