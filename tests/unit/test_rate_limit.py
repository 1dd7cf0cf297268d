"""The per-key token bucket."""

from __future__ import annotations

from api.rate_limit import RateLimiter


def test_a_key_may_burst_to_its_per_minute_limit_then_is_refused_with_a_wait() -> None:
    limiter = RateLimiter(per_minute=60)
    assert all(limiter.acquire("k", now=0.0) is None for _ in range(60))
    assert limiter.acquire("k", now=0.0) == 1


def test_tokens_come_back_at_the_per_minute_rate() -> None:
    limiter = RateLimiter(per_minute=120)
    for _ in range(120):
        limiter.acquire("k", now=0.0)
    assert limiter.acquire("k", now=0.0) is not None
    assert limiter.acquire("k", now=0.5) is None  # 2 tokens a second
    assert limiter.acquire("k", now=0.5) is not None


def test_keys_do_not_share_a_bucket() -> None:
    limiter = RateLimiter(per_minute=1)
    assert limiter.acquire("a", now=0.0) is None
    assert limiter.acquire("b", now=0.0) is None
    assert limiter.acquire("a", now=0.0) == 60
