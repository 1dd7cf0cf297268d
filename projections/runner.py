"""Runs projections over the event store's notification log, a batch at a time.

Each projection follows the log in a thread of its own, on a connection of its own kept
for the life of the process, and writes a batch's rows and its new position in ONE
transaction, so every event is reflected exactly once. New events are noticed through
LISTEN/NOTIFY (the recorder notifies channel ``daybook_events`` on every insert), with
polling as the fallback for a lost notification. Gap-free reading is safe because the
recorder's table lock makes commit order equal notification-id order. The events are
read and decoded once per process (:class:`projections.source.EventSource`).

A batch that fails is retried with backoff. A failure that is not the database being
unreachable and that persists is narrowed down to its event by bisection (the good
events around it are committed); that event's key is quarantined for this projection
only (``projections/quarantine.py``) and the projection goes on. Quarantine is logged
and counted (``/metrics``, ``/readyz``); ``daybook projections retry`` re-applies.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import DomainEventProtocol
from psycopg import sql

from projections import metrics, quarantine
from projections.source import EventSource, Positioned, Undecodable

log = logging.getLogger(__name__)

BATCH_SIZE_MAX = 2_000
POLL_INTERVAL_S = 0.5
GATHER_S = 0.025
"""How long a projection that caught up waits before its next batch, so the batch gathers the
events written meanwhile: under a steady load of many small commits, a batch per commit cost
the projections process more CPU (and PostgreSQL a transaction and an fsync each) than
anything they do with the events. It adds at most this much to the lag."""
NOTIFY_CHANNEL = "daybook_events"
RETRY_DELAYS_S = (0.1, 0.5, 2.0)
"""Waits before each retry of a failing batch, before it is narrowed down."""
RECONNECT_DELAY_MAX_S = 10.0

TRANSIENT_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError)
"""The database being unreachable, restarting or timing out: retried, never quarantined."""

_SELECT_POSITION = sql.SQL("SELECT notification_id FROM projection_tracking WHERE projection = %s")
_ENSURE_TRACKING = sql.SQL(
    "INSERT INTO projection_tracking (projection, notification_id) VALUES (%s, 0) ON CONFLICT DO NOTHING"
)
_ADVANCE = sql.SQL(
    "UPDATE projection_tracking SET notification_id = %s, updated_at = now() "
    "WHERE projection = %s AND notification_id = %s"
)
LOCK_STATEMENT = sql.SQL("SELECT pg_advisory_xact_lock(%s)")


class Projection(Protocol):
    """A read model fed by events."""

    @property
    def name(self) -> str:
        """Its row in ``projection_tracking`` (and in the quarantine)."""

    def quarantine_key(self, event: DomainEventProtocol[Any] | Undecodable) -> UUID | None:
        """What is set aside if ``event`` cannot be applied; ``None`` for events not of this projection."""

    def process(self, cursor: psycopg.Cursor[Any], events: Sequence[Positioned]) -> None:
        """Writes the rows for ``events`` using ``cursor``'s transaction."""

    def reapply(self, cursor: psycopg.Cursor[Any], keys: Sequence[UUID], position: int) -> None:
        """Writes again what ``keys`` (released from quarantine) contribute, up to ``position``."""

    def reset(self) -> None:
        """Forgets what it cached (its transaction was rolled back)."""


class StaleTrackingError(RuntimeError):
    """Another runner advanced the same projection first; this batch was rolled back."""


def lock_key(projection_name: str) -> int:
    """The advisory lock a projection's writers hold per transaction (runner, retry, rebuild swap)."""
    return 0x0DA7_0000_0000 + zlib.crc32(projection_name.encode())


def ensure_tracking(conn: psycopg.Connection[Any], projection_name: str) -> int:
    """The projection's tracked position (a new projection starts at 0)."""
    conn.execute(_ENSURE_TRACKING, (projection_name,))
    row = conn.execute(_SELECT_POSITION, (projection_name,)).fetchone()
    return int(row[0]) if row else 0


