"""Idempotency keys live in day partitions: made ahead, dropped whole past the TTL, read through an index."""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from adapters import idempotency_keys
from adapters.migrate import SCHEMA_DIR, migrate
from tests.conftest import Servers

TTL = timedelta(hours=24)


def _partitions(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'idempotency_keys'::regclass ORDER BY 1"
    )
    return [row[0] for row in rows]


def _today(conn: psycopg.Connection) -> date:
    row = conn.execute("SELECT (now() AT TIME ZONE 'UTC')::date").fetchone()
    assert row is not None
    return row[0]  # type: ignore[no-any-return]


def test_the_coming_days_have_partitions_before_any_key_is_claimed(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        idempotency_keys.maintain_partitions(conn, TTL)
        today = _today(conn)
        names = _partitions(conn)
    for offset in range(idempotency_keys.PARTITION_DAYS_AHEAD + 1):
        assert idempotency_keys.partition_name(today + timedelta(days=offset)) in names


def test_a_day_past_the_ttl_is_dropped_as_a_whole_partition_and_recent_keys_stay(database_url: str) -> None:
    merchant_id = uuid.uuid4()
    with psycopg.connect(database_url, autocommit=True) as conn:
        today = _today(conn)
        old_day = today - timedelta(days=10)
        idempotency_keys.create_partition(conn, old_day)
        assert idempotency_keys.claim(conn, merchant_id, "recent-key", b"h", TTL)
        conn.execute(
            "INSERT INTO idempotency_keys (merchant_id, idempotency_key, request_sha256, state, created_at, "
            "locked_until) VALUES (%s, 'old-key', 'h', 'done', %s, %s)",
            (merchant_id, datetime(old_day.year, old_day.month, old_day.day, 12, tzinfo=UTC), datetime.now(UTC)),
        )

        changes = idempotency_keys.maintain_partitions(conn, TTL)

        left = [
            r[0]
            for r in conn.execute("SELECT idempotency_key FROM idempotency_keys WHERE merchant_id = %s", (merchant_id,))
        ]
        names = _partitions(conn)
        dropped_table = conn.execute("SELECT to_regclass(%s)", (idempotency_keys.partition_name(old_day),)).fetchone()
    assert idempotency_keys.partition_name(old_day) in changes.dropped
    assert dropped_table == (None,)
    assert left == ["recent-key"]
    # Yesterday's keys are still live for part of today: their partition is kept.
    assert idempotency_keys.partition_name(today - timedelta(days=1)) in names


def test_a_key_claimed_before_its_ttl_is_not_replayed_even_while_its_partition_is_kept(database_url: str) -> None:
    merchant_id = uuid.uuid4()
    with psycopg.connect(database_url, autocommit=True) as conn:
        first = idempotency_keys.claim(conn, merchant_id, "key", b"first", TTL)
        assert first is not None
        idempotency_keys.complete(conn, merchant_id, "key", first, status_code=201, headers={}, body=b"{}")
        conn.execute(
            "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE merchant_id = %s",
            (merchant_id,),
        )
        again = idempotency_keys.claim_or_find(conn, merchant_id, "key", b"second", TTL)
        held = idempotency_keys.claim_or_find(conn, merchant_id, "key", b"third", TTL)
    assert isinstance(again, datetime)
    assert isinstance(held, idempotency_keys.StoredRequest)
    assert held.request_sha256 == b"second"


def test_a_key_lookup_reads_only_the_live_partitions_through_their_index(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        idempotency_keys.maintain_partitions(conn, TTL)
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(
            row[0]
            for row in conn.execute(
                sql.SQL("EXPLAIN ") + idempotency_keys._LIVE,
                (uuid.uuid4(), "key", TTL),
            )
        )
        today = _today(conn)
    read = set(re.findall(r" on (idempotency_keys_p\d{8})", plan))
    assert "Seq Scan" not in plan
    assert "Index" in plan
    # Only the partitions that may hold a live key are read: yesterday's, today's and later ones.
    assert idempotency_keys.partition_name(today) in read
    assert idempotency_keys.partition_name(today - timedelta(days=2)) not in read
    assert "Subplans Removed" in plan


@pytest.fixture
def fresh_database(servers: Servers) -> Iterator[str]:
    name = f"daybook_migrate_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(servers.admin_database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(servers.admin_database_url)
    params["dbname"] = name
    yield make_conninfo(**params)
    with psycopg.connect(servers.admin_database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_the_migration_moves_existing_keys_into_day_partitions(fresh_database: str, tmp_path: Path) -> None:
    before = tmp_path / "before"
    before.mkdir()
    for path in SCHEMA_DIR.glob("*.sql"):
        if path.name < "0020":
            shutil.copy(path, before / path.name)
    migrate(fresh_database, before)
    merchant_id = uuid.uuid4()
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        for key, age in (("a-week-ago", timedelta(days=7)), ("just-now", timedelta(0))):
            conn.execute(
                "INSERT INTO idempotency_keys (merchant_id, idempotency_key, request_sha256, state, status_code, "
                "headers, body, created_at, locked_until) "
                "VALUES (%s, %s, 'h', 'done', 201, '{}', 'b', now() - %s, now())",
                (merchant_id, key, age),
            )

    migrate(fresh_database)

    with psycopg.connect(fresh_database, autocommit=True) as conn:
        kind = conn.execute("SELECT relkind FROM pg_class WHERE relname = 'idempotency_keys'").fetchone()
        moved = conn.execute(
            "SELECT idempotency_key, tableoid::regclass::text FROM idempotency_keys ORDER BY created_at"
        ).fetchall()
        today = _today(conn)
        leftover = conn.execute("SELECT to_regclass('idempotency_keys_unpartitioned')").fetchone()
    assert kind == ("p",)
    assert [key for key, _ in moved] == ["a-week-ago", "just-now"]
    assert moved[1][1] == idempotency_keys.partition_name(today)
    assert leftover == (None,)


def test_of_concurrent_claims_of_one_key_exactly_one_wins(database_url: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    merchant_id = uuid.uuid4()

    def claim(_: int) -> bool:
        with psycopg.connect(database_url, autocommit=True) as conn:
            return idempotency_keys.claim(conn, merchant_id, "contended", b"h", TTL) is not None

    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(claim, range(8)))
    assert won.count(True) == 1


def test_a_claim_on_a_day_without_a_partition_creates_it(fresh_database: str) -> None:
    migrate(fresh_database)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        today = _today(conn)
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(idempotency_keys.partition_name(today))))
        claimed = idempotency_keys.claim(conn, uuid.uuid4(), "key", b"h", TTL)
        names = _partitions(conn)
    assert claimed is not None
    assert idempotency_keys.partition_name(today) in names
