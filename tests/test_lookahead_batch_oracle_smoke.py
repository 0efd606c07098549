"""benchmarks/lookahead_batch_oracle.py: the hill climb and the batch summaries its report rests on."""

import numpy as np
import pytest

from conftest import make_pool


@pytest.fixture
def oracle(bench_script):
    return bench_script("lookahead_batch_oracle")


def test_hill_climb_finds_the_best_batch_of_an_additive_objective_and_never_falls(oracle):
    values = np.random.default_rng(0).permutation(30).astype(float)
    seen = []

    def objective(rows):
        assert np.unique(rows).size == rows.size  # a swap never repeats a row
        seen.append(values[rows].sum())
        return seen[-1]

    start = np.argsort(values)[:3]  # the worst batch
    batch, best, accepted = oracle.hill_climb(objective, start, 30, 2000, np.random.default_rng(1))
    assert sorted(batch.tolist()) == sorted(np.argsort(values)[-3:].tolist())  # 27 + 28 + 29
    assert best == values[batch].sum() == 84.0
    assert 3 <= accepted < 2000
    np.testing.assert_array_equal(start, np.argsort(values)[:3])  # the caller's start is not changed


def test_hill_climb_keeps_the_start_when_no_swap_helps(oracle):
    batch, best, accepted = oracle.hill_climb(lambda rows: 1.0, np.array([4, 2]), 10, 50, np.random.default_rng(0))
    assert batch.tolist() == [4, 2] and best == 1.0 and accepted == 0


def test_batch_properties_on_a_hand_case(oracle):
    p = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
    y = np.array([0, 0, 1, 1])  # zero-shot predicts 0, 1, 0, 1: rows 1 and 2 are wrong
    out = oracle.batch_properties([0, 1, 2], p, y)
    assert out == {"zero_shot_wrong": pytest.approx(2 / 3), "max_p": pytest.approx((0.9 + 0.7 + 0.6) / 3),
                   "distinct_classes": 2}


def test_error_scores_are_larger_where_the_model_is_less_sure(oracle):
    x, p, _ = make_pool(n=120)
    scores = oracle.error_scores(x, p)
    assert set(scores) == set(oracle.ERROR_SCORES)
    np.testing.assert_allclose(scores["least confidence"], 1 - p.max(1))
    srt = np.sort(p, axis=1)
    np.testing.assert_allclose(scores["margin"], srt[:, -2] - srt[:, -1])
    assert all(v.shape == (120,) and np.isfinite(v).all() for v in scores.values())
    assert ((scores["kNN disagreement"] >= 0) & (scores["kNN disagreement"] <= 1)).all()