def commit_batch(
    conn: psycopg.Connection[Any],
    projection: Projection,
    events: Sequence[Positioned],
    position: int,
    *,
    end: int | None = None,
) -> int:
    """Applies ``events`` (those after ``position``) and advances tracking, in one transaction.

    Events whose key is quarantined are skipped and counted. Returns the new position:
    ``end`` when given (``events`` are then all the projection's events up to it, maybe
    none), else the last event's.

    Raises:
        StaleTrackingError: the tracked position is no longer ``position``.
    """
    name = projection.name
    try:
        with conn.transaction(), conn.cursor() as cursor:
            cursor.execute(LOCK_STATEMENT, (lock_key(name),))
            held = quarantine.keys(conn, name)
            kept: list[Positioned] = []
            skipped: dict[UUID, int] = {}
            for positioned in events:
                key = projection.quarantine_key(positioned[1]) if held else None
                if key is not None and key in held:
                    skipped[key] = skipped.get(key, 0) + 1
                else:
                    kept.append(positioned)
            projection.process(cursor, kept)
            quarantine.count_skipped(cursor, name, skipped)
            new_position = end if end is not None else events[-1][0]
            cursor.execute(_ADVANCE, (new_position, name, position))
            if cursor.rowcount != 1:
                raise StaleTrackingError(name)
    except BaseException:
        projection.reset()
        raise
    return new_position


