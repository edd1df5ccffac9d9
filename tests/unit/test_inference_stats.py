"""The arithmetic of the registry's inference statistics: buckets, quantiles, tallies (no database)."""

import pytest

from service.domain.models.inference_stats import LATENCY_BOUNDS, Tally, bucket_of, quantile


def test_latencies_fall_in_the_bucket_of_their_upper_bound():
    assert bucket_of(0.0) == 0 and bucket_of(0.001) == 0
    assert bucket_of(0.0011) == 1
    assert bucket_of(1e6) == len(LATENCY_BOUNDS)
    assert LATENCY_BOUNDS[0] == 0.001 and 100 < LATENCY_BOUNDS[-1] < 200


def test_quantiles_are_estimated_within_one_bucket():
    tally = Tally()
    for ms in range(1, 101):  # 1 ms .. 100 ms, one call each
        tally.add(ms / 1000, 1, True, None, None)
    p50, p95 = quantile(tally.buckets, 0.5), quantile(tally.buckets, 0.95)
    assert p50 == pytest.approx(0.050, rel=0.19) and p95 == pytest.approx(0.095, rel=0.19)
    assert quantile([0] * (len(LATENCY_BOUNDS) + 1), 0.95) is None
    slow = Tally()
    slow.add(1000.0, 1, True, None, None)
    assert quantile(slow.buckets, 0.95) == LATENCY_BOUNDS[-1]


def test_tallies_add_counts_and_keep_the_largest_memory():
    first, second = Tally(), Tally()
    first.add(0.2, 8, True, 100, 10)
    second.add(0.4, 4, False, 300, None)
    second.add(0.1, 4, True, None, 5)
    first.merge(second)
    assert (first.calls, first.items, first.errors) == (3, 16, 1)
    assert first.total_seconds == pytest.approx(0.7) and first.max_seconds == 0.4
    assert (first.peak_rss_bytes, first.rss_growth_bytes) == (300, 10)
    assert sum(first.buckets) == 3
