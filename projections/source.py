"""The notification log, read and decoded once for every projection of a process.

Projections follow the log each at its own position, in threads of their own, so that
one that fails never holds the others back. They usually stand at the same position,
though: :class:`EventSource` keeps the most recently read notifications decoded, so the
first projection to ask for a range reads and decodes it and the others are handed the
same events. Decoded events are immutable; sharing them is safe.
"""

from __future__ import annotations

import bisect
import json
import threading
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Notification

CACHE_EVENTS_MAX = 20_000


@dataclass(frozen=True, slots=True)
class Undecodable:
    """A stored event that could not be turned back into its domain event.

    It is handed to projections in its place, so that the one failing event is set
    aside by the projections it concerns instead of stopping every projection.

    Attributes:
        originator_id: the aggregate it belongs to.
        originator_version: its version in the aggregate's stream.
        topic: the stored event class topic.
        merchant_id: the merchant named in its stored state, when that much is readable.
        error: why decoding failed.
    """

    originator_id: UUID
    originator_version: int
    topic: str
    merchant_id: UUID | None
    error: str

    @property
    def stream_type(self) -> str:
        """The aggregate class name of the topic (``"Order"`` for ``…:Order.Placed``)."""
        return topic_stream_type(self.topic)


def topic_stream_type(topic: str) -> str:
    """The aggregate class named in an event's topic (``"Order"`` for ``…:Order.Placed``)."""
    return topic.partition(":")[2].split(".", 1)[0]


Positioned = tuple[int, DomainEventProtocol[Any] | Undecodable]
"""An event (or what stands for one that cannot be decoded) and its position in the log."""


class EventSource:
    """Decoded notifications after a position, shared between projections.

    The cache holds a contiguous run of the log: every notification after ``_low`` up
    to and including the last cached one (a gap-free log makes that well defined).

    Attributes:
        reads_total: how many times the store was read (for tests and metrics).
        decoded_total: how many notifications were decoded.
    """

    def __init__(self, app: Application[Any], *, cache_events_max: int = CACHE_EVENTS_MAX) -> None:
        self.app = app
        self.cache_events_max = cache_events_max
        self.reads_total = 0
        self.decoded_total = 0
        self._positions: list[int] = []
        self._events: list[Positioned] = []
        self._low = 0
        self._lock = threading.Lock()

    def after(self, position: int, limit: int) -> list[Positioned]:
        """Up to ``limit`` events after ``position``, in position order.

        Served from the cache when it holds events after ``position`` (a batch may then
        be shorter than ``limit``: the caller asks again from its end); else read from
        the store, decoded, and cached.
        """
        with self._lock:
            cached = self._cached_after(position, limit)
        if cached:
            return cached
        notifications = self.app.recorder.select_notifications(start=position, limit=limit, inclusive_of_start=False)
        events = [(notification.id, self._decode(notification)) for notification in notifications]
        with self._lock:
            self.reads_total += 1
            self.decoded_total += len(events)
            self._remember(position, events)
        return events

    def _decode(self, notification: Notification) -> DomainEventProtocol[Any] | Undecodable:
        return decode(self.app, notification)

    def _cached_after(self, position: int, limit: int) -> list[Positioned]:
        if not self._positions or not self._low <= position < self._positions[-1]:
            return []
        start = bisect.bisect_right(self._positions, position)
        return self._events[start : start + limit]

    def _remember(self, position: int, events: list[Positioned]) -> None:
        if not events:
            return
        last = self._positions[-1] if self._positions else None
        if last is not None and self._low <= position <= last:
            fresh = [positioned for positioned in events if positioned[0] > last]
        else:  # not contiguous with what is cached: start over from this read
            self._positions, self._events, self._low = [], [], position
            fresh = events
        self._positions.extend(positioned[0] for positioned in fresh)
        self._events.extend(fresh)
        excess = len(self._events) - self.cache_events_max
        if excess > 0:
            # Evict a quarter at once, so the lists are not shifted on every read.
            cut = max(excess, self.cache_events_max // 4)
            self._low = self._positions[cut - 1]
            del self._positions[:cut]
            del self._events[:cut]


def decode(app: Application[Any], notification: Notification) -> DomainEventProtocol[Any] | Undecodable:
    """The domain event of ``notification``, or what stands for it when it cannot be decoded."""
    try:
        return app.mapper.to_domain_event(notification)
    except Exception as error:  # a poison event: stands in its place, set aside by projections
        return Undecodable(
            originator_id=_as_uuid(notification.originator_id),
            originator_version=notification.originator_version,
            topic=notification.topic,
            merchant_id=_merchant_of(notification.state),
            error=f"cannot decode the stored event: {error!r}",
        )


def _as_uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)


def _merchant_of(state: bytes) -> UUID | None:
    try:
        return UUID(str(json.loads(state)["merchant_id"]))
    except (ValueError, KeyError, TypeError):
        return None
