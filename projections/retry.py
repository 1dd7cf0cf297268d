"""``daybook projections retry NAME [POSITION]``: apply quarantined events again.

Once the cause of a quarantine is fixed (a bug, a missing upcaster, a column too
narrow), the projection writes each released key's state from its stored events and
applies its later events as usual. It runs under the projection's advisory lock, so a
batch of the running projection never interleaves with it. An entry whose write fails again
stays quarantined and is reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from projections import quarantine
from projections.quarantine import QuarantineEntry
from projections.runner import LOCK_STATEMENT, Projection, ensure_tracking, lock_key


@dataclass(frozen=True, slots=True)
class RetryReport:
    """What a retry released, and what still fails (and stays quarantined)."""

    released: list[QuarantineEntry]
    still_failing: list[tuple[QuarantineEntry, str]]
    position: int


def retry_quarantined(
    conn: psycopg.Connection[Any], projection: Projection, from_position: int = 0, limit: int = 1_000
) -> RetryReport:
    """Applies again up to ``limit`` of the projection's entries from ``from_position`` on.

    Each entry is written in a savepoint of its own: one whose cause persists stays
    quarantined, with its error reported, while the others are released.
    """
    name = projection.name
    released: list[QuarantineEntry] = []
    failing: list[tuple[QuarantineEntry, str]] = []
    with conn.transaction(), conn.cursor() as cursor:
        cursor.execute(LOCK_STATEMENT, (lock_key(name),))
        position = ensure_tracking(conn, name)
        for entry in quarantine.entries(conn, name, from_position, limit):
            try:
                with conn.transaction():
                    projection.reapply(cursor, [entry.quarantine_key], position)
                    quarantine.release(cursor, name, [entry.quarantine_key])
            except psycopg.OperationalError:
                raise
            except Exception as error:  # its cause is not fixed: it stays set aside
                projection.reset()
                failing.append((entry, repr(error)))
            else:
                released.append(entry)
    return RetryReport(released, failing, position)
