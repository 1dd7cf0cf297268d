"""HTTP edges every route shares: methods, media types, counted statuses, logged server errors."""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import replace
from typing import Any

import eventsourcing.persistence
import psycopg
import pytest
from litestar.testing import TestClient

from adapters import audit_store
from api.app import create_app
from domain.groupcommit import OverloadedError
from tests.integration.conftest import create_merchant

SKU = "EDGE-1"


def _concrete(path: str) -> str:
    """A documented path template with every parameter filled in."""
    values = {"{sku}": SKU, "{gateway}": "stripe"}
    return re.sub(r"\{[^}]+\}", lambda m: values.get(m.group(0), str(uuid.uuid4())), path)


@pytest.fixture(scope="module")
def documented(client: TestClient[Any]) -> dict[str, Any]:
    paths: dict[str, Any] = client.get("/schema/openapi.json").json()["paths"]
    return paths


def _routes(documented: dict[str, Any]) -> list[tuple[str, set[str]]]:
    routes = []
    for template, item in documented.items():
        path = _concrete(template)
        methods = {method.upper() for method in item if method in {"get", "post", "put", "patch", "delete"}}
        routes.append((path, methods))
    return routes


def test_options_on_every_route_answers_204_with_the_allowed_methods_and_needs_no_key(
    client: TestClient[Any], documented: dict[str, Any]
) -> None:
    for path, methods in _routes(documented):
        response = client.options(path)
        assert response.status_code == 204, (path, response.text)
        assert set(response.headers["allow"].split(", ")) == methods | {"OPTIONS"}, path


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_a_method_a_route_does_not_have_is_405_with_allow(
    client: TestClient[Any], documented: dict[str, Any], merchant_headers: dict[str, str], method: str
) -> None:
    for path, methods in _routes(documented):
        response = client.request(method, path, headers=merchant_headers)
        assert response.status_code == 405, (method, path, response.text)
        assert response.json()["code"] == "method_not_allowed"
        assert set(response.headers["allow"].split(", ")) == methods | {"OPTIONS"}, path


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", "application/json; charset=latin-1"],
)
def test_a_body_that_is_not_json_is_415(
    client: TestClient[Any], merchant_headers: dict[str, str], content_type: str
) -> None:
    response = client.post(
        f"/v1/inventory/{SKU}/receipts",
        content=b'{"quantity": 1}',
        headers={**merchant_headers, "Content-Type": content_type},
    )
    assert response.status_code == 415, response.text
    assert response.json()["code"] == "unsupported_media_type"
    assert response.headers["content-type"].startswith("application/problem+json")


def test_a_body_without_a_content_type_is_415(client: TestClient[Any], merchant_headers: dict[str, str]) -> None:
    response = client.post(f"/v1/inventory/{SKU}/receipts", content=b'{"quantity": 1}', headers=merchant_headers)
    assert response.status_code == 415, response.text


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=UTF-8", "application/merge+json"]
)
def test_json_bodies_are_accepted_with_or_without_a_utf8_charset(
    client: TestClient[Any], merchant_headers: dict[str, str], content_type: str
) -> None:
    response = client.post(
        f"/v1/inventory/{SKU}/receipts",
        content=b'{"quantity": 1}',
        headers={**merchant_headers, "Content-Type": content_type},
    )
    assert response.status_code == 201, response.text


def test_a_post_without_a_body_needs_no_content_type(client: TestClient[Any], merchant_headers: dict[str, str]) -> None:
    response = client.post(f"/v1/orders/{uuid.uuid4()}/cancel", headers=merchant_headers)
    assert response.status_code == 404, response.text


