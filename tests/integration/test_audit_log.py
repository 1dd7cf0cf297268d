"""The audit log of operator and security actions: one event per action, in the action's transaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from click.testing import CliRunner
from dramatiq.brokers.stub import StubBroker
from litestar.testing import TestClient
from psycopg import sql
from psycopg_pool import ConnectionPool

from adapters import audit_log, keys, merchants
from adapters.migrate import migrate
from adapters.settings import Settings
from adapters.webhook_inbox import Delivery, store
from daybook.cli import main as cli_main
from daybook.home import DEMO_ACTOR, ensure_demo_merchant
from domain.application import Daybook
from domain.audit import OPERATOR_ID, audit_log_id
from domain.events import event_type
from domain.groupcommit import GroupCommitter
from projections.inventory import InventoryLevelsProjection
from projections.rebuild import rebuild
from tests.conftest import Servers, fresh_database
from tests.integration.audit_support import chain_up, daybook_on
from tests.integration.conftest import ADMIN_KEY, OPERATOR, create_merchant
from workers.inbox import PARKER_ACTOR, process_rows, redrive_parked

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
_CHAINED_LOGS = (
    "SELECT c.merchant_id, c.request_id FROM audit_chain c JOIN daybook_events e ON e.notification_id = c.position "
    "WHERE e.originator_id = ANY(%s) ORDER BY c.position"
)


def _types(events: list[Any]) -> list[str]:
    return [event_type(event) for event in events]


def _key_id(key: str) -> str:
    parts = keys.split_key(key)
    assert parts is not None
    return parts[0]


def _cli_env(database_url: str, redis_url: str) -> dict[str, str]:
    return {"DAYBOOK_DATABASE_URL": database_url, "DAYBOOK_REDIS_URL": redis_url, "DAYBOOK_LOG_LEVEL": "WARNING"}


def _row(pool: ConnectionPool[Any], merchant_id: UUID, body: bytes) -> int:
    event_id = f"msg_{uuid.uuid4().hex}"
    with pool.connection() as conn:
        inbox_id = store(conn, Delivery(merchant_id, "standard", event_id, body, {"webhook-id": event_id}))
    assert inbox_id is not None
    return inbox_id


def test_creating_a_merchant_records_its_creation_and_each_key_once_with_the_admin_request(
    client: TestClient[Any], daybook: Daybook
) -> None:
    response = client.post("/v1/admin/merchants", json={"name": " Audited "}, headers={**ADMIN, "X-Request-ID": "c-1"})
    assert response.status_code == 201, response.text
    created = response.json()
    events = audit_log.history(daybook, UUID(created["merchant_id"]))
    assert _types(events) == ["AuditLog.MerchantCreated", "AuditLog.ApiKeyIssued", "AuditLog.AuditorKeyIssued"]
    assert all(event.metadata == {"actor": "api_key:admin", "request_id": "c-1"} for event in events)
    assert all(event.merchant_id == UUID(created["merchant_id"]) for event in events)
    created_event, api_key_event, auditor_key_event = events
    assert (created_event.name, created_event.gateways) == ("Audited", ["stripe", "standard"])
    assert api_key_event.key_id == _key_id(created["api_key"])
    assert auditor_key_event.key_id == _key_id(created["auditor_key"])


def test_rotating_a_webhook_secret_records_the_gateway_once_and_never_the_secret(
    client: TestClient[Any], daybook: Daybook
) -> None:
    created = create_merchant(client, "Rotating")
    merchant_id = UUID(created["merchant_id"])
    path = f"/v1/admin/merchants/{merchant_id}/webhook-secrets/stripe/rotate"
    response = client.post(path, headers={**ADMIN, "X-Request-ID": "rotate-1"})
    assert response.status_code == 201, response.text
    events = audit_log.history(daybook, merchant_id)
    assert _types(events)[3:] == ["AuditLog.WebhookSecretRotated"]
    rotated = events[-1]
    assert rotated.gateway == "stripe"
    assert rotated.metadata == {"actor": "api_key:admin", "request_id": "rotate-1"}
    assert rotated.previous_valid_until - rotated.timestamp == timedelta(hours=24)


def test_no_api_key_auditor_key_or_webhook_secret_appears_in_any_stored_event(
    client: TestClient[Any], database_url: str
) -> None:
    created = create_merchant(client, "Secretive")
    path = f"/v1/admin/merchants/{created['merchant_id']}/webhook-secrets/standard/rotate"
    rotated = client.post(path, headers=ADMIN).json()["secret"]
    secrets = [created["api_key"], created["auditor_key"], *created["webhook_secrets"].values(), rotated]
    # The secret part of each key and secret, without the prefixes that say what it is:
    # `dbk_<hex key id>_<secret>` and `whsec_<secret>` (a secret may itself hold "_").
    parts = [
        secret.split("_", 2)[2] if secret.startswith("dbk_") else secret.removeprefix("whsec_") for secret in secrets
    ]
    needles = {secret.encode() for secret in secrets} | {part.encode() for part in parts}
    assert all(len(part) >= 32 for part in parts)
    with psycopg.connect(database_url) as conn:
        states = [bytes(row[0]) for row in conn.execute("SELECT state FROM daybook_events")]
    assert states
    assert not [needle for needle in needles for state in states if needle in state]


@contextmanager
def refused_events(conn: psycopg.Connection[Any], topic: str) -> Iterator[None]:
    """The event store refuses (a trigger raises) every event whose topic is like ``topic``."""
    conn.execute(
        "CREATE FUNCTION refuse_event() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'event refused'; END $$"
    )
    conn.execute(
        sql.SQL(
            "CREATE TRIGGER refuse_event BEFORE INSERT ON daybook_events FOR EACH ROW "
            "WHEN (NEW.topic LIKE {}) EXECUTE FUNCTION refuse_event()"
        ).format(sql.Literal(topic))
    )
    try:
        yield
    finally:
        conn.execute("DROP TRIGGER refuse_event ON daybook_events")
        conn.execute("DROP FUNCTION refuse_event()")


def test_a_rotation_whose_audit_event_cannot_be_stored_leaves_the_secrets_as_they_were(
    client: TestClient[Any], daybook: Daybook, database_url: str
) -> None:
    merchant_id = UUID(create_merchant(client, "Atomic rotation")["merchant_id"])
    with psycopg.connect(database_url, autocommit=True) as conn:
        before = merchants.active_webhook_secrets(conn, merchant_id, "stripe")
        with refused_events(conn, "%WebhookSecretRotated"), pytest.raises(psycopg.errors.RaiseException):
            merchants.rotate_webhook_secret(conn, daybook, merchant_id, "stripe", OPERATOR)
        assert merchants.active_webhook_secrets(conn, merchant_id, "stripe") == before
        assert _types(audit_log.history(daybook, merchant_id))[3:] == []
        merchants.rotate_webhook_secret(conn, daybook, merchant_id, "stripe", OPERATOR)
        assert len(merchants.active_webhook_secrets(conn, merchant_id, "stripe")) == len(before) + 1
    assert _types(audit_log.history(daybook, merchant_id))[3:] == ["AuditLog.WebhookSecretRotated"]


def test_a_merchant_whose_audit_log_cannot_be_stored_is_not_created(daybook: Daybook, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        with refused_events(conn, "domain.audit.log:%"), pytest.raises(psycopg.errors.RaiseException):
            merchants.create_merchant(conn, daybook, "Never created", OPERATOR)
        assert conn.execute("SELECT count(*) FROM merchants WHERE name = 'Never created'").fetchone() == (0,)


def test_parked_rows_whose_audit_event_cannot_be_stored_stay_pending(
    pool: ConnectionPool[Any], committer: GroupCommitter, daybook: Daybook, database_url: str
) -> None:
    with pool.connection() as conn:
        merchant_id = merchants.create_merchant(conn, daybook, "Parks refused", OPERATOR).merchant_id
    inbox_id = _row(pool, merchant_id, b"not json")
    with psycopg.connect(database_url, autocommit=True) as conn:
        with refused_events(conn, "%InboxRowsParked"), pytest.raises(psycopg.errors.RaiseException):
            process_rows(pool, committer, [inbox_id])
        state = conn.execute("SELECT state FROM webhook_inbox WHERE inbox_id = %s", (inbox_id,)).fetchone()
        assert state == ("pending",)
        # Its lease runs out (the worker's message is retried after that).
        conn.execute("UPDATE webhook_inbox SET locked_until = now() WHERE inbox_id = %s", (inbox_id,))
    process_rows(pool, committer, [inbox_id])
    assert _types(audit_log.history(daybook, merchant_id))[3:] == ["AuditLog.InboxRowsParked"]


def test_daybook_admin_create_merchant_records_the_command_line_operator(
    daybook: Daybook, database_url: str, redis_url: str
) -> None:
    result = CliRunner().invoke(
        cli_main, ["admin", "create-merchant", "--name", "From the CLI"], env=_cli_env(database_url, redis_url)
    )
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    events = audit_log.history(daybook, UUID(created["merchant_id"]))
    assert _types(events) == ["AuditLog.MerchantCreated", "AuditLog.ApiKeyIssued", "AuditLog.AuditorKeyIssued"]
    assert {event.metadata["actor"] for event in events} == {"operator:cli"}
    assert len({event.metadata["request_id"] for event in events}) == 1
    assert events[0].metadata["request_id"].startswith("cli:")


def test_revoking_a_key_records_it_once_and_the_key_no_longer_authenticates(
    client: TestClient[Any], daybook: Daybook, database_url: str, redis_url: str
) -> None:
    created = create_merchant(client, "Revoked")
    merchant_id, key_id = UUID(created["merchant_id"]), _key_id(created["auditor_key"])
    env = _cli_env(database_url, redis_url)
    result = CliRunner().invoke(cli_main, ["admin", "revoke-key", key_id], env=env)
    assert result.exit_code == 0, result.output
    again = CliRunner().invoke(cli_main, ["admin", "revoke-key", key_id], env=env)
    assert again.exit_code == 1
    events = audit_log.history(daybook, merchant_id)
    assert _types(events)[3:] == ["AuditLog.KeyRevoked"]
    assert (events[-1].key_id, events[-1].role, events[-1].metadata["actor"]) == (key_id, "auditor", "operator:cli")
    with psycopg.connect(database_url) as conn:
        assert merchants.find_key(conn, key_id) is None
        assert merchants.find_key(conn, _key_id(created["api_key"])) is not None


def test_parked_and_redriven_inbox_rows_are_recorded_once_in_their_merchants_logs(
    pool: ConnectionPool[Any], committer: GroupCommitter, daybook: Daybook
) -> None:
    with pool.connection() as conn:
        one = merchants.create_merchant(conn, daybook, "Parks one", OPERATOR).merchant_id
        other = merchants.create_merchant(conn, daybook, "Parks other", OPERATOR).merchant_id
    rows = [_row(pool, one, b"not json"), _row(pool, one, b"[]"), _row(pool, other, b"{}")]
    process_rows(pool, committer, rows)
    process_rows(pool, committer, rows)  # again, as after a crash: they are parked already
    parked_one, parked_other = audit_log.history(daybook, one)[3:], audit_log.history(daybook, other)[3:]
    assert _types(parked_one) == _types(parked_other) == ["AuditLog.InboxRowsParked"]
    assert [row["inbox_id"] for row in parked_one[0].rows] == rows[:2]
    assert [row["inbox_id"] for row in parked_other[0].rows] == rows[2:]
    assert all(row["reason"].startswith("malformed:") for row in parked_one[0].rows)
    assert parked_one[0].metadata["actor"] == PARKER_ACTOR

    broker = StubBroker()
    broker.declare_queue("default")
    done = redrive_parked(pool, broker, daybook, merchant_id=one, context=OPERATOR, reason="parser fixed")
    assert done.rows_by_merchant == {one: rows[:2]}
    redrive_parked(pool, broker, daybook, merchant_id=one, context=OPERATOR, reason="parser fixed")  # nothing left
    redriven = audit_log.history(daybook, one)[4:]
    assert _types(redriven) == ["AuditLog.InboxRowsRedriven"]
    assert (redriven[0].inbox_ids, redriven[0].count, redriven[0].reason) == (rows[:2], 2, "parser fixed")
    assert redriven[0].metadata == OPERATOR.metadata()
    assert len(audit_log.history(daybook, other)) == 4  # its parked row was not re-driven


def test_a_rebuild_is_recorded_started_and_finished_in_the_operator_log(daybook: Daybook, database_url: str) -> None:
    before = _types(audit_log.history(daybook, OPERATOR_ID))
    report = rebuild(daybook, database_url, InventoryLevelsProjection(daybook), context=OPERATOR)
    log = audit_log.history(daybook, OPERATOR_ID)
    opened = [] if before else ["AuditLog.Opened"]  # the operator's log is opened on first use
    assert _types(log) == [*before, *opened, "AuditLog.ProjectionRebuildStarted", "AuditLog.ProjectionRebuildFinished"]
    events = log[-2:]
    started, finished = events
    assert (started.projection, started.restart) == ("inventory_levels", False)
    assert (finished.projection, finished.position, finished.events) == (
        "inventory_levels",
        report.position,
        report.events,
    )
    assert all(event.merchant_id == OPERATOR_ID and event.metadata == OPERATOR.metadata() for event in events)


def test_the_demo_merchant_of_daybook_serve_is_recorded_as_created_by_serve(
    daybook: Daybook, database_url: str, settings: Settings, tmp_path: Path
) -> None:
    ensure_demo_merchant(replace(settings, home=tmp_path), database_url)
    demo = json.loads((tmp_path / "demo-merchant.json").read_text())
    events = audit_log.history(daybook, UUID(demo["merchant_id"]))
    assert _types(events)[0] == "AuditLog.MerchantCreated"
    assert {event.metadata["actor"] for event in events} == {DEMO_ACTOR}


def test_audit_log_events_are_chained_with_the_merchants_other_events(servers: Servers) -> None:
    # A database of its own: the chain is caught up here, with no other runner chaining it.
    with fresh_database(servers) as own, daybook_on(own) as app:
        with psycopg.connect(own, autocommit=True) as conn:
            merchant_id = merchants.create_merchant(conn, app, "Chained log", OPERATOR).merchant_id
        rebuild(app, own, InventoryLevelsProjection(app), context=OPERATOR)
        chain_up(app, own)
        with psycopg.connect(own) as conn:
            chained = conn.execute(_CHAINED_LOGS, ([audit_log_id(merchant_id), audit_log_id(OPERATOR_ID)],)).fetchall()
    assert [owner for owner, _ in chained] == [merchant_id] * 3 + [OPERATOR_ID] * 3  # opened, started, finished
    assert {request_id for _, request_id in chained} == {OPERATOR.request_id}


def test_migrate_opens_the_log_of_a_merchant_older_than_audit_logs_with_what_its_rows_say_once(
    daybook: Daybook, database_url: str
) -> None:
    merchant_id, secret = uuid.uuid4(), f"whsec_{uuid.uuid4().hex}"
    with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():  # as the code before the log did
        conn.execute("INSERT INTO merchants (merchant_id, name) VALUES (%s, 'Old shop')", (merchant_id,))
        conn.execute(
            "INSERT INTO api_keys (key_id, merchant_id, role, secret_sha256, revoked_at) VALUES "
            "('old-merchant-key', %s, 'merchant', '\\x00', NULL), ('old-auditor-key', %s, 'auditor', '\\x00', now())",
            (merchant_id, merchant_id),
        )
        conn.execute(
            "INSERT INTO webhook_secrets (merchant_id, gateway, secret) VALUES (%s, 'stripe', %s)",
            (merchant_id, secret),
        )
    migrate(database_url)
    migrate(database_url)
    [opened] = audit_log.history(daybook, merchant_id)
    assert event_type(opened) == "AuditLog.Opened"
    assert opened.metadata["actor"] == "system:migrate"
    assert opened.name == "Old shop"
    assert opened.created_at is not None
    keys_of = {key["key_id"]: key for key in opened.keys}
    assert {key_id: key["role"] for key_id, key in keys_of.items()} == {
        "old-merchant-key": "merchant",
        "old-auditor-key": "auditor",
    }
    assert keys_of["old-merchant-key"]["revoked_at"] is None
    assert keys_of["old-auditor-key"]["revoked_at"] is not None
    assert [secret_row["gateway"] for secret_row in opened.webhook_secrets] == ["stripe"]
    with psycopg.connect(database_url) as conn:
        stored = conn.execute(
            "SELECT state FROM daybook_events WHERE originator_id = %s", (audit_log_id(merchant_id),)
        ).fetchall()
    assert len(stored) == 1
    assert secret.encode() not in bytes(stored[0][0])
