"""A batch larger than the socket's buffers is stored like any other (no pipeline-mode hang)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence

import psycopg
from eventsourcing.persistence import StoredEvent

from adapters.database import eventsourcing_env
from adapters.settings import Settings
from domain.application import Daybook

EVENTS = 4_000
STATE_BYTES = 4_000
"""16 MB in one insert: past what a unix socket or loopback TCP buffers (it hung in pipeline mode)."""


def test_a_batch_of_sixteen_megabytes_is_stored_and_its_notification_ids_returned(
    own_database: str, settings: Settings
) -> None:
    # A database of its own: these events are no Daybook event, and the audit chain of a
    # shared database would stop at them.
    daybook = Daybook(env=eventsourcing_env(own_database, settings))
    try:
        _store_sixteen_megabytes(daybook, own_database)
    finally:
        daybook.close()


def _store_sixteen_megabytes(daybook: Daybook, database_url: str) -> None:
    events = [
        StoredEvent(uuid.uuid4(), 1, "tests.large:Batch.Event", b'{"padding":"' + b"x" * STATE_BYTES + b'"}')
        for _ in range(EVENTS)
    ]
    inserted: list[Sequence[int] | None] = []
    writer = threading.Thread(target=lambda: inserted.append(daybook.recorder.insert_events(events)), daemon=True)
    writer.start()
    writer.join(timeout=120)
    assert not writer.is_alive(), "the insert never returned"
    (ids,) = inserted
    assert ids is not None
    assert len(ids) == EVENTS
    assert list(ids) == sorted(ids)
    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            "SELECT count(*), min(length(state)) FROM daybook_events WHERE notification_id = ANY(%s)", (list(ids),)
        ).fetchone()
    assert stored == (EVENTS, STATE_BYTES + len(b'{"padding":""}'))
