"""Request metrics counted in process memory and added to Prometheus's metrics in bulk.

In multiprocess mode (``daybook serve``) every ``inc`` or ``observe`` of a
``prometheus_client`` metric writes a memory-mapped file, under a lock, after checking
the process id: about six writes per order (requests in progress up and down, the
latency histogram's sum and bucket, the route counter, the rate limiter's counter),
measured at 8 % of the API process's GIL time on the order path. The request path adds
to plain dictionaries here instead, and :meth:`Tally.flush` adds what it counted to the
metrics in one write per series: every :data:`FLUSH_INTERVAL_S` from the API's event
loop, before every scrape this process answers (its own counts are never behind in its
own scrape), and when the API stops. Another process's counts are at most
:data:`FLUSH_INTERVAL_S` behind in a scrape.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
from typing import Any

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.5


class Tally:
    """Counter and gauge increments and histogram observations waiting to be flushed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._increments: dict[Any, float] = {}
        # Per histogram child: [sum, count of bucket 0, count of bucket 1, ...].
        self._observations: dict[Any, list[float]] = {}

    def inc(self, metric: Any, amount: float = 1.0) -> None:
        """Adds ``amount`` to a counter, or to a gauge (negative too: a gauge gets the net change)."""
        with self._lock:
            self._increments[metric] = self._increments.get(metric, 0.0) + amount

    def observe(self, histogram: Any, value: float) -> None:
        """Observes ``value`` in a histogram (a labelled child, or a histogram without labels)."""
        bounds: list[float] = histogram._upper_bounds  # its last bound is +Inf
        bucket = bisect.bisect_left(bounds, value)  # the first bucket whose bound is >= value
        with self._lock:
            counts = self._observations.get(histogram)
            if counts is None:
                counts = self._observations[histogram] = [0.0] * (len(bounds) + 1)
            counts[0] += value
            counts[bucket + 1] += 1

    def flush(self) -> None:
        """Adds everything counted since the last flush to the metrics."""
        with self._lock:
            increments, self._increments = self._increments, {}
            observations, self._observations = self._observations, {}
        for metric, amount in increments.items():
            if amount:
                metric.inc(amount)
        for histogram, counts in observations.items():
            # What Histogram.observe writes, once per series: the sum, and the (non-cumulative) bucket.
            histogram._sum.inc(counts[0])
            for bucket, count in enumerate(counts[1:]):
                if count:
                    histogram._buckets[bucket].inc(count)


TALLY = Tally()
"""The API process's tally (its metrics are module-level, like ``prometheus_client``'s)."""


async def flush_forever(tally: Tally = TALLY) -> None:
    """Flushes ``tally`` every :data:`FLUSH_INTERVAL_S` until cancelled."""
    while True:
        await asyncio.sleep(FLUSH_INTERVAL_S)
        try:
            tally.flush()
        except Exception:
            log.exception("flushing the request metrics failed")
