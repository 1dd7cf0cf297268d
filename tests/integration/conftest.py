"""The API in-process over real PostgreSQL and Redis (Litestar's test client)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from litestar.testing import TestClient
from psycopg_pool import ConnectionPool

from adapters.database import connection_pool, eventsourcing_env
from adapters.settings import Settings
from api.app import create_app
from domain.application import Daybook
from domain.context import CommandContext
from domain.groupcommit import GroupCommitter
from projections.audit_digests import DigestSigner
from projections.registry import every_projection
from projections.runner import ProjectionRunner
from tests.conftest import Servers, fresh_database

ADMIN_KEY = "dbk_admin_test_key_for_the_suite"
SIGNING_KEY = Ed25519PrivateKey.generate()
"""The audit digests' key of the in-process projection runner."""
OPERATOR = CommandContext(actor="operator:test", request_id="test")
"""The audit context of operator actions the tests take without the API."""


@pytest.fixture(scope="session")
def api_settings(settings: Settings) -> Settings:
    # The apps served in the test process stay out of committer routing: they would join
    # the partition directory of the `daybook api` processes some tests start on the same
    # database, and be forwarded commands on a loop that the test thread drives.
    return replace(settings, admin_key=ADMIN_KEY, committer_routing=False)


@pytest.fixture(scope="session")
def client(api_settings: Settings, database_url: str, redis_url: str) -> Iterator[TestClient[Any]]:
    app = create_app(api_settings, database_url, redis_url)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


def create_merchant(client: TestClient[Any], name: str) -> dict[str, Any]:
    """A merchant created through the admin endpoint: its keys, secrets and bearer ``headers``."""
    response = client.post("/v1/admin/merchants", json={"name": name}, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    created["headers"] = {"Authorization": f"Bearer {created['api_key']}"}
    return created


@pytest.fixture(scope="session")
def merchant(client: TestClient[Any]) -> dict[str, Any]:
    """A merchant created through the admin endpoint, with its keys and secrets."""
    return create_merchant(client, "Suite merchant")


@pytest.fixture(scope="session")
def merchant_headers(merchant: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {merchant['api_key']}"}


@pytest.fixture(scope="session")
def auditor_headers(merchant: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {merchant['auditor_key']}"}


@contextmanager
def running_projections(database_url: str, settings: Settings) -> Iterator[ProjectionRunner]:
    """The projection runner following ``database_url`` in a thread."""
    app = Daybook(env=eventsourcing_env(database_url, settings))
    # A digest in every batch: tests read the digest of the head they wrote.
    signer = DigestSigner(SIGNING_KEY, interval_seconds=60, interval_events=1)
    runner = ProjectionRunner(app, database_url, every_projection(app, signer=signer))
    thread = threading.Thread(target=runner.run_forever, name="projections", daemon=True)
    thread.start()
    try:
        yield runner
    finally:
        runner.stop()
        thread.join(timeout=10)
        app.close()


@pytest.fixture(scope="session")
def projections_running(database_url: str, api_settings: Settings) -> Iterator[None]:
    """The projection runner following the session's database in a thread."""
    with running_projections(database_url, api_settings):
        yield


@pytest.fixture
def own_database(servers: Servers) -> Iterator[str]:
    """A migrated database of the test's own: no other test's runner or committer in it."""
    with fresh_database(servers) as url:
        yield url


@pytest.fixture(scope="module")
def pool(database_url: str, settings: Settings) -> Iterator[ConnectionPool[Any]]:
    """A small SQL pool on the session's database, as the API and workers make theirs."""
    pool = connection_pool(database_url, settings, size=2, name="test")
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def daybook(database_url: str, settings: Settings) -> Iterator[Daybook]:
    """The application on the session's database."""
    app = Daybook(env=eventsourcing_env(database_url, settings))
    yield app
    app.close()


@pytest.fixture
def committer(daybook: Daybook) -> Iterator[GroupCommitter]:
    """A running group committer of :func:`daybook`."""
    with GroupCommitter(daybook, name="test") as running:
        yield running
