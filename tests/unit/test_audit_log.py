"""The audit log aggregate: one event per action, nothing secret, replay equals the live log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from domain import limits
from domain.audit import OPERATOR_ID, AuditLog, ParkedRow, audit_log_id
from domain.context import CommandContext
from domain.events import event_data, event_metadata, event_type

CONTEXT = CommandContext(actor="api_key:admin", request_id="req-1").stamped()


def test_a_merchants_log_starts_with_its_creation_and_records_one_event_per_action() -> None:
    merchant_id = uuid4()
    log = AuditLog.merchant_created(merchant_id, "Shop", ["stripe", "standard"], CONTEXT)
    log.key_issued("k1", "merchant", CONTEXT)
    log.key_issued("k2", "auditor", CONTEXT)
    log.key_revoked("k2", "auditor", CONTEXT)
    log.webhook_secret_rotated("stripe", CONTEXT.instant + timedelta(hours=24), CONTEXT)
    log.inbox_rows_parked([ParkedRow(9, "malformed: x"), ParkedRow(3, "error: y")], CONTEXT)
    log.inbox_rows_redriven([9, 3], "fixed", CONTEXT)
    events = log.collect_events()
    assert [event_type(event) for event in events] == [
        "AuditLog.MerchantCreated",
        "AuditLog.ApiKeyIssued",
        "AuditLog.AuditorKeyIssued",
        "AuditLog.KeyRevoked",
        "AuditLog.WebhookSecretRotated",
        "AuditLog.InboxRowsParked",
        "AuditLog.InboxRowsRedriven",
    ]
    assert log.id == audit_log_id(merchant_id)
    assert all(event.merchant_id == merchant_id for event in events)
    assert all(event_metadata(event) == {"actor": "api_key:admin", "request_id": "req-1"} for event in events)
    assert event_data(events[5])["rows"] == [
        {"inbox_id": 3, "reason": "error: y"},
        {"inbox_id": 9, "reason": "malformed: x"},
    ]
    redriven = event_data(events[6])
    assert (redriven["inbox_ids"], redriven["count"], redriven["reason"]) == ([3, 9], 2, "fixed")
    replayed = None
    for event in events:
        replayed = event.mutate(replayed)
    assert isinstance(replayed, AuditLog)
    assert (replayed.id, replayed.version, replayed.merchant_id) == (log.id, log.version, merchant_id)


def test_the_operators_log_is_opened_under_the_nil_merchant_and_records_rebuilds() -> None:
    log = AuditLog.opened(OPERATOR_ID, CONTEXT)
    log.projection_rebuild_started("orders", False, CONTEXT)
    log.projection_rebuild_finished("orders", 12, 40, CONTEXT)
    opened, started, finished = log.collect_events()
    assert event_type(opened) == "AuditLog.Opened"
    assert str(log.merchant_id) == "00000000-0000-0000-0000-000000000000"
    assert event_data(finished)["events"] == 12
    assert event_data(started)["restart"] is False


def test_a_parked_rows_reason_is_cut_to_its_bound() -> None:
    log = AuditLog.opened(uuid4(), CONTEXT)
    log.inbox_rows_parked([ParkedRow(1, "x" * (limits.AUDIT_REASON_LENGTH_MAX + 10))], CONTEXT)
    parked = log.collect_events()[-1]
    assert len(event_data(parked)["rows"][0]["reason"]) == limits.AUDIT_REASON_LENGTH_MAX


def test_times_of_the_log_are_the_commands_instant() -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    log = AuditLog.opened(uuid4(), CommandContext("a", "r", occurred_at=at))
    assert log.created_on == at
