"""The event store: eventsourcing's PostgreSQL recorder and mapper, made faster.

The library inserts a batch as one array of a composite type, which psycopg dumps in
Python, value by value (measured: ~14% of the group committer's time on a hot SKU).
This recorder sends the same rows as four arrays of plain types (uuid, bigint, text,
bytea), which psycopg dumps in C. Same table, same table lock, same NOTIFY, same
``RETURNING notification_id`` in insertion order: only the parameter shape changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import msgspec
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from eventsourcing.utils import get_topic, resolve_topic
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

TOPIC = "adapters.event_store:ColumnarApplicationRecorder"


class ColumnarApplicationRecorder(PostgresApplicationRecorder):
    """Inserts stored events as column arrays instead of a composite-type array."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.insert_events_statement = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[]) "
            "RETURNING notification_id"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))
        self.select_events_of_statement = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {schema}.{table} "
            "WHERE originator_id = ANY(%s) ORDER BY originator_id, originator_version"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))

    def select_events_of(self, originator_ids: Sequence[UUID]) -> dict[UUID, list[StoredEvent]]:
        """The stored events of many aggregates in one query, in version order per aggregate.

        The group committer warms its cache with it: a batch touching 200 aggregates it has
        not seen reads them in one round trip instead of 200.
        """
        events: dict[UUID, list[StoredEvent]] = {}
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.select_events_of_statement, (list(originator_ids),), prepare=True)
            for row in curs.fetchall():
                events.setdefault(row["originator_id"], []).append(
                    StoredEvent(row["originator_id"], row["originator_version"], row["topic"], bytes(row["state"]))
                )
        return events

    def _insert_stored_events(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **_: Any) -> None:
        self._lock_table(curs)
        self._notify_channel(curs)
        curs.execute(
            self.insert_events_statement,
            (
                [event.originator_id for event in stored_events],
                [event.originator_version for event in stored_events],
                [event.topic for event in stored_events],
                [event.state for event in stored_events],
            ),
        )


MAPPER_TOPIC = "adapters.event_store:MsgspecMapper"


class MsgspecMapper(Mapper[UUID]):
    """Converts events to stored events with msgspec (about 10 times faster than ``json``).

    Event state is encoded as plain JSON (UUIDs and times as strings); decoding converts
    it back with the event class's own annotations, after any upcasting. State written
    by the library's JSON transcoder (tagged ``_type_`` values) still decodes: when the
    typed conversion refuses it, the library transcoder reads it.
    """

    _encoder = msgspec.json.Encoder()
    _decoder = msgspec.json.Decoder()

    def to_stored_event(self, domain_event: DomainEventProtocol[UUID]) -> StoredEvent:
        """The stored form of ``domain_event``."""
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        data = self._encoder.encode(state)
        if self.compressor:
            data = self.compressor.compress(data)
        if self.cipher:
            data = self.cipher.encrypt(data)
        return StoredEvent(originator_id, originator_version, get_topic(type(domain_event)), data)

    def to_domain_event(self, stored_event: StoredEvent) -> DomainEventProtocol[UUID]:
        """The event of ``stored_event``, upcast to its class's current version."""
        event_class = resolve_topic(stored_event.topic)
        data = stored_event.state
        if self.cipher:
            data = self.cipher.decrypt(data)
        if self.compressor:
            data = self.compressor.decompress(data)
        state: dict[str, Any] = self._decoder.decode(data)
        state["originator_id"] = stored_event.originator_id
        state["originator_version"] = stored_event.originator_version
        from_version = state.pop("class_version", 1)
        while from_version < getattr(event_class, "class_version", 1):
            getattr(event_class, f"upcast_v{from_version}_v{from_version + 1}")(state)
            from_version += 1
        try:
            event: DomainEventProtocol[UUID] = msgspec.convert(state, type=event_class)
        except msgspec.ValidationError:
            return super().to_domain_event(stored_event)  # written by the library's transcoder
        return event
