"""The drift check: a sample of each read model's rows replayed from their events.

Scheduled every ``DAYBOOK_DRIFT_CHECK_INTERVAL_SECONDS``. A drifted row is a bug (the
projection wrote something the events do not say): it is logged with the aggregate and
the column, and counted in ``read_model_checks`` for ``/metrics``. The whole comparison,
every aggregate of a merchant, is ``daybook audit replay``.
"""

from __future__ import annotations

import logging
from typing import Any

from eventsourcing.application import Application
from psycopg import sql
from psycopg_pool import ConnectionPool

from projections import compare
from projections.registry import all_projections
from projections.state import AggregateStateProjection

log = logging.getLogger(__name__)

SAMPLE_SIZE = 50
DETAIL_LENGTH_MAX = 2_000

_RECORD = sql.SQL(
    "INSERT INTO read_model_checks (projection, sampled, drifted, detail) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (projection) DO UPDATE SET checked_at = now(), sampled = EXCLUDED.sampled, "
    "drifted = EXCLUDED.drifted, detail = EXCLUDED.detail"
)


def check_drift(pool: ConnectionPool[Any], app: Application[Any], sample_size: int = SAMPLE_SIZE) -> dict[str, int]:
    """Checks a sample of every read model; returns the drifted rows per projection."""
    drifted: dict[str, int] = {}
    for projection in all_projections(app):
        if not isinstance(projection, AggregateStateProjection):
            continue
        with pool.connection() as conn:
            sampled, differences = compare.sampled_differences(app, conn, projection, sample_size)
            keys = sorted({str(difference.key) for difference in differences})
            detail = "; ".join(f"{d.key} {d.column}: {d.actual!r} != {d.expected!r}" for d in differences)
            conn.execute(_RECORD, (projection.name, sampled, len(keys), detail[:DETAIL_LENGTH_MAX]))
        drifted[projection.name] = len(keys)
        if differences:
            log.error(
                "read model %s drifted from its events on %d of %d sampled rows: %s",
                projection.name,
                len(keys),
                sampled,
                detail[:DETAIL_LENGTH_MAX],
                extra={"projection": projection.name, "aggregate_ids": keys},
            )
    return drifted