class _Follower:
    """One projection following the log in its own thread."""

    def __init__(self, runner: ProjectionRunner, projection: Projection) -> None:
        self.runner = runner
        self.projection = projection
        self.wake = threading.Event()
        self.position: int | None = None
        self.thread = threading.Thread(target=self.run, name=f"projection-{projection.name}", daemon=True)

    def run(self) -> None:
        delay_s = 0.5
        while not self.runner.stopping.is_set():
            try:
                with psycopg.connect(self.runner.database_url, autocommit=True) as conn:
                    self.position = ensure_tracking(conn, self.projection.name)
                    delay_s = 0.5
                    self._follow(conn)
            except TRANSIENT_ERRORS as error:
                log.warning("projection %s lost the database (%s); reconnecting", self.projection.name, error)
            except Exception:
                log.exception("projection %s failed; restarting it", self.projection.name)
            self.runner.stopping.wait(delay_s)
            delay_s = min(RECONNECT_DELAY_MAX_S, delay_s * 2)

    def _follow(self, conn: psycopg.Connection[Any]) -> None:
        while not self.runner.stopping.is_set():
            self.wake.clear()
            covered = self.step(conn)
            if covered == 0:
                self.wake.wait(POLL_INTERVAL_S)
            elif covered < self.runner.batch_size:
                # Caught up: let the next batch gather (one transaction, one fsync, for many events).
                self.runner.stopping.wait(GATHER_S)

    def step(self, conn: psycopg.Connection[Any]) -> int:
        """Processes the next batch; returns how many events it covered."""
        assert self.position is not None
        events = self.runner.source.after(self.position, self.runner.batch_size)
        if not events:
            return 0
        try:
            self.position = self._commit_with_retries(conn, events)
            metrics.observe_batch(self.projection.name, len(events))
        except StaleTrackingError:
            log.info("projection %s advanced elsewhere; continuing from there", self.projection.name)
            self.position = ensure_tracking(conn, self.projection.name)
        return len(events)

    def _commit_with_retries(self, conn: psycopg.Connection[Any], events: Sequence[Positioned]) -> int:
        assert self.position is not None
        error: Exception | None = None
        for delay_s in (0.0, *RETRY_DELAYS_S):
            if self.runner.stopping.wait(delay_s):
                return self.position
            try:
                return commit_batch(conn, self.projection, events, self.position)
            except (StaleTrackingError, *TRANSIENT_ERRORS):
                raise
            except Exception as failure:  # may be a poison event: retried, then narrowed down
                error = failure
                log.warning("projection %s: a batch of %d failed: %r", self.projection.name, len(events), failure)
        assert error is not None
        return self._isolate(conn, list(events), error)

    def _isolate(self, conn: psycopg.Connection[Any], events: list[Positioned], error: Exception) -> int:
        """Commits the events before the first failing one, quarantines it, returns the new position."""
        assert self.position is not None
        while len(events) > 1:
            half = events[: len(events) // 2]
            try:
                self.position = commit_batch(conn, self.projection, half, self.position)
                events = events[len(half) :]
            except (StaleTrackingError, *TRANSIENT_ERRORS):
                raise
            except Exception as failure:
                events, error = half, failure
        try:
            return commit_batch(conn, self.projection, events, self.position)
        except (StaleTrackingError, *TRANSIENT_ERRORS):
            raise
        except Exception as failure:
            error = failure
        return self._quarantine(conn, events[0], error)

    def _quarantine(self, conn: psycopg.Connection[Any], positioned: Positioned, error: Exception) -> int:
        assert self.position is not None
        position, event = positioned
        name = self.projection.name
        key = self.projection.quarantine_key(event)
        if key is None:  # nothing to set aside: the failure is not this event's
            raise error
        merchant_id = getattr(event, "merchant_id", None)
        with conn.transaction(), conn.cursor() as cursor:
            cursor.execute(LOCK_STATEMENT, (lock_key(name),))
            quarantine.add(cursor, name, key, merchant_id=merchant_id, position=position, error=repr(error))
            cursor.execute(_ADVANCE, (position, name, self.position))
            if cursor.rowcount != 1:
                raise StaleTrackingError(name)
        log.error(
            "projection %s quarantined %s at position %d: %r",
            name,
            key,
            position,
            error,
            extra={"projection": name, "position": position, "aggregate_id": str(key)},
        )
        metrics.observe_quarantine(name)
        self.runner.on_quarantine(name)
        return position


class ProjectionRunner:
    """Feeds projections from the application's notification log, each in its own thread."""

    def __init__(
        self,
        app: Application[Any],
        database_url: str,
        projections: Sequence[Projection],
        *,
        batch_size: int = BATCH_SIZE_MAX,
        on_quarantine: Callable[[str], None] | None = None,
    ) -> None:
        self.app = app
        self.database_url = database_url
        self.projections = list(projections)
        self.batch_size = batch_size
        self.source = EventSource(app)
        self.stopping = threading.Event()
        self._followers = [_Follower(self, projection) for projection in self.projections]
        self._on_quarantine = on_quarantine

    def catch_up(self, projection: Projection) -> int:
        """Processes, in the calling thread, every event recorded so far; returns how many."""
        follower = _Follower(self, projection)
        processed = 0
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            follower.position = ensure_tracking(conn, projection.name)
            while not self.stopping.is_set() and (count := follower.step(conn)):
                processed += count
        return processed

    def run_forever(self) -> None:
        """Follows the log with every projection until :meth:`stop`."""
        listener = threading.Thread(target=self._listen, name="projection-listen", daemon=True)
        listener.start()
        for follower in self._followers:
            follower.thread.start()
        self.stopping.wait()
        for follower in self._followers:
            follower.wake.set()
            follower.thread.join(timeout=30)
        listener.join(timeout=5)

    def stop(self) -> None:
        """Asks :meth:`run_forever` to return once each projection's current batch is done."""
        self.stopping.set()
        for follower in self._followers:
            follower.wake.set()

    def on_quarantine(self, projection_name: str) -> None:
        """Called after a projection quarantined an event."""
        if self._on_quarantine is not None:
            self._on_quarantine(projection_name)

    def _wake_all(self) -> None:
        for follower in self._followers:
            follower.wake.set()

    def _listen(self) -> None:
        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.database_url, autocommit=True) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
                    while not self.stopping.is_set():
                        for _ in conn.notifies(timeout=POLL_INTERVAL_S, stop_after=1):
                            self._wake_all()
            except psycopg.Error:
                log.warning("projection listener lost its connection; polling until it reconnects")
                self.stopping.wait(1.0)
