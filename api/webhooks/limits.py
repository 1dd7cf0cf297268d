"""What one merchant's webhook endpoints may cost, checked before any HMAC is computed.

Two token buckets per merchant, kept in each API process (no network round trip on the
edge, and the edge keeps answering with Redis down; with N processes a merchant gets up
to N times each limit, still a bound):

- **deliveries**, per merchant: ``DAYBOOK_WEBHOOK_RATE_LIMIT_PER_MINUTE`` (default
  60,000: bursts of a minute's allowance, 1,000 a second sustained), far above what a
  gateway sends a merchant, so only a flood is refused;
- **forged deliveries**, per merchant endpoint (merchant and gateway): a delivery that
  fails verification takes a token; while none is left, deliveries to that endpoint are
  answered 429 without verifying them. A flood of forgeries (large bodies, many secrets
  to try) then costs a bucket lookup each, and slows only the endpoint it targets: the
  gateway's genuine deliveries there are retried later, and no other merchant notices.

Both answer 429 ``rate_limited`` with ``Retry-After``; gateways retry.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import OrderedDict
from threading import Lock
from typing import Final

FORGED_BURST: Final = 100
"""Deliveries that may fail verification at one endpoint before it is limited."""
FORGED_PER_MINUTE: Final = 60
"""Failed verifications an endpoint earns back per minute."""
BUCKETS_MAX: Final = 100_000


class TokenBuckets:
    """Token buckets by key, each holding at most ``capacity`` and refilled continuously (bounded LRU)."""

    def __init__(self, capacity: float, per_minute: float) -> None:
        self.capacity = capacity
        self.refill_per_second = per_minute / 60.0
        self._buckets: OrderedDict[object, tuple[float, float]] = OrderedDict()
        self._lock = Lock()

    def _level(self, key: object, now: float) -> float:
        tokens, updated = self._buckets.pop(key, (self.capacity, now))
        return min(self.capacity, tokens + (now - updated) * self.refill_per_second)

    def _keep(self, key: object, tokens: float, now: float) -> None:
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > BUCKETS_MAX:
            self._buckets.popitem(last=False)

    def take(self, key: object, now: float | None = None) -> int | None:
        """Takes a token: ``None`` when there was one, else the seconds until there is."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens = self._level(key, now)
            allowed = tokens >= 1.0
            self._keep(key, tokens - 1.0 if allowed else tokens, now)
        return None if allowed else self._wait(tokens)

    def wait_for_token(self, key: object, now: float | None = None) -> int | None:
        """Like :meth:`take` without taking: ``None`` when a token is there."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens = self._level(key, now)
            self._keep(key, tokens, now)
        return None if tokens >= 1.0 else self._wait(tokens)

    def _wait(self, tokens: float) -> int:
        return max(1, math.ceil((1.0 - tokens) / self.refill_per_second))


class WebhookLimits:
    """The deliveries and forged-deliveries limits of every merchant's webhook endpoints."""

    def __init__(self, deliveries_per_minute: int) -> None:
        self.deliveries = TokenBuckets(deliveries_per_minute, deliveries_per_minute)
        self.forgeries = TokenBuckets(FORGED_BURST, FORGED_PER_MINUTE)

    def admit(self, merchant_id: uuid.UUID, gateway: str) -> int | None:
        """``None`` when the delivery may be verified, else the seconds to send in ``Retry-After``."""
        forged_wait = self.forgeries.wait_for_token((merchant_id, gateway))
        if forged_wait is not None:
            return forged_wait
        return self.deliveries.take(merchant_id)

    def failed_verification(self, merchant_id: uuid.UUID, gateway: str) -> None:
        """Counts a delivery to the endpoint that did not verify."""
        self.forgeries.take((merchant_id, gateway))