def test_a_refused_media_type_takes_no_idempotency_key(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    headers = {**merchant_headers, "Idempotency-Key": f"media-{uuid.uuid4().hex}"}
    refused = client.post(
        f"/v1/inventory/{SKU}/receipts", content=b'{"quantity": 1}', headers={**headers, "Content-Type": "text/plain"}
    )
    accepted = client.post(f"/v1/inventory/{SKU}/receipts", json={"quantity": 1}, headers=headers)
    assert refused.status_code == 415
    assert accepted.status_code == 201, accepted.text
    assert "idempotent-replayed" not in accepted.headers


def _count(metrics: str, method: str, path: str, status: int) -> float:
    pattern = (
        rf'daybook_request_duration_seconds_count\{{method="{method}",path="{re.escape(path)}",'
        rf'status_code="{status}"\}} ([0-9.e+]+)'
    )
    found = re.search(pattern, metrics)
    return float(found.group(1)) if found else 0.0


def test_metrics_count_the_status_actually_sent_401_404_and_405_included(
    client: TestClient[Any], merchant_headers: dict[str, str]
) -> None:
    before = client.get("/metrics").text
    assert client.get("/v1/orders").status_code == 401
    assert client.get("/v1/nowhere").status_code == 404
    assert client.delete("/v1/orders", headers=merchant_headers).status_code == 405
    after = client.get("/metrics").text
    assert _count(after, "GET", "/v1/orders", 401) == _count(before, "GET", "/v1/orders", 401) + 1
    assert _count(after, "GET", "unmatched", 404) == _count(before, "GET", "unmatched", 404) + 1
    assert _count(after, "DELETE", "unmatched", 405) == _count(before, "DELETE", "unmatched", 405) + 1
    assert _count(after, "GET", "/v1/orders", 500) == _count(before, "GET", "/v1/orders", 500)


class _BrokenResolver:
    def resolve_cached(self, presented: str) -> Any:
        raise RuntimeError("the key cache is broken")


def test_a_500_is_logged_with_its_traceback_and_request_id_and_counted_as_500(
    api_settings: Any,
    database_url: str,
    redis_url: str,
    merchant_headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(api_settings, database_url, redis_url)
    with TestClient(app, raise_server_exceptions=False) as broken:
        app.state.key_resolver = _BrokenResolver()
        before = broken.get("/metrics").text
        with caplog.at_level(logging.WARNING, logger="api.problems"):
            response = broken.get("/v1/payments", headers={**merchant_headers, "X-Request-ID": "broken-1"})
        after = broken.get("/metrics").text
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    [record] = [r for r in caplog.records if getattr(r, "request_id", None) == "broken-1"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert "the key cache is broken" in str(record.exc_info[1])
    assert _count(after, "GET", "/v1/payments", 500) == _count(before, "GET", "/v1/payments", 500) + 1


def test_a_503_is_logged_with_its_traceback_and_request_id(
    api_settings: Any,
    database_url: str,
    redis_url: str,
    merchant_headers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(replace(api_settings, batch_queue_size_max=1), database_url, redis_url)
    with TestClient(app, raise_server_exceptions=False) as overloaded:

        async def refuse(command: Any) -> Any:
            raise OverloadedError("api", 1)

        app.state.committer.submit_async = refuse
        with caplog.at_level(logging.WARNING, logger="api.problems"):
            response = overloaded.post(
                f"/v1/inventory/{SKU}/receipts",
                json={"quantity": 1},
                headers={**merchant_headers, "X-Request-ID": "overloaded-1"},
            )
    assert response.status_code == 503
    assert response.json()["code"] == "overloaded"
    [record] = [r for r in caplog.records if getattr(r, "request_id", None) == "overloaded-1"]
    assert record.levelno == logging.WARNING
    assert isinstance(record.exc_info[1] if record.exc_info else None, OverloadedError)


class _DroppedConnectionResolver:
    """A key resolver whose pooled connection the server closed (as after a restart)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def resolve_cached(self, presented: str) -> Any:
        return False

    def resolve(self, presented: str) -> Any:
        raise self.error


_DROPPED = "consuming input failed: server closed the connection unexpectedly"


@pytest.mark.parametrize(
    "error",
    [psycopg.OperationalError(_DROPPED), eventsourcing.persistence.OperationalError(_DROPPED)],
    ids=["psycopg", "event-store"],
)
def test_a_database_connection_dropped_under_a_request_is_answered_503_unavailable_not_500(
    api_settings: Any, database_url: str, redis_url: str, merchant_headers: dict[str, str], error: Exception
) -> None:
    app = create_app(api_settings, database_url, redis_url)
    with TestClient(app, raise_server_exceptions=False) as dropped:
        resolver = app.state.key_resolver
        app.state.key_resolver = _DroppedConnectionResolver(error)
        headers = {**merchant_headers, "Idempotency-Key": f"dropped-{uuid.uuid4().hex}"}
        first = dropped.post(f"/v1/inventory/{SKU}/receipts", json={"quantity": 1}, headers=headers)
        app.state.key_resolver = resolver
        retry = dropped.post(f"/v1/inventory/{SKU}/receipts", json={"quantity": 1}, headers=headers)
    assert first.status_code == 503, first.text
    assert first.json()["code"] == "unavailable"
    assert first.headers["Retry-After"] == "1"
    assert retry.status_code == 201, retry.text


def test_an_ndjson_export_whose_first_page_meets_a_dropped_connection_is_503_not_500(
    api_settings: Any, database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(api_settings, database_url, redis_url)
    with TestClient(app, raise_server_exceptions=False) as dropped:
        auditor = {"Authorization": f"Bearer {create_merchant(dropped, 'Export')['auditor_key']}"}
        ndjson = {**auditor, "Accept": "application/x-ndjson"}
        whole = dropped.get("/v1/audit/events", headers=ndjson)

        def dropped_connection(*args: Any, **kwargs: Any) -> Any:
            raise psycopg.OperationalError(_DROPPED)

        monkeypatch.setattr(audit_store, "event_rows", dropped_connection)
        failed = dropped.get("/v1/audit/events", headers=ndjson)
    assert whole.status_code == 200, whole.text
    assert failed.status_code == 503, failed.text
    assert failed.json()["code"] == "unavailable"
