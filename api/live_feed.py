"""The live feed: one database reader per API process, fanned out to every SSE client.

A :class:`FeedHub` thread LISTENs on the audit chain projection's channel (polling as a
fallback), reads the chained events after its cursor in position order, renders each
event of a merchant someone follows as one SSE frame, once, and hands the frames to that
merchant's subscribers on the event loop. Work per event is the same for one client or
a thousand, and API processes on any number of machines each need one reader.

A subscriber's buffer is bounded: a client too slow to keep up is closed with a reason
(it resumes with ``Last-Event-ID``), never buffered without bound. Resuming reads the
merchant's chained events from the database (the read pool, under row-level security)
until it meets the hub's cursor, then switches to the hub's frames in the same event-loop
step, so nothing is missed and nothing repeats.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent
from prometheus_client import Counter, Gauge
from psycopg import sql

from adapters.audit_events import canonical, stored_event_shape, with_hashes
from adapters.settings import Settings

log = logging.getLogger(__name__)

CHANNEL = "daybook_audit_chain"
DRAIN_SIGNAL = signal.SIGUSR1
"""Sent by ``daybook api`` to its server's worker processes before it stops them: close the live feeds."""
PAGE_SIZE = 500
RECONNECT_SECONDS_MAX = 5.0

# The reader (owner role) joins the chain to the store for every merchant; a client's
# catch-up reads the ``audit_events`` view under row-level security (schema/0010).
# Only the followed merchants' rows are read (``audit_chain_merchant_idx``): reading every
# merchant's events with their states to render a few, or none, was the second costliest
# statement PostgreSQL ran under load, for every API process.
_FOLLOWED_AFTER = sql.SQL(
    "SELECT c.position, c.merchant_id, c.hash, c.prev_hash, c.stream_id, c.version, e.topic, e.state "
    "FROM audit_chain c JOIN daybook_events e ON e.notification_id = c.position "
    "WHERE c.merchant_id = ANY(%s) AND c.position > %s AND c.position <= %s ORDER BY c.position LIMIT %s"
)
_MERCHANT_BETWEEN = sql.SQL(
    "SELECT position, merchant_id, hash, prev_hash, stream_id, version, topic, state FROM audit_events "
    "WHERE merchant_id = %s AND position > %s AND position <= %s ORDER BY position LIMIT %s"
)
_HEAD = sql.SQL("SELECT coalesce(max(position), 0) FROM audit_chain")
_LISTEN = sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL))

CONNECTIONS = Gauge("daybook_live_feed_connections", "Open live feed streams", multiprocess_mode="livesum")
POSITION = Gauge(
    "daybook_live_feed_position", "The chain position the process's live feed reached", multiprocess_mode="livemin"
)
CLOSED = Counter("daybook_live_feed_closed_total", "Live feed streams the server ended, by reason", ["reason"])
FRAMES = Counter("daybook_live_feed_frames_total", "Events the live feed reader rendered (once for all clients)")


@dataclass(frozen=True, slots=True)
class Frame:
    """One event as sent: its position and its SSE bytes (``id``, ``event``, ``data``)."""

    position: int
    merchant_id: UUID
    data: bytes


def render(row: Sequence[Any], mapper: Any) -> Frame:
    """The SSE frame of one chain row joined to its stored event."""
    position, merchant_id = row[0], row[1]
    shape = stored_event_shape(mapper, position, StoredEvent(row[4], row[5], row[6], bytes(row[7])))
    event = with_hashes(shape, bytes(row[2]).hex(), bytes(row[3]).hex())
    # Canonical JSON (sorted keys, no spaces): a client can hash the data again as it came.
    data = b"id: %d\nevent: %s\ndata: %s\n\n" % (position, event["type"].encode(), canonical(event))
    return Frame(position, merchant_id, data)


def rows_between(conn: psycopg.Connection[Any], merchant_id: UUID, after: int, until: int) -> list[Any]:
    """A page of the merchant's chained events in ``(after, until]``."""
    return conn.execute(_MERCHANT_BETWEEN, (merchant_id, after, until, PAGE_SIZE)).fetchall()


@dataclass(eq=False)
class Subscriber:
    """One connected client: its merchant, its bounded buffer and why it must stop.

    Attributes:
        merchant_id: whose events it follows.
        buffer_max: frames held for it at most; one more closes it as too slow.
        frames: frames the hub handed over, not yet sent.
        resync: the hub skipped a batch for it; read the range from the database.
        closed: the reason it must stop (``None`` while it may go on).
    """

    merchant_id: UUID
    buffer_max: int
    frames: deque[Frame] = field(default_factory=deque)
    resync: bool = False
    closed: str | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, frames: list[Frame]) -> None:
        """Buffers frames, or marks the subscriber too slow when they would not fit."""
        # Over by one batch at most: the hub hands frames a page at a time.
        if len(self.frames) > self.buffer_max:
            self.frames.clear()
            CLOSED.labels("slow").inc()
            self.close("too slow to keep up; resume with Last-Event-ID")
            return
        self.frames.extend(frames)
        self.wake.set()

    def close(self, reason: str) -> None:
        """Asks the client's stream to end with ``reason``."""
        if self.closed is None:
            self.closed = reason
        self.wake.set()


