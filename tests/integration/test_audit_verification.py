"""Verification of the stored chain, a bounded number of events per call, still finding old changes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.audit_verification import verify
from domain.application import Daybook
from projections.audit_digests import DigestSigner
from tests.integration.audit_support import chain_rows, chain_up, daybook_on, some_history

if TYPE_CHECKING:
    pass

BUDGET = 6


@pytest.fixture
def daybook(own_database: str) -> Iterator[Daybook]:
    with daybook_on(own_database) as app:
        yield app


def verify_once(daybook: Daybook, database_url: str, merchant_id: uuid.UUID) -> tuple[bool, int, int | None, str]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        found = verify(conn, daybook.mapper, merchant_id, BUDGET)
    mismatch = found.first_mismatch
    return found.ok, found.events_checked, mismatch.position if mismatch else None, mismatch.reason if mismatch else ""


def test_each_call_checks_at_most_its_budget_and_the_checkpoint_reaches_the_head(
    daybook: Daybook, own_database: str
) -> None:
    merchant_id = uuid.uuid4()
    some_history(daybook, merchant_id, 6)
    chain_up(daybook, own_database)
    total = len(chain_rows(own_database, merchant_id))
    assert total > 2 * BUDGET
    calls = [verify_once(daybook, own_database, merchant_id) for _ in range(2 * total // BUDGET + 2)]
    assert all(ok for ok, _, _, _ in calls)
    assert all(checked <= BUDGET for _, checked, _, _ in calls)
    with psycopg.connect(own_database) as conn:
        row = conn.execute("SELECT position FROM audit_verification WHERE merchant_id = %s", (merchant_id,)).fetchone()
    assert row == (chain_rows(own_database, merchant_id)[-1][0],)


def test_a_change_before_the_checkpoint_is_found_within_chain_length_over_budget_calls(
    daybook: Daybook, own_database: str
) -> None:
    merchant_id = uuid.uuid4()
    some_history(daybook, merchant_id, 6)
    chain_up(daybook, own_database)
    rows = chain_rows(own_database, merchant_id)
    while verify_once(daybook, own_database, merchant_id)[1] == BUDGET // 2 + BUDGET - BUDGET // 2:
        pass  # until the checkpoint is at the head (a call then only sweeps)
    target = rows[1][0]
    with psycopg.connect(own_database) as conn:
        conn.execute(
            "UPDATE daybook_events SET state = "
            "overlay(state placing '8'::bytea from position('10000'::bytea in state)) WHERE notification_id = %s",
            (target,),
        )
    found = None
    for _ in range(len(rows) // (BUDGET - BUDGET // 2) + 2):
        ok, _, position, reason = verify_once(daybook, own_database, merchant_id)
        if not ok:
            found = (position, reason)
            break
    assert found is not None
    assert found[0] == target


def test_a_deleted_event_is_reported_at_its_position_and_stays_reported(daybook: Daybook, own_database: str) -> None:
    merchant_id = uuid.uuid4()
    some_history(daybook, merchant_id, 1)
    chain_up(daybook, own_database)
    deleted = chain_rows(own_database, merchant_id)[1][0]
    with psycopg.connect(own_database) as conn:
        conn.execute("DELETE FROM daybook_events WHERE notification_id = %s", (deleted,))
    first = verify_once(daybook, own_database, merchant_id)
    assert first[0] is False
    assert first[2] == deleted
    assert "not in the event store" in first[3]
    assert verify_once(daybook, own_database, merchant_id)[2] == deleted


def test_a_digest_that_disagrees_with_the_chain_is_reported_at_its_position(
    daybook: Daybook, own_database: str
) -> None:
    merchant_id = uuid.uuid4()
    some_history(daybook, merchant_id, 1)
    chain_up(
        daybook, own_database, signer=DigestSigner(Ed25519PrivateKey.generate(), interval_seconds=1, interval_events=1)
    )
    last = chain_rows(own_database, merchant_id)[-1][0]
    with psycopg.connect(own_database) as conn:
        conn.execute("UPDATE audit_digests SET hash = %s WHERE merchant_id = %s", (b"\x01" * 32, merchant_id))
    calls = [verify_once(daybook, own_database, merchant_id) for _ in range(4)]
    _, _, position, reason = next(call for call in calls if not call[0])
    assert position == last
    assert "digest" in reason
