"""imbalance(): the busiest worker's share against the even share."""

from __future__ import annotations

from collections import Counter

import pytest

from support.lessons.scaling_workers import imbalance


def test_even_split_is_one():
    assert imbalance(Counter({11: 10, 12: 10, 13: 10}), 3) == pytest.approx(1.0)


def test_busiest_share_times_workers():
    assert imbalance(Counter({11: 60, 12: 30, 13: 10}), 3) == pytest.approx(1.8)


def test_an_idle_worker_still_counts_as_a_worker():
    assert imbalance(Counter({11: 10, 12: 10}), 3) == pytest.approx(1.5)


def test_failures_are_not_a_worker():
    assert imbalance(Counter({0: 50, 11: 10, 12: 10}), 2) == pytest.approx(1.0)


@pytest.mark.parametrize("answers, workers", [(Counter(), 3), (Counter({0: 5}), 3), (Counter({11: 1}), 0)])
def test_nothing_to_measure(answers, workers):
    with pytest.raises(ValueError, match="need answers"):
        imbalance(answers, workers)
