"""What makes the API ready: PostgreSQL and Redis answer, projections are not far behind."""

from __future__ import annotations

import logging
from typing import Any

import redis
from psycopg import Connection, sql
from psycopg_pool import ConnectionPool

from projections.registry import projection_names

log = logging.getLogger(__name__)

_DATABASE_ANSWERS = sql.SQL("SELECT 1")
_HEAD = sql.SQL("SELECT coalesce(max(notification_id), 0) FROM daybook_events")
_POSITIONS = sql.SQL("SELECT projection, notification_id FROM projection_tracking")


def projection_lags(conn: Connection[Any]) -> dict[str, int]:
    """Events recorded but not yet reflected, per projection (a projection never run lags by all)."""
    head_row = conn.execute(_HEAD).fetchone()
    head = int(head_row[0]) if head_row else 0
    positions = {str(name): int(position) for name, position in conn.execute(_POSITIONS)}
    return {name: head - positions.get(name, 0) for name in projection_names()}


def check_readiness(pool: ConnectionPool, redis_client: redis.Redis[bytes], lag_max: int) -> list[str]:
    """The reasons the service is not ready; empty when it is."""
    reasons: list[str] = []
    try:
        with pool.connection(timeout=2.0) as conn:
            conn.execute(_DATABASE_ANSWERS)
            for name, lag in projection_lags(conn).items():
                if lag > lag_max:
                    reasons.append(f"projection {name} is {lag} events behind (limit {lag_max})")
    except Exception as error:
        log.warning("readiness: database check failed: %s", error)
        reasons.append("postgresql does not answer")
    try:
        redis_client.ping()
    except Exception as error:
        log.warning("readiness: redis check failed: %s", error)
        reasons.append("redis does not answer")
    return reasons
