"""Active webhook secrets per merchant endpoint, cached briefly in each API process."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from threading import Lock
from typing import Any, Final

import anyio.to_thread
from psycopg_pool import ConnectionPool

from adapters import merchants
from api.rate_limit import RateLimiter

REFRESHES_PER_MINUTE = 60
SECRETS_TTL_S = 10.0
SECRETS_CACHE_SIZE_MAX = 10_000
# Merchant ids that name no merchant: remembered briefly, apart from the known ones, so
# that deliveries to made-up merchants cost a lookup each per few seconds and never evict
# a real merchant's secrets. A merchant id is random: none is created after being probed.
UNKNOWN_TTL_S = 5.0
UNKNOWN_SIZE_MAX = 10_000

_MISSING: Final = object()


class SecretsCache:
    """Active webhook secrets per (merchant, gateway), cached briefly and bounded.

    :meth:`cached` never blocks (for the event loop); :meth:`refresh` reads PostgreSQL.
    ``None`` means the merchant does not exist (remembered for ``UNKNOWN_TTL_S``, in a
    bounded cache of its own). A rotated-in secret is seen at once because a delivery
    that fails verification against the cached secrets is verified again with fresh
    ones; a secret whose grace period ended is still accepted for at most ``SECRETS_TTL_S``.
    """

    MISSING: Final = _MISSING

    def __init__(
        self,
        pool: ConnectionPool[Any],
        *,
        size_max: int = SECRETS_CACHE_SIZE_MAX,
        unknown_size_max: int = UNKNOWN_SIZE_MAX,
    ) -> None:
        self._pool = pool
        self._cache: OrderedDict[tuple[uuid.UUID, str], tuple[float, list[str]]] = OrderedDict()
        self._unknown: OrderedDict[uuid.UUID, float] = OrderedDict()
        self._size_max = size_max
        self._unknown_size_max = unknown_size_max
        self._lock = Lock()
        self._refreshes = RateLimiter(REFRESHES_PER_MINUTE)
        self.lookups_total = 0
        """Reads of PostgreSQL (for metrics and tests)."""

    def cached(self, merchant_id: uuid.UUID, gateway: str) -> list[str] | object | None:
        """The cached secrets, ``None`` for a merchant known not to exist, or :attr:`MISSING`."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get((merchant_id, gateway))
            if cached is not None and cached[0] > now:
                self._cache.move_to_end((merchant_id, gateway))
                return cached[1]
            unknown_until = self._unknown.get(merchant_id)
            if unknown_until is not None and unknown_until > now:
                return None
            return _MISSING

    def refresh(self, merchant_id: uuid.UUID, gateway: str) -> list[str] | None:
        """Reads the secrets from PostgreSQL (newest first) and caches them."""
        with self._pool.connection() as conn:
            exists = merchants.merchant_exists(conn, merchant_id)
            secrets = merchants.active_webhook_secrets(conn, merchant_id, gateway) if exists else None
        now = time.monotonic()
        with self._lock:
            self.lookups_total += 1
            if secrets is None:
                self._unknown[merchant_id] = now + UNKNOWN_TTL_S
                self._unknown.move_to_end(merchant_id)
                _bound(self._unknown, self._unknown_size_max)
                return None
            self._unknown.pop(merchant_id, None)
            self._cache[(merchant_id, gateway)] = (now + SECRETS_TTL_S, secrets)
            self._cache.move_to_end((merchant_id, gateway))
            _bound(self._cache, self._size_max)
        return secrets

    def refresh_after_failure(self, merchant_id: uuid.UUID, gateway: str) -> list[str] | None:
        """Fresh secrets after a failed verification, rate limited per endpoint.

        The first failures read PostgreSQL at once (a secret rotated in elsewhere works
        immediately); a flood of forged deliveries costs at most one read a second per
        endpoint after a burst of ``REFRESHES_PER_MINUTE``, the cached secrets answering
        the rest.
        """
        if self._refreshes.acquire(f"{merchant_id}:{gateway}") is not None:
            cached = self.cached(merchant_id, gateway)
            if isinstance(cached, list):
                return cached
        return self.refresh(merchant_id, gateway)

    async def secrets(self, merchant_id: uuid.UUID, gateway: str) -> list[str] | None:
        """The active secrets; reads PostgreSQL in a worker thread on a miss."""
        cached = self.cached(merchant_id, gateway)
        if cached is not _MISSING:
            assert cached is None or isinstance(cached, list)
            return cached
        return await anyio.to_thread.run_sync(self.refresh, merchant_id, gateway)


def _bound(cache: OrderedDict[Any, Any], size_max: int) -> None:
    while len(cache) > size_max:
        cache.popitem(last=False)
