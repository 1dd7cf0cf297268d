"""One rate limit per API key across API processes, kept in Redis; per process while Redis is away."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import uuid
from dataclasses import replace
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.rate_limit import SharedRateLimiter
from tests.integration.serving import free_port

DEAD_REDIS = f"redis://127.0.0.1:{free_port()}/0"


def _run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def _decisions(limiters: list[SharedRateLimiter], key_id: str, count: int) -> list[bool]:
    try:
        return [(await limiters[i % len(limiters)].decide(key_id)).admitted for i in range(count)]
    finally:
        for limiter in limiters:
            await limiter.close()


def test_two_processes_admit_together_no_more_than_one_burst(redis_url: str) -> None:
    # Three a minute: a burst of three, then one every 20 s; nothing refills during the test.
    key_id = f"key-{uuid.uuid4().hex}"
    limiters = [SharedRateLimiter(redis_url, per_minute=3), SharedRateLimiter(redis_url, per_minute=3)]
    admitted = _run(_decisions(limiters, key_id, 12))
    assert admitted == [True, True, True] + [False] * 9


def test_keys_do_not_share_a_limit_in_redis(redis_url: str) -> None:
    limiters = [SharedRateLimiter(redis_url, per_minute=1)]
    first = _run(_decisions(limiters, f"a-{uuid.uuid4().hex}", 2))
    limiters = [SharedRateLimiter(redis_url, per_minute=1)]
    second = _run(_decisions(limiters, f"b-{uuid.uuid4().hex}", 2))
    assert first == second == [True, False]


def test_a_refusal_says_how_long_to_wait(redis_url: str) -> None:
    async def refused() -> tuple[Any, Any]:
        limiter = SharedRateLimiter(redis_url, per_minute=2)
        key_id = f"key-{uuid.uuid4().hex}"
        try:
            await limiter.decide(key_id)
            await limiter.decide(key_id)
            return await limiter.decide(key_id), limiter.degraded_reason
        finally:
            await limiter.close()

    decision, reason = _run(refused())
    assert not decision.admitted
    assert decision.remaining == 0
    assert 1 <= decision.retry_after_seconds <= 30
    assert reason is None


def test_with_redis_away_the_limit_is_per_process_and_it_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def decide_twice() -> tuple[list[bool], str | None]:
        limiter = SharedRateLimiter(DEAD_REDIS, per_minute=1)
        try:
            admitted = [(await limiter.decide("k")).admitted for _ in range(2)]
            return admitted, limiter.degraded_reason
        finally:
            await limiter.close()

    with caplog.at_level(logging.WARNING, logger="api.rate_limit"):
        admitted, reason = _run(decide_twice())
    assert admitted == [True, False]  # the local bucket still limits
    assert reason == "rate limit is per API process: redis does not answer"
    assert any("falls back to per-process buckets" in record.getMessage() for record in caplog.records)


def test_responses_carry_the_ietf_rate_limit_headers_and_a_refusal_retry_after(
    api_settings: Any, database_url: str, redis_url: str, client: TestClient[Any], admin_headers: dict[str, str]
) -> None:
    created = client.post("/v1/admin/merchants", json={"name": "Limited"}, headers=admin_headers).json()
    headers = {"Authorization": f"Bearer {created['api_key']}"}
    app = create_app(replace(api_settings, rate_limit_per_minute=2), database_url, redis_url)
    with TestClient(app) as limited:
        first = limited.get("/v1/orders", headers=headers)
        second = limited.get("/v1/orders", headers=headers)
        refused = limited.get("/v1/orders", headers=headers)
    assert first.headers["ratelimit-policy"] == '"per-key";q=2;w=60'
    assert re.fullmatch(r'"per-key";r=1;t=\d+', first.headers["ratelimit"])
    assert re.fullmatch(r'"per-key";r=0;t=\d+', second.headers["ratelimit"])
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert int(refused.headers["retry-after"]) >= 1
    assert re.fullmatch(r'"per-key";r=0;t=\d+', refused.headers["ratelimit"])


def test_unauthenticated_answers_carry_no_rate_limit_headers(client: TestClient[Any]) -> None:
    response = client.get("/v1/orders")
    assert response.status_code == 401
    assert "ratelimit" not in response.headers


def test_readyz_names_the_per_process_fallback_while_redis_is_away(
    api_settings: Any, database_url: str, redis_url: str, merchant_headers: dict[str, str]
) -> None:
    app = create_app(api_settings, database_url, redis_url)
    with TestClient(app) as test_client:
        shared = app.state.rate_limiter
        app.state.rate_limiter = SharedRateLimiter(DEAD_REDIS, api_settings.rate_limit_per_minute)
        try:
            served = test_client.get("/v1/orders", headers=merchant_headers)
            ready = test_client.get("/readyz")
        finally:
            test_client.blocking_portal.call(app.state.rate_limiter.close)
            app.state.rate_limiter = shared
        recovered = test_client.get("/readyz")
    assert served.status_code == 200
    assert ready.status_code == 503
    assert "rate limit is per API process: redis does not answer" in ready.json()["reasons"]
    assert recovered.json() == {"status": "ready", "reasons": []}


def test_a_busy_key_is_leased_a_few_requests_per_round_trip_and_still_no_more_than_its_burst(redis_url: str) -> None:
    import redis as sync_redis

    from api.rate_limit import lease_size

    per_minute = 1_200  # a burst of 1,200; leases of 2 requests
    assert lease_size(per_minute) == 2
    key_id = f"key-{uuid.uuid4().hex}"
    client = sync_redis.Redis.from_url(redis_url)

    def script_calls() -> int:
        stats = client.info("commandstats")
        return sum(int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_evalsha", "cmdstat_eval"))

    before, started = script_calls(), time.monotonic()
    limiters = [SharedRateLimiter(redis_url, per_minute), SharedRateLimiter(redis_url, per_minute)]
    admitted = _run(_decisions(limiters, key_id, 1_300))
    refilled = math.ceil((time.monotonic() - started) * per_minute / 60)  # 20 a second come back meanwhile
    calls = script_calls() - before
    # At most the burst and what refilled; an unused lease (2 at most per process) only makes it stricter.
    assert per_minute - 4 <= sum(admitted) <= per_minute + refilled
    assert calls <= 1_300 // 2 + 60  # one round trip per two requests (and a few refusals)
    client.close()


def test_concurrent_requests_of_one_key_share_one_round_trip_for_a_lease(redis_url: str) -> None:
    import redis as sync_redis

    per_minute = 1_000_000  # leases of 64 requests
    client = sync_redis.Redis.from_url(redis_url)

    def script_calls() -> int:
        stats = client.info("commandstats")
        return sum(int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_evalsha", "cmdstat_eval"))

    async def at_once() -> list[bool]:
        limiter = SharedRateLimiter(redis_url, per_minute)
        try:
            decisions = await asyncio.gather(*(limiter.decide("busy-key") for _ in range(128)))
            return [decision.admitted for decision in decisions]
        finally:
            await limiter.close()

    before = script_calls()
    admitted = _run(at_once())
    calls = script_calls() - before
    client.close()
    assert all(admitted)
    assert calls <= 3  # 128 requests, leases of 64: two calls (a script load at most besides)
