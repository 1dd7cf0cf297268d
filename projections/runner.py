"""Runs projections over the event store's notification log, a batch at a time.

Each projection reads the events after its tracked position, turns a batch of them into
read-model rows and writes the rows and its new position in ONE transaction, so every
event is reflected exactly once. The library's ProjectionRunner handles one event per
transaction; batching keeps a projection ahead of group-committed writes (hundreds of
events per commit). New events are noticed through LISTEN/NOTIFY (the recorder notifies
channel ``daybook_events`` on every insert), with a polling fallback for a lost notify.
Gap-free reading is safe because the recorder's table lock makes commit order equal
notification-id order.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, Protocol

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import DomainEventProtocol
from psycopg import sql

log = logging.getLogger(__name__)

BATCH_SIZE_MAX = 2_000
POLL_INTERVAL_S = 0.5
NOTIFY_CHANNEL = "daybook_events"

_SELECT_POSITION = sql.SQL("SELECT notification_id FROM projection_tracking WHERE projection = %s")
_ENSURE_TRACKING = sql.SQL(
    "INSERT INTO projection_tracking (projection, notification_id) VALUES (%s, 0) ON CONFLICT DO NOTHING"
)
_ADVANCE = sql.SQL(
    "UPDATE projection_tracking SET notification_id = %s, updated_at = now() "
    "WHERE projection = %s AND notification_id = %s"
)


class Projection(Protocol):
    """A read model fed by events."""

    name: str

    def process(self, cursor: psycopg.Cursor[Any], events: Sequence[tuple[int, DomainEventProtocol[Any]]]) -> None:
        """Writes the rows for ``events`` (position, event) using ``cursor``'s transaction."""


class StaleTrackingError(RuntimeError):
    """Another runner advanced the same projection first; this batch was rolled back."""


class ProjectionRunner:
    """Feeds one or more projections from the application's notification log."""

    def __init__(self, app: Application[Any], database_url: str, projections: Sequence[Projection]) -> None:
        self.app = app
        self.database_url = database_url
        self.projections = list(projections)
        self.stopping = threading.Event()
        self._wake = threading.Event()

    def catch_up(self, projection: Projection, *, batch_size: int = BATCH_SIZE_MAX) -> int:
        """Processes every event recorded so far; returns how many were processed."""
        processed = 0
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(_ENSURE_TRACKING, (projection.name,))
            while not self.stopping.is_set():
                count = self._process_batch(conn, projection, batch_size)
                processed += count
                if count < batch_size:
                    return processed
        return processed

    def _process_batch(self, conn: psycopg.Connection[Any], projection: Projection, batch_size: int) -> int:
        row = conn.execute(_SELECT_POSITION, (projection.name,)).fetchone()
        position = int(row[0]) if row else 0
        notifications = self.app.recorder.select_notifications(
            start=position, limit=batch_size, inclusive_of_start=False
        )
        if not notifications:
            return 0
        events = [(n.id, self.app.mapper.to_domain_event(n)) for n in notifications]
        with conn.transaction(), conn.cursor() as cursor:
            projection.process(cursor, events)
            cursor.execute(_ADVANCE, (notifications[-1].id, projection.name, position))
            if cursor.rowcount != 1:
                raise StaleTrackingError(projection.name)
        return len(notifications)

    def run_forever(self) -> None:
        """Catches up, then follows new events until :meth:`stop`."""
        listener = threading.Thread(target=self._listen, name="projection-listen", daemon=True)
        listener.start()
        while not self.stopping.is_set():
            self._wake.clear()
            for projection in self.projections:
                try:
                    self.catch_up(projection)
                except StaleTrackingError:
                    log.info("projection %s advanced elsewhere; continuing", projection.name)
                except Exception:
                    log.exception("projection %s failed; retrying", projection.name)
                    self.stopping.wait(1.0)
            self._wake.wait(POLL_INTERVAL_S)

    def stop(self) -> None:
        """Asks :meth:`run_forever` to return after its current batch."""
        self.stopping.set()
        self._wake.set()

    def _listen(self) -> None:
        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.database_url, autocommit=True) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
                    while not self.stopping.is_set():
                        for _ in conn.notifies(timeout=POLL_INTERVAL_S, stop_after=1):
                            self._wake.set()
            except psycopg.Error:
                log.warning("projection listener lost its connection; polling until it reconnects")
                self.stopping.wait(1.0)
