"""The audit log reaches auditors like every other event: chained, exported, verified, and secret-free."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from litestar.testing import TestClient

from adapters.settings import Settings
from api.app import create_app
from daybook.audit_cli import verify_file
from tests.conftest import fresh_database
from tests.integration.conftest import ADMIN_KEY, create_merchant, running_projections
from tests.integration.serving import wait_for

if TYPE_CHECKING:
    from tests.conftest import Servers

NDJSON = {"Accept": "application/x-ndjson"}
AUDIT_LOG_TYPES = [
    "AuditLog.MerchantCreated",
    "AuditLog.ApiKeyIssued",
    "AuditLog.AuditorKeyIssued",
    "AuditLog.WebhookSecretRotated",
]


@pytest.fixture(scope="module")
def client(servers: Servers, redis_url: str, api_settings: Settings) -> Iterator[TestClient[Any]]:
    with (
        fresh_database(servers) as own_database,
        running_projections(own_database, api_settings),
        TestClient(create_app(api_settings, own_database, redis_url), raise_server_exceptions=False) as test_client,
    ):
        yield test_client


def test_an_auditor_exports_the_merchants_audit_log_chained_with_its_books_and_it_verifies_offline(
    client: TestClient[Any], tmp_path: Path
) -> None:
    merchant = create_merchant(client, "Exported log")
    rotated = client.post(
        f"/v1/admin/merchants/{merchant['merchant_id']}/webhook-secrets/stripe/rotate",
        headers={"Authorization": f"Bearer {ADMIN_KEY}", "X-Request-ID": "rotate-exported"},
    )
    assert rotated.status_code == 201
    auditor = {"Authorization": f"Bearer {merchant['auditor_key']}", **NDJSON}

    def exported() -> list[bytes] | None:
        lines = client.get("/v1/audit/events", headers=auditor).content.splitlines()
        return lines if len(lines) >= len(AUDIT_LOG_TYPES) else None

    lines = wait_for(exported, timeout_s=60, what="the audit log to be chained")
    events = [json.loads(line) for line in lines]
    assert [event["type"] for event in events] == AUDIT_LOG_TYPES
    assert {event["stream_type"] for event in events} == {"AuditLog"}
    assert events[0]["data"]["name"] == "Exported log"
    assert events[-1]["data"]["gateway"] == "stripe"
    assert events[-1]["metadata"] == {"actor": "api_key:admin", "request_id": "rotate-exported"}
    text = b"\n".join(lines)
    secrets = [
        merchant["api_key"],
        merchant["auditor_key"],
        *merchant["webhook_secrets"].values(),
        rotated.json()["secret"],
    ]
    assert not [secret for secret in secrets if secret.rsplit("_", 1)[-1].encode() in text]
    export = tmp_path / "audit-log.ndjson"
    export.write_bytes(text + b"\n")
    verified = verify_file(export, None)
    assert (verified.events, verified.mismatch) == (len(AUDIT_LOG_TYPES), None)
