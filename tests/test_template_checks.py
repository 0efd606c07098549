"""The strategy template's checks can fail (issue 10 item 7).

Toy strategies with one bug each: the template check aimed at that bug fails on them, while
the checks that only restate what ``Strategy.select`` enforces (distinct, in range, not
labeled) pass, because ``select`` hides or repairs the bug.
"""

import numpy as np
import pytest
from strategy_template import StrategyTemplate, _labeled_setup

from conftest import make_pool
from vlal import Strategy


class _LeastConfident(Strategy):
    """A correct toy: the ``budget`` candidates of lowest top-class probability."""

    def __init__(self, *, random_state=None):
        self.random_state = random_state

    def _scores(self, pool):
        return 1.0 - pool.probs[pool.candidates].max(axis=1)

    def _query(self, pool, budget, rng):
        order = np.argsort(-self._scores(pool), kind="stable")[:budget]
        return pool.candidates[order]


class _FloatPositions(_LeastConfident):
    """Bug: positions as floats (select casts them to int64 without a word)."""

    def _query(self, pool, budget, rng):
        return super()._query(pool, budget, rng).astype(np.float64)


class _CandidateNumbers(_LeastConfident):
    """Bug: numbers within ``pool.candidates`` instead of pool positions."""

    def _query(self, pool, budget, rng):
        return np.argsort(-self._scores(pool), kind="stable")[:budget]


class _Float16Arithmetic(_LeastConfident):
    """Bug: scores computed in the input dtype; exp overflows to inf in float16 and ties every row."""

    def _scores(self, pool):
        x = pool.features[pool.candidates]
        return np.exp(20 * x).sum(axis=1)


class _AssumesCOrder(_LeastConfident):
    """Bug: reads the features' memory as if they were C-ordered (rows scrambled for Fortran input)."""

    def _scores(self, pool):
        x = pool.features.ravel(order="K").reshape(pool.n, -1)
        return np.abs(x[pool.candidates]).sum(axis=1) + 1e-3 * pool.probs[pool.candidates, 0]


class _Duplicates(_LeastConfident):
    """Bug: the first pick twice."""

    def _query(self, pool, budget, rng):
        out = super()._query(pool, budget, rng)
        out[-1] = out[0]
        return out


class _NanUtilities(_LeastConfident):
    """Bug: a NaN utility for one candidate (select would report that row as no candidate)."""

    def _query(self, pool, budget, rng):
        util = self._scores(pool)
        util[0] = np.nan
        return super()._query(pool, budget, rng), util


def _case(cls):
    class Case(StrategyTemplate):  # not collected by pytest (no Test prefix): the checks are called below
        make = staticmethod(lambda rs: cls(random_state=rs))

    return Case()


@pytest.fixture
def pool():
    return make_pool()


def test_the_checks_pass_for_a_correct_strategy(pool, tmp_path):
    case = _case(_LeastConfident)
    for budget in (1, 7):
        for restricted in (False, True):
            case.test_query_raw_output(pool, budget, restricted)
    case.test_float16_gives_the_float32_picks(pool)
    case.test_layouts_give_the_float32_picks(pool, tmp_path)
    case.test_budget_distinct_in_range_unlabeled(pool)
    case.test_budget_equals_unlabeled(pool)
    case.test_float64_gives_the_float32_picks(pool)
    case.test_identical_rows()
    case.test_one_hot_probs_zero_uncertainty(pool)


def _select_result_looks_right(case, pool):
    """What the template checked before item 7: properties of ``select``'s result only."""
    x, p, y = pool
    lab = _labeled_setup(len(x), 10)
    idx = case._run(x, p, y, 7, labeled=lab)
    return (idx.dtype == np.int64 and idx.shape == (7,) and len(set(idx.tolist())) == 7
            and not set(idx.tolist()) & set(lab.tolist()))


def test_float_positions_fail_the_raw_checks(pool):
    case = _case(_FloatPositions)
    assert _select_result_looks_right(case, pool)  # select's cast hides the bug
    with pytest.raises(AssertionError, match="float64 positions, not integers"):
        case.test_query_raw_output(pool, 7, False)
    with pytest.raises(AssertionError, match="float64 positions, not integers"):
        case.test_budget_distinct_in_range_unlabeled(pool)
    with pytest.raises(AssertionError, match="float64 positions, not integers"):
        case.test_identical_rows()


def test_duplicates_fail_the_raw_check_not_just_selects_guard(pool):
    case = _case(_Duplicates)
    with pytest.raises(AssertionError, match="duplicates"):  # not select's bare RuntimeError
        case.test_budget_distinct_in_range_unlabeled(pool)


def test_nan_utilities_fail_the_raw_check(pool):
    case = _case(_NanUtilities)
    x, p, y = pool
    lab = _labeled_setup(len(x), 10)
    _, u = case.strategy().select(x, p, 3, labeled=lab, labels=y[lab], return_utilities=True)
    assert np.isnan(u).sum() == 11  # select passes the NaN on as if the row were no candidate
    with pytest.raises(AssertionError, match="NaN utilities"):
        case.test_query_raw_output(pool, 7, False)


def test_candidate_numbers_fail_the_raw_check(pool):
    case = _case(_CandidateNumbers)
    with pytest.raises(AssertionError, match="not among pool.candidates"):
        case.test_query_raw_output(pool, 7, True)
    # select alone does not always notice: when the candidate numbers happen to be free rows it returns
    # them, the wrong rows (here shifted by the 10 labeled rows in front)
    x, _, y = pool
    p = np.tile(np.array([0.97, 0.01, 0.01, 0.01], np.float32), (len(x), 1))
    p[[40, 41, 42]] = 0.25  # the three most uncertain rows
    lab, cand = np.arange(10), np.arange(10, 60)
    right = _case(_LeastConfident).strategy().select(x, p, 3, labeled=lab, labels=y[lab], candidates=cand)
    wrong = _case(_CandidateNumbers).strategy().select(x, p, 3, labeled=lab, labels=y[lab], candidates=cand)
    np.testing.assert_array_equal(right, [40, 41, 42])
    np.testing.assert_array_equal(wrong, [30, 31, 32])  # accepted by select: free candidates, wrong rows


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_float16_arithmetic_fails_the_dtype_check(pool):
    case = _case(_Float16Arithmetic)
    case.test_budget_distinct_in_range_unlabeled(pool)
    with pytest.raises(AssertionError):
        case.test_float16_gives_the_float32_picks(pool)


def test_layout_assumption_fails_the_layout_check(pool, tmp_path):
    case = _case(_AssumesCOrder)
    case.test_budget_distinct_in_range_unlabeled(pool)
    with pytest.raises(AssertionError):
        case.test_layouts_give_the_float32_picks(pool, tmp_path)
