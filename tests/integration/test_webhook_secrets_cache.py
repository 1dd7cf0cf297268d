"""Webhook secrets are cached; forged deliveries cannot turn into a database read each."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from psycopg_pool import ConnectionPool

from adapters.database import connection_pool
from adapters.settings import Settings
from api.webhooks.secrets import REFRESHES_PER_MINUTE, SecretsCache


@pytest.fixture
def pool(database_url: str, settings: Settings) -> Iterator[ConnectionPool[Any]]:
    pool = connection_pool(database_url, settings, size=2, name="secrets-test")
    yield pool
    pool.close()


class CountingSecretsCache(SecretsCache):
    reads = 0

    def refresh(self, merchant_id: uuid.UUID, gateway: str) -> list[str] | None:
        self.reads += 1
        return super().refresh(merchant_id, gateway)


def test_a_flood_of_failed_verifications_reads_the_secrets_at_most_a_burst_then_serves_the_cache(
    pool: ConnectionPool[Any], merchant: dict[str, Any]
) -> None:
    cache = CountingSecretsCache(pool)
    merchant_id = uuid.UUID(merchant["merchant_id"])
    assert cache.refresh(merchant_id, "stripe")
    first_read = cache.reads
    answers = [cache.refresh_after_failure(merchant_id, "stripe") for _ in range(5 * REFRESHES_PER_MINUTE)]
    assert cache.reads - first_read <= REFRESHES_PER_MINUTE
    assert all(answer and merchant["webhook_secrets"]["stripe"] in answer for answer in answers)


def test_the_first_failed_verification_reads_fresh_secrets_at_once(
    pool: ConnectionPool[Any], merchant: dict[str, Any]
) -> None:
    cache = CountingSecretsCache(pool)
    merchant_id = uuid.UUID(merchant["merchant_id"])
    cache.refresh(merchant_id, "standard")
    before = cache.reads
    cache.refresh_after_failure(merchant_id, "standard")
    assert cache.reads == before + 1
