"""The log read ahead for a rebuild: one stream type's events, a page at a time, in a thread.

A rebuild catching up from position 0 spends its time in Python (decoding events,
applying them, building rows) and in the database (reading pages, upserting rows). A
reader thread with a connection of its own reads and decodes the next page while the
rebuild applies and writes the current one, so the database's share overlaps Python's.

A page covers a range of positions, ``(start, end]``, and holds only the events of that
range whose stream type is the projection's: the state of the others (inventory items'
events, for the orders projection) is neither read nor decoded. The projection would
skip them anyway (:meth:`projections.state.AggregateStateProjection.quarantine_key`).
The database selects by the aggregate named in the topic; every other topic is checked
once against the class it resolves to, so an event stored under a registered alias is
still read. A stored event that cannot be decoded stands in its place as
:class:`projections.source.Undecodable`, as everywhere.
Positions ``<= head`` are all committed or never will be (the recorder's table lock
makes commit order equal position order), so ``end`` can be tracked as reached.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import psycopg
from eventsourcing.application import Application
from eventsourcing.persistence import Notification
from eventsourcing.utils import resolve_topic
from psycopg import sql

from projections.source import Positioned, decode, topic_stream_type

PAGES_AHEAD_MAX = 2
"""Pages read and decoded ahead of the one being applied (each holds up to a page of events)."""
PUT_WAIT_S = 0.1

_HEAD = sql.SQL("SELECT coalesce(max(notification_id), 0) FROM daybook_events")
# Every position's topic, but the state only of the events whose topic names the stream type.
_PAGE = sql.SQL(
    "SELECT notification_id, originator_id, originator_version, topic, "
    "CASE WHEN split_part(split_part(topic, ':', 2), '.', 1) = %s THEN state END FROM daybook_events "
    "WHERE notification_id > %s AND notification_id <= %s ORDER BY notification_id LIMIT %s"
)
_STATE = sql.SQL("SELECT state FROM daybook_events WHERE notification_id = %s")


def log_head(conn: psycopg.Connection[Any]) -> int:
    """The log's last position (0 when empty)."""
    row = conn.execute(_HEAD).fetchone()
    return int(row[0]) if row else 0


def read_page(
    conn: psycopg.Connection[Any], app: Application[Any], stream_type: str, position: int, end: int
) -> list[Positioned]:
    """The decoded events of ``stream_type`` (``"Order"``) in the positions ``(position, end]``."""
    rows = conn.execute(_PAGE, (stream_type, position, end, max(0, end - position)), prepare=True).fetchall()
    events: list[Positioned] = []
    for notification_id, originator_id, version, topic, selected in rows:
        state = selected
        if state is None:
            if not holds(topic, stream_type):
                continue
            # A topic registered under another name (``register_topic``) for this stream's class.
            row = conn.execute(_STATE, (notification_id,)).fetchone()
            state = row[0] if row else None
        notification = Notification(originator_id, version, topic, bytes(state or b""), id=notification_id)
        events.append((notification_id, decode(app, notification)))
    return events


@functools.lru_cache(maxsize=1_024)
def holds(topic: str, stream_type: str) -> bool:
    """Whether events stored under ``topic`` are of ``stream_type``, as projections tell them.

    That is the class the topic resolves to (:meth:`AggregateStateProjection.quarantine_key`),
    or, for a topic that resolves to nothing, the aggregate named in it (:class:`Undecodable`).
    """
    try:
        event_class = resolve_topic(topic)
    except Exception:  # unresolvable: decoding it gives an Undecodable, typed by its topic
        return topic_stream_type(topic) == stream_type
    return str(getattr(event_class, "__qualname__", "")).split(".", 1)[0] == stream_type


@dataclass(frozen=True, slots=True)
class Page:
    """The events of one stream type in the positions ``(start, end]``.

    Attributes:
        events: those events (maybe none), in position order.
        end: the position reached once they are applied.
        head: the log's last position when the page was read.
    """

    events: list[Positioned]
    end: int
    head: int


class LogPages:
    """Pages of the log after ``start``, until the head is within ``tail_max`` positions.

    Iterate inside ``with``: leaving it (an error, an interruption) stops the reader.
    What the reader fails with is raised by the iteration.
    """

    def __init__(
        self,
        app: Application[Any],
        database_url: str,
        stream_type: str,
        *,
        start: int,
        page_size: int,
        tail_max: int,
    ) -> None:
        assert page_size > 0
        assert tail_max >= 0
        self.app = app
        self.database_url = database_url
        self.stream_type = stream_type
        self.start = start
        self.page_size = page_size
        self.tail_max = tail_max
        self._pages: queue.Queue[Page | BaseException | None] = queue.Queue(maxsize=PAGES_AHEAD_MAX)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"rebuild-read-{stream_type}", daemon=True)

    def __enter__(self) -> LogPages:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stopping.set()
        self._thread.join(timeout=30)

    def __iter__(self) -> Iterator[Page]:
        while (page := self._pages.get()) is not None:
            if isinstance(page, BaseException):
                raise page
            yield page

    def _read(self) -> None:
        try:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                position = self.start
                while not self._stopping.is_set():
                    head = log_head(conn)
                    if head - position <= self.tail_max:
                        break
                    end = min(position + self.page_size, head)
                    self._put(Page(read_page(conn, self.app, self.stream_type, position, end), end, head))
                    position = end
            self._put(None)
        except BaseException as error:  # raised in the iterating thread
            self._put(error)

    def _put(self, item: Page | BaseException | None) -> None:
        while not self._stopping.is_set():
            try:
                self._pages.put(item, timeout=PUT_WAIT_S)
            except queue.Full:
                continue
            return
