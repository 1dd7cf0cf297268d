"""The audit chain projection on real PostgreSQL: each merchant's events chained in position order."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from adapters.audit_events import chained, stored_event_shape
from adapters.database import READER_ROLE
from domain.application import Daybook
from domain.audit import GENESIS_HASH, ChainVerifier
from projections.audit_chain import NOTIFY_CHANNEL
from tests.conftest import fresh_database
from tests.integration.audit_support import chain_rows, chain_up, daybook_on, some_history

if TYPE_CHECKING:
    from tests.conftest import Servers


@pytest.fixture
def daybook(own_database: str) -> Iterator[Daybook]:
    with daybook_on(own_database) as app:
        yield app


def recomputed_chain(daybook: Daybook, database_url: str, merchant_id: uuid.UUID) -> list[dict[str, object]]:
    """The merchant's events, chained again from the event store alone."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT e.notification_id, e.originator_id, e.originator_version, e.topic, e.state "
            "FROM daybook_events e ORDER BY e.notification_id"
        ).fetchall()
    events, prev = [], GENESIS_HASH
    for position, originator_id, version, topic, state in rows:
        shape = stored_event_shape(daybook.mapper, position, StoredEvent(originator_id, version, topic, bytes(state)))
        if shape["data"]["merchant_id"] != str(merchant_id):
            continue
        event = chained(shape, prev)
        events.append(event)
        prev = event["hash"]
    return events


def test_each_merchant_is_chained_from_the_genesis_hash_in_position_order(daybook: Daybook, own_database: str) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    some_history(daybook, first, 5, request_id="req-first")
    some_history(daybook, second, 4, request_id="req-second")
    some_history(daybook, first, 2, request_id="req-first-again")

    chain_up(daybook, own_database)

    for merchant_id in (first, second):
        expected = recomputed_chain(daybook, own_database, merchant_id)
        rows = chain_rows(own_database, merchant_id)
        assert [row[0] for row in rows] == [event["position"] for event in expected]
        assert [bytes(row[1]).hex() for row in rows] == [event["hash"] for event in expected]
        assert bytes(rows[0][2]).hex() == GENESIS_HASH
        verifier = ChainVerifier()
        assert all(verifier.check(event) is None for event in expected)


def test_batches_carry_each_merchant_s_last_hash_so_batch_size_does_not_change_a_hash(
    daybook: Daybook, own_database: str, servers: Servers
) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    some_history(daybook, first, 4)
    some_history(daybook, second, 4)
    some_history(daybook, first, 3)
    chain_up(daybook, own_database, batch_size=3)
    with fresh_database(servers) as other_url, psycopg.connect(own_database) as source:
        # The same events, chained in one batch elsewhere.
        with (
            psycopg.connect(other_url) as target,
            source.cursor().copy("COPY daybook_events TO STDOUT") as out,
            target.cursor().copy("COPY daybook_events FROM STDIN") as into,
        ):
            for data in out:
                into.write(data)
        with daybook_on(other_url) as other:
            chain_up(other, other_url, batch_size=10_000)
        for merchant_id in (first, second):
            assert chain_rows(own_database, merchant_id) == chain_rows(other_url, merchant_id)


def test_a_restarted_chain_continues_from_the_hash_stored_for_the_merchant(daybook: Daybook, own_database: str) -> None:
    merchant_id = uuid.uuid4()
    some_history(daybook, merchant_id, 3)
    chain_up(daybook, own_database)
    some_history(daybook, merchant_id, 3)
    chain_up(daybook, own_database)  # a new projection instance: nothing remembered
    expected = recomputed_chain(daybook, own_database, merchant_id)
    assert [bytes(row[1]).hex() for row in chain_rows(own_database, merchant_id)] == [e["hash"] for e in expected]


def test_rows_keep_the_request_and_causation_ids_of_the_event_s_metadata(daybook: Daybook, own_database: str) -> None:
    merchant_id = uuid.uuid4()
    some_history(daybook, merchant_id, 1, request_id="req-traced")
    chain_up(daybook, own_database)
    assert {(row[3], row[4]) for row in chain_rows(own_database, merchant_id)} == {("req-traced", "cause-req-traced")}


def test_a_committed_batch_notifies_the_audit_channel_with_its_last_position(
    daybook: Daybook, own_database: str
) -> None:
    merchant_id = uuid.uuid4()
    some_history(daybook, merchant_id, 2)
    heard: list[str] = []
    listening = threading.Event()

    def listen() -> None:
        with psycopg.connect(own_database, autocommit=True) as conn:
            conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            listening.set()
            heard.extend(note.payload for note in conn.notifies(timeout=20, stop_after=1))

    listener = threading.Thread(target=listen)
    listener.start()
    assert listening.wait(10)
    chain_up(daybook, own_database)
    listener.join(timeout=30)
    assert heard == [str(chain_rows(own_database, merchant_id)[-1][0])]


def test_the_read_role_sees_only_the_chain_of_the_merchant_its_transaction_names(
    daybook: Daybook, own_database: str
) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    some_history(daybook, first, 2)
    some_history(daybook, second, 2)
    chain_up(daybook, own_database)
    with psycopg.connect(own_database, options=f"-c role={READER_ROLE}") as conn:
        conn.execute("SELECT set_config('daybook.merchant_id', %s, true)", (str(first),))
        chain = {row[0] for row in conn.execute("SELECT DISTINCT merchant_id FROM audit_chain")}
        joined = {row[0] for row in conn.execute("SELECT DISTINCT merchant_id FROM audit_events")}
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT count(*) FROM daybook_events")
    assert chain == joined == {first}
