"""The project's event and aggregate bases, and how an event is described for audit.

Every stored Daybook event carries, besides the library's ``originator_id``,
``originator_version`` and ``timestamp``:

- ``merchant_id`` — whose books the event belongs to (the audit chain is per merchant);
- ``metadata`` — who asked and why: :meth:`domain.context.CommandContext.metadata`
  (``actor``, ``request_id`` and, when known, ``causation_id``).

Event fields hold only JSON-friendly values (str, int, bool, None, UUID, datetime,
lists and str-keyed dicts of those) so that the library's JSON transcoder stores them
without custom transcodings and replay rebuilds exactly the live state.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.context import CommandContext

# Library bookkeeping that the audit "data" leaves out: ids and times have their own
# fields in the audit event shape, and the aggregate class topic is a module path that
# must not leak into the hash chain (renaming a module would change every hash).
_NOT_DATA = frozenset({"originator_id", "originator_version", "timestamp", "metadata", "originator_topic"})


class DaybookEvent(Aggregate.Event):
    """Base of every Daybook aggregate event.

    Attributes:
        merchant_id: the merchant whose books the event belongs to.
        metadata: audit metadata (``actor``, ``request_id``, ``causation_id``?).
    """

    merchant_id: UUID
    metadata: dict[str, str]


class DaybookCreated(DaybookEvent, Aggregate.Created):
    """Base of every Daybook "created" event (the first event of a stream)."""


class DaybookAggregate(Aggregate):
    """Base of Daybook aggregates: each belongs to one merchant.

    Subclasses set ``merchant_id`` in ``__init__`` (the apply step of their created
    event) and trigger every later event through :meth:`_record`, which stamps the
    merchant and the audit metadata on it.
    """

    if TYPE_CHECKING:
        merchant_id: UUID

    @property
    def created_at(self) -> datetime:
        """When the first event of the aggregate occurred."""
        return self.created_on

    @property
    def updated_at(self) -> datetime:
        """When the latest event of the aggregate occurred."""
        return self.modified_on

    def _record(self, event_class: type[DaybookEvent], context: CommandContext, **fields: Any) -> None:
        self.trigger_event(
            event_class,
            timestamp=context.occurred_at,
            merchant_id=self.merchant_id,
            metadata=context.metadata(),
            **fields,
        )


def event_type(event: DaybookEvent) -> str:
    """The event's type name, e.g. ``"Order.Placed"`` (aggregate class, event class)."""
    return type(event).__qualname__


def stream_type(event: DaybookEvent) -> str:
    """The type of the stream the event belongs to, e.g. ``"Order"``."""
    return type(event).__qualname__.split(".", 1)[0]


def event_data(event: DaybookEvent) -> dict[str, Any]:
    """The event's own fields as JSON-ready values, for the audit export.

    Leaves out ``originator_id``, ``originator_version``, ``timestamp``, ``metadata``
    (each has its own place in the audit event shape) and the library's
    ``originator_topic``. UUIDs become strings, datetimes RFC 3339 UTC strings.
    """
    return {name: json_value(value) for name, value in vars(event).items() if name not in _NOT_DATA}


def event_metadata(event: DaybookEvent) -> dict[str, str]:
    """The audit metadata stored on the event (a copy)."""
    return dict(event.metadata)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds, e.g. ``"2025-01-31T09:30:00.000000Z"``."""
    if moment.tzinfo is None:
        msg = "naive datetime has no defined instant"
        raise ValueError(msg)
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # isoformat is several times faster than strftime and writes the same for years 1000-9999.
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


_PLAIN = frozenset({str, int, bool, type(None)})


def json_value(value: Any) -> Any:
    """``value`` with UUIDs and datetimes turned into strings, recursively."""
    if type(value) in _PLAIN:  # most values: answered before the slower (ABC) checks below
        return value
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Mapping):
        return {str(key): json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    return value
