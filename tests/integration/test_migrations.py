"""Migrations: ordered, recorded, idempotent, one transaction each."""

from __future__ import annotations

import uuid
from pathlib import Path

import psycopg
import pytest

from adapters.migrate import MigrationError, discover, migrate


def test_migrations_apply_twice_without_error_and_record_each_file_once(database_url: str) -> None:
    assert migrate(database_url) == []
    assert migrate(database_url) == []
    with psycopg.connect(database_url) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == [m.version for m in discover()]


def test_event_store_tables_exist_before_the_application_runs(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {
        "daybook_events",
        "merchants",
        "api_keys",
        "webhook_secrets",
        "projection_tracking",
    } <= tables


def test_a_failing_migration_leaves_nothing_half_applied(database_url: str, tmp_path: Path) -> None:
    table = f"half_{uuid.uuid4().hex[:8]}"
    (tmp_path / "0001_good.sql").write_text(f"CREATE TABLE {table}_ok (id int);")
    (tmp_path / "0002_bad.sql").write_text(f"CREATE TABLE {table} (id int); SELECT * FROM no_such_table;")
    with pytest.raises(psycopg.errors.UndefinedTable):
        migrate(database_url, tmp_path)
    with psycopg.connect(database_url) as conn:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
        recorded = conn.execute("SELECT count(*) FROM schema_migrations WHERE version = '0002_bad'").fetchone()
        conn.execute(f"DROP TABLE IF EXISTS {table}_ok")
        conn.execute("DELETE FROM schema_migrations WHERE version = '0001_good'")
    assert exists == (False,)
    assert recorded == (0,)


def test_an_applied_migration_that_was_edited_is_refused(database_url: str, tmp_path: Path) -> None:
    table = f"edited_{uuid.uuid4().hex[:8]}"
    path = tmp_path / "0001_edited_probe.sql"
    path.write_text(f"CREATE TABLE {table} (id int);")
    migrate(database_url, tmp_path)
    path.write_text(f"CREATE TABLE {table} (id bigint);")
    try:
        with pytest.raises(MigrationError):
            migrate(database_url, tmp_path)
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE {table}")
            conn.execute("DELETE FROM schema_migrations WHERE version = '0001_edited_probe'")
