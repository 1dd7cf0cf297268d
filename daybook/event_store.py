"""The event store recorder: eventsourcing's PostgreSQL recorder with a faster batch insert.

The library inserts a batch as one array of a composite type, which psycopg dumps in
Python, value by value (measured: ~14% of the group committer's time on a hot SKU).
This recorder sends the same rows as four arrays of plain types (uuid, bigint, text,
bytea), which psycopg dumps in C. Same table, same table lock, same NOTIFY, same
``RETURNING notification_id`` in insertion order: only the parameter shape changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

TOPIC = "daybook.event_store:ColumnarApplicationRecorder"


class ColumnarApplicationRecorder(PostgresApplicationRecorder):
    """Inserts stored events as column arrays instead of a composite-type array."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)
        self.insert_events_statement = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state) "
            "SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[]) "
            "RETURNING notification_id"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))

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
