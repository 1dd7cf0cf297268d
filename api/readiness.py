"""What makes the API ready: PostgreSQL and Redis answer, projections keep up.

A projection is *lagging* when more than ``DAYBOOK_PROJECTION_LAG_MAX`` events are not
reflected yet, and *stalled* when it is behind and has not advanced for
``DAYBOOK_PROJECTION_STALL_SECONDS``, whatever its lag: either makes the API not ready.
Quarantined events make it *degraded*: still ready (reads of the set-aside aggregates
are replayed from the event store, so answers stay correct), with the reason listed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis
from psycopg import Connection, sql
from psycopg_pool import ConnectionPool

from projections import quarantine
from projections.registry import every_projection_name

log = logging.getLogger(__name__)

_DATABASE_ANSWERS = sql.SQL("SELECT 1")
_HEAD = sql.SQL("SELECT coalesce(max(notification_id), 0) FROM daybook_events")
_DRIFT = sql.SQL("SELECT projection, drifted FROM read_model_checks")
_POSITIONS = sql.SQL(
    "SELECT projection, notification_id, extract(epoch FROM now() - updated_at) FROM projection_tracking"
)


@dataclass(frozen=True, slots=True)
class ProjectionState:
    """Where one projection stands.

    Attributes:
        lag: events recorded but not reflected yet (a projection never run lags by all).
        idle_seconds: since it last advanced (``None`` when it never ran).
        quarantined: keys it set aside.
    """

    lag: int
    idle_seconds: float | None
    quarantined: int


def drifted_rows(conn: Connection[Any]) -> dict[str, int]:
    """The drifted rows the last drift check found, per projection."""
    return {str(name): int(drifted) for name, drifted in conn.execute(_DRIFT)}


def projection_states(conn: Connection[Any]) -> dict[str, ProjectionState]:
    """The state of every projection."""
    head_row = conn.execute(_HEAD).fetchone()
    head = int(head_row[0]) if head_row else 0
    tracked = {str(name): (int(position), float(idle)) for name, position, idle in conn.execute(_POSITIONS)}
    held = quarantine.counts(conn)
    states = {}
    for name in every_projection_name():
        position, idle = tracked.get(name, (0, None))
        states[name] = ProjectionState(head - position, idle, held.get(name, 0))
    return states


@dataclass(frozen=True, slots=True)
class Readiness:
    """The verdict: not ready (``reasons``), or ready though ``degraded``."""

    reasons: list[str]
    degraded: list[str]


def check_readiness(
    pool: ConnectionPool, redis_client: redis.Redis[bytes], *, lag_max: int, stall_seconds: float
) -> Readiness:
    """Why the service is not ready, and what degrades it while ready."""
    reasons: list[str] = []
    degraded: list[str] = []
    try:
        with pool.connection(timeout=2.0) as conn:
            conn.execute(_DATABASE_ANSWERS)
            states = projection_states(conn)
    except Exception as error:
        log.warning("readiness: database check failed: %s", error)
        reasons.append("postgresql does not answer")
        states = {}
    for name, state in states.items():
        if state.lag > lag_max:
            reasons.append(f"projection {name} is {state.lag} events behind (limit {lag_max})")
        elif state.lag > 0 and state.idle_seconds is not None and state.idle_seconds > stall_seconds:
            idle = round(state.idle_seconds)
            reasons.append(f"projection {name} is stalled: {state.lag} events behind, no progress for {idle} s")
        if state.quarantined:
            degraded.append(f"projection {name} has {state.quarantined} quarantined aggregates")
    try:
        redis_client.ping()
    except Exception as error:
        log.warning("readiness: redis check failed: %s", error)
        reasons.append("redis does not answer")
    return Readiness(reasons, degraded)