class FeedHub:
    """The process's one reader of the chain, and its subscribers by merchant."""

    def __init__(self, database_url: str, settings: Settings, mapper: Any) -> None:
        self._database_url = database_url
        self._settings = settings
        self._mapper = mapper
        self._subscribers: dict[UUID, set[Subscriber]] = {}
        # Replaced, never mutated: the reader thread takes the current set without a lock.
        self._followed: frozenset[UUID] = frozenset()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.cursor = 0
        """Every chained event up to here was handed to the subscribers (event-loop side)."""
        self.draining = False
        """The process is stopping: streams are closed and no new one is taken."""

    @property
    def connections(self) -> int:
        """Clients connected to this process."""
        return sum(len(group) for group in self._subscribers.values())

    def start(self) -> None:
        """Starts from the chain's head and follows it in a thread of its own."""
        self._loop = asyncio.get_running_loop()
        with psycopg.connect(self._database_url, autocommit=True) as conn:
            row = conn.execute(_HEAD).fetchone()
        self.cursor = int(row[0]) if row else 0
        POSITION.set(self.cursor)
        self._thread = threading.Thread(target=self._follow, args=(self.cursor,), name="feed-hub", daemon=True)
        self._thread.start()

    def drain(self) -> None:
        """Closes every client's stream and takes no new one: the process is about to stop.

        Called on :data:`DRAIN_SIGNAL`, which ``daybook api`` sends its server's worker
        processes before it stops them (a server waits for open responses, and a live
        feed's never ends of itself), and again by :meth:`stop`.
        """
        self.draining = True
        for group in self._subscribers.values():
            for subscriber in group:
                subscriber.close("the server is shutting down; resume with Last-Event-ID")

    def stop(self) -> None:
        """Closes every client's stream and stops the reader."""
        self.drain()
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def subscribe(self, merchant_id: UUID) -> Subscriber:
        """A new subscriber of the merchant's events after :attr:`cursor` (no await: atomic)."""
        subscriber = Subscriber(merchant_id, self._settings.sse_buffer_events_max)
        self._subscribers.setdefault(merchant_id, set()).add(subscriber)
        self._followed = frozenset(self._subscribers)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Forgets a subscriber whose client left."""
        group = self._subscribers.get(subscriber.merchant_id)
        if group is not None:
            group.discard(subscriber)
            if not group:
                del self._subscribers[subscriber.merchant_id]
                self._followed = frozenset(self._subscribers)

    def deliver(self, frames: list[Frame], rendered: frozenset[UUID], cursor: int) -> None:
        """Hands the reader's frames up to ``cursor`` to the subscribers (on the event loop).

        ``rendered`` are the merchants the reader rendered frames for; a subscriber of
        another merchant joined after the reader chose, and reads the range itself.
        """
        by_merchant: dict[UUID, list[Frame]] = {}
        for frame in frames:
            by_merchant.setdefault(frame.merchant_id, []).append(frame)
        for merchant_id, group in self._subscribers.items():
            if merchant_id not in rendered:
                # Subscribed after the reader chose whom to render: read this range itself.
                for subscriber in group:
                    subscriber.resync = True
                    subscriber.wake.set()
                continue
            batch = by_merchant.get(merchant_id)
            if batch:
                for subscriber in group:
                    subscriber.offer(batch)
        self.cursor = max(self.cursor, cursor)
        POSITION.set(self.cursor)
        FRAMES.inc(len(frames))

    def _follow(self, cursor: int) -> None:
        delay = 0.1
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._database_url, autocommit=True) as conn:
                    conn.execute(_LISTEN)
                    delay = 0.1
                    while not self._stopping.is_set():
                        cursor = self._read_after(conn, cursor)
                        for _ in conn.notifies(timeout=self._settings.sse_poll_seconds, stop_after=1):
                            pass
            except psycopg.Error:
                log.warning("live feed reader lost its connection; reconnecting in %.1f s", delay, exc_info=True)
            except Exception:
                # An event it cannot render: never a dead reader; it tries again (and says so) until fixed.
                log.exception("live feed reader failed after position %d; retrying in %.1f s", cursor, delay)
            self._stopping.wait(delay)
            delay = min(delay * 2, RECONNECT_SECONDS_MAX)

    def _read_after(self, conn: psycopg.Connection[Any], cursor: int) -> int:
        """Hands over the followed merchants' events after ``cursor`` up to the chain's head; returns the head.

        With nobody followed, it only moves to the head: a subscriber who comes later
        reads the range it missed itself (:meth:`deliver`).
        """
        row = conn.execute(_HEAD).fetchone()
        head = int(row[0]) if row else 0
        while cursor < head:
            rendered = self._followed
            rows = (
                conn.execute(_FOLLOWED_AFTER, (list(rendered), cursor, head, PAGE_SIZE)).fetchall() if rendered else []
            )
            frames = [render(row, self._mapper) for row in rows]
            # A full page ends at its last row; a shorter one reached the head.
            cursor = int(rows[-1][0]) if len(rows) == PAGE_SIZE else head
            self._call(self.deliver, frames, rendered, cursor)
        return cursor

    def _call(self, function: Callable[..., None], *arguments: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(function, *arguments)
