"""The request tally adds to the metrics exactly what direct increments and observations would."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from api.tally import Tally

BUCKETS = (0.001, 0.01, 0.1, 1.0)
# The bounds themselves are in the draw: a value equal to a bound is counted in that bucket.
VALUES = st.one_of(st.sampled_from(BUCKETS), st.floats(min_value=0, max_value=10, allow_nan=False))


def _twins(name: str) -> tuple[CollectorRegistry, Histogram, CollectorRegistry, Histogram]:
    direct, tallied = CollectorRegistry(), CollectorRegistry()
    return (
        direct,
        Histogram(name, "latency", ["route"], buckets=BUCKETS, registry=direct),
        tallied,
        Histogram(name, "latency", ["route"], buckets=BUCKETS, registry=tallied),
    )


OBSERVATIONS = st.lists(st.tuples(st.sampled_from(["a", "b"]), VALUES), min_size=1, max_size=40)


@given(OBSERVATIONS, st.integers(min_value=0, max_value=40))
def test_flushed_observations_equal_direct_ones(observations: list[tuple[str, float]], flush_at: int) -> None:
    direct_registry, direct, tallied_registry, tallied = _twins("seconds")
    tally = Tally()
    for index, (route, value) in enumerate(observations):
        direct.labels(route).observe(value)
        tally.observe(tallied.labels(route), value)
        if index == flush_at:
            tally.flush()
    tally.flush()
    tallied_samples, direct_samples = _samples(tallied_registry), _samples(direct_registry)
    assert [sample[:2] for sample in tallied_samples] == [sample[:2] for sample in direct_samples]
    # Counts exactly; sums up to the order of the additions.
    assert [sample[2] for sample in tallied_samples] == pytest.approx([sample[2] for sample in direct_samples])
    assert direct_samples  # the comparison compares something


def _samples(registry: CollectorRegistry) -> list[tuple[str, tuple[tuple[str, str], ...], float]]:
    """Every sample but the creation times (which differ between the twins)."""
    return sorted(
        (sample.name, tuple(sorted(sample.labels.items())), sample.value)
        for metric in registry.collect()
        for sample in metric.samples
        if not sample.name.endswith("_created")
    )


def test_nothing_reaches_the_metrics_before_a_flush_and_nothing_twice() -> None:
    registry = CollectorRegistry()
    requests = Counter("requests", "requests", registry=registry)
    in_progress = Gauge("in_progress", "in progress", registry=registry)
    tally = Tally()
    tally.inc(requests, 3)
    tally.inc(in_progress)
    tally.inc(in_progress)
    tally.inc(in_progress, -1)
    assert registry.get_sample_value("requests_total") == 0
    assert registry.get_sample_value("in_progress") == 0
    tally.flush()
    tally.flush()
    assert registry.get_sample_value("requests_total") == 3
    assert registry.get_sample_value("in_progress") == 1  # the net change
    tally.inc(in_progress, -1)
    tally.flush()
    assert registry.get_sample_value("in_progress") == 0


def test_counts_from_many_threads_with_flushes_between_are_all_kept() -> None:
    registry = CollectorRegistry()
    requests = Counter("requests", "requests", registry=registry)
    tally = Tally()
    per_thread = 20_000

    def count() -> None:
        for _ in range(per_thread):
            tally.inc(requests)

    threads = [threading.Thread(target=count) for _ in range(4)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        tally.flush()
    for thread in threads:
        thread.join()
    tally.flush()
    assert registry.get_sample_value("requests_total") == 4 * per_thread
