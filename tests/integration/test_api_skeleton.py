"""The API's edges: auth roles, problems, request ids, limits, operator endpoints."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from litestar.testing import TestClient

from adapters.keys import split_key


def test_created_merchant_has_keys_and_secrets_and_only_key_hashes_are_stored(
    merchant: dict[str, Any], database_url: str
) -> None:
    assert set(merchant["webhook_secrets"]) == {"stripe", "standard"}
    assert all(s.startswith("whsec_") for s in merchant["webhook_secrets"].values())
    key_id, secret = split_key(merchant["api_key"]) or ("", "")
    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT secret_sha256 FROM api_keys WHERE key_id = %s", (key_id,)).fetchone()
        dumped = str(conn.execute("SELECT array_agg(a::text) FROM api_keys a").fetchone())
    assert stored is not None
    assert secret not in dumped


def test_missing_key_is_401_unauthenticated(client: TestClient[Any]) -> None:
    response = client.post("/v1/admin/merchants", json={"name": "x"})
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


def test_merchant_and_auditor_keys_are_forbidden_on_admin_routes(
    client: TestClient[Any], merchant_headers: dict[str, str], auditor_headers: dict[str, str]
) -> None:
    for headers in (merchant_headers, auditor_headers):
        response = client.post("/v1/admin/merchants", json={"name": "x"}, headers=headers)
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"


def test_unknown_request_fields_are_rejected_with_400(client: TestClient[Any], admin_headers: dict[str, str]) -> None:
    response = client.post("/v1/admin/merchants", json={"name": "x", "color": "red"}, headers=admin_headers)
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_request"
    assert body["status"] == 400
    assert body["request_id"] == response.headers["x-request-id"]


def test_empty_name_is_rejected(client: TestClient[Any], admin_headers: dict[str, str]) -> None:
    response = client.post("/v1/admin/merchants", json={"name": ""}, headers=admin_headers)
    assert response.status_code == 400


def test_body_over_one_mebibyte_is_413(client: TestClient[Any], admin_headers: dict[str, str]) -> None:
    body = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
    response = client.post(
        "/v1/admin/merchants",
        content=body,
        headers={**admin_headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_unknown_route_is_a_404_problem_with_a_request_id(client: TestClient[Any]) -> None:
    response = client.get("/v1/nowhere", headers={"X-Request-ID": "trace-1"})
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert response.headers["x-request-id"] == "trace-1"


def test_every_response_gets_a_generated_request_id_when_none_was_sent(
    client: TestClient[Any],
) -> None:
    first = client.get("/healthz").headers["x-request-id"]
    second = client.get("/healthz").headers["x-request-id"]
    assert first
    assert second
    assert first != second


def test_rotated_webhook_secret_is_new_and_the_old_one_stays_active(
    client: TestClient[Any],
    admin_headers: dict[str, str],
    merchant: dict[str, Any],
    database_url: str,
) -> None:
    response = client.post(
        f"/v1/admin/merchants/{merchant['merchant_id']}/webhook-secrets/stripe/rotate",
        headers=admin_headers,
    )
    assert response.status_code == 201
    new_secret = response.json()["secret"]
    with psycopg.connect(database_url) as conn:
        from adapters.merchants import active_webhook_secrets

        active = active_webhook_secrets(conn, uuid.UUID(merchant["merchant_id"]), "stripe")  # type: ignore[arg-type]
    assert active[0] == new_secret
    assert merchant["webhook_secrets"]["stripe"] in active


def test_rotating_for_an_unknown_merchant_or_gateway_is_rejected(
    client: TestClient[Any], admin_headers: dict[str, str], merchant: dict[str, Any]
) -> None:
    unknown = client.post(f"/v1/admin/merchants/{uuid.uuid4()}/webhook-secrets/stripe/rotate", headers=admin_headers)
    assert unknown.status_code == 404
    bad_gateway = client.post(
        f"/v1/admin/merchants/{merchant['merchant_id']}/webhook-secrets/paypal/rotate",
        headers=admin_headers,
    )
    assert bad_gateway.status_code == 400


def test_health_ready_metrics_and_openapi_need_no_key(client: TestClient[Any]) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").json() == {"status": "ready", "reasons": []}
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert 'daybook_request_duration_seconds_count{method="GET",path="/healthz",status_code="200"}' in metrics.text
    assert "daybook_batch_size_bucket" in metrics.text
    assert 'daybook_projection_lag_events{projection="orders"}' in metrics.text
    assert 'daybook_database_pool_connections{pool="api-read",state="size_max"} 10.0' in metrics.text
    assert 'daybook_database_pool_requests_waiting{pool="api"}' in metrics.text
    document = client.get("/schema/openapi.json").json()
    assert "/v1/admin/merchants" in document["paths"]


def test_a_key_over_its_rate_limit_gets_429_with_retry_after(
    api_settings: Any, database_url: str, redis_url: str, merchant_headers: dict[str, str]
) -> None:
    from dataclasses import replace

    from api.app import create_app

    app = create_app(replace(api_settings, rate_limit_per_minute=2), database_url, redis_url)
    with TestClient(app) as limited:
        statuses = [limited.get("/v1/orders", headers=merchant_headers).status_code for _ in range(3)]
        refused = limited.get("/v1/orders", headers=merchant_headers)
    assert statuses[:2] == [200, 200]
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1


def test_readyz_is_503_with_reasons_when_projections_lag_beyond_the_limit(
    api_settings: Any, database_url: str, redis_url: str
) -> None:
    from dataclasses import replace

    from api.app import create_app

    app = create_app(replace(api_settings, projection_lag_max=-1), database_url, redis_url)
    with TestClient(app) as lagging:
        response = lagging.get("/readyz")
    assert response.status_code == 503
    reasons = response.json()["reasons"]
    assert any("projection orders is" in reason for reason in reasons), reasons
