"""What makes the API ready: PostgreSQL and Redis answer, projections are not far behind."""

from __future__ import annotations

import logging

import redis
from psycopg import sql
from psycopg_pool import ConnectionPool

log = logging.getLogger(__name__)

_DATABASE_ANSWERS = sql.SQL("SELECT 1")
_PROJECTION_LAG = sql.SQL(
    "SELECT coalesce((SELECT max(notification_id) FROM daybook_events), 0) "
    "- coalesce((SELECT min(notification_id) FROM projection_tracking), "
    "(SELECT max(notification_id) FROM daybook_events), 0)"
)


def check_readiness(pool: ConnectionPool, redis_client: redis.Redis[bytes], lag_max: int) -> list[str]:
    """The reasons the service is not ready; empty when it is."""
    reasons: list[str] = []
    try:
        with pool.connection(timeout=2.0) as conn:
            conn.execute(_DATABASE_ANSWERS)
            row = conn.execute(_PROJECTION_LAG).fetchone()
            lag = int(row[0]) if row else 0
            if lag > lag_max:
                reasons.append(f"projections are {lag} events behind (limit {lag_max})")
    except Exception as error:
        log.warning("readiness: database check failed: %s", error)
        reasons.append("postgresql does not answer")
    try:
        redis_client.ping()
    except Exception as error:
        log.warning("readiness: redis check failed: %s", error)
        reasons.append("redis does not answer")
    return reasons
