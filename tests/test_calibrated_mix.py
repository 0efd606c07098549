"""CalibratedMix: the strategy template, hypothesis properties and hand-checked scoring pieces."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlal import CalibratedMix, VlalInputError, make_strategy
from vlal.strategies.calibrated_mix import budget_mix_weight, rank01, typicality, unique_rows

from conftest import make_pool
from strategy_template import StrategyTemplate


class TestCalibratedMix(StrategyTemplate):
    registered = "calibrated-mix"
    make = staticmethod(lambda rs: CalibratedMix(k=5, random_state=rs))


class TestCalibratedMixNoBalanceCenter(StrategyTemplate):
    make = staticmethod(lambda rs: CalibratedMix(k=5, balance=False, pick="center", random_state=rs))


class TestCalibratedMixCover(StrategyTemplate):
    make = staticmethod(lambda rs: CalibratedMix(k=5, cover=True, pick="typical", uncertainty="margin", random_state=rs))


class TestCalibratedMixUncertaintyOnly(StrategyTemplate):
    make = staticmethod(lambda rs: CalibratedMix(k=5, mix=1.0, dedupe=False, weighted=False, random_state=rs))


def test_registered():
    s = make_strategy("calibrated-mix[k=7]", random_state=0)
    assert isinstance(s, CalibratedMix) and s.k == 7


def test_typicality_hand_checked():
    # rows on a line at 0, 1, 3 (unit-free: typicality works on the rows as given)
    z = np.array([[0.0], [1.0], [3.0]], np.float32)
    t = typicality(z, k=1)
    # nearest other row: 1, 1, 2 -> typicality 1, 1, 0.5
    np.testing.assert_allclose(t, [1.0, 1.0, 0.5])
    t2 = typicality(z, k=2)  # mean distance to both others: (1+3)/2, (1+2)/2, (3+2)/2
    np.testing.assert_allclose(t2, [0.5, 1 / 1.5, 0.4])


def test_rank01_and_weight():
    np.testing.assert_allclose(rank01([3.0, 1.0, 2.0, 2.0]), [1.0, 0.0, 0.5, 0.5])
    np.testing.assert_allclose(rank01([5.0]), [1.0])
    assert budget_mix_weight(10, 10, 1.0) == pytest.approx(0.5)   # one label per class
    assert budget_mix_weight(5, 50, 1.0) == pytest.approx(0.1 / 1.1)
    assert budget_mix_weight(30, 10, 1.0) == pytest.approx(0.75)


def test_unique_rows():
    z = np.array([[1, 0], [0, 1], [1, 0], [0.6, 0.8]], np.float32)
    np.testing.assert_array_equal(unique_rows(z), [0, 1, 3])
    np.testing.assert_array_equal(unique_rows(z, exclude=np.array([[0, 1]], np.float32)), [0, 3])


def test_never_two_identical_picks():
    # each of 6 distinct points appears 5 times; a budget of 6 must take one copy of each
    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 4)).astype(np.float32)
    x = np.repeat(base, 5, axis=0)
    p = np.full((30, 3), 1 / 3, np.float32)
    idx = CalibratedMix(k=3, random_state=0).select(x, p, 6)
    assert len({tuple(r) for r in x[idx]}) == 6
    # and not a copy of a labeled row: label copy 0 of point 0, then ask for 5
    lab = np.array([0])
    idx = CalibratedMix(k=3, random_state=0).select(x, p, 5, labeled=lab, labels=np.array([0]))
    assert not any(np.array_equal(x[i], x[0]) for i in idx)


def test_low_budget_picks_typical_rows_of_uncovered_clusters():
    # two dense blobs and one far outlier; with no labels and budget 2 (mix=0): one row per blob,
    # each the most typical (the blob centre row), never the outlier
    blob_a = np.array([[1, 0.0], [1, 0.05], [1, -0.05]], np.float32)
    blob_b = np.array([[0, 1.0], [0.05, 1], [-0.05, 1]], np.float32)
    out = np.array([[-1, -1.0]], np.float32)
    x = np.vstack([blob_a, blob_b, out])
    p = np.full((7, 2), 0.5, np.float32)
    idx = CalibratedMix(k=2, mix=0.0, random_state=0).select(x, p, 2)
    assert sorted(idx.tolist()) == [0, 3]


def test_covered_cluster_is_skipped():
    # blob A already labeled: the single pick must come from blob B
    x = np.array([[1, 0.0], [1, 0.05], [1, -0.05], [0, 1.0], [0.05, 1], [-0.05, 1]], np.float32)
    p = np.full((6, 2), 0.5, np.float32)
    idx = CalibratedMix(k=2, mix=0.0, balance=False, cover=True, random_state=0).select(x, p, 1, labeled=[0], labels=[0])
    assert idx[0] in (3, 4, 5)


def test_balance_spreads_pseudo_classes():
    # 3 blobs; pseudo-label is class 0 on blobs 0,1 and class 1 on blob 2; labeled row of class 0
    # exists: with a budget of 1 and balance, the pick must have pseudo-label 1
    x = np.array([[1, 0, 0], [1, .05, 0], [0, 1, 0], [.05, 1, 0], [0, 0, 1], [0, .05, 1]], np.float32)
    p = np.array([[.9, .1], [.9, .1], [.9, .1], [.9, .1], [.2, .8], [.2, .8]], np.float32)
    idx = CalibratedMix(k=1, mix=0.0, random_state=0).select(x, p, 1, labeled=[0], labels=[0])
    assert idx[0] in (4, 5)


@pytest.mark.parametrize("kw, msg", [({"k": 0}, "k"), ({"mix": 1.5}, "mix"), ({"mix": None, "half_shots": -1}, "half_shots"), ({"uncertainty": "x"}, "uncertainty"),
                                     ({"pick": "max"}, "pick"), ({"cover": 1}, "cover"), ({"alpha": -1}, "alpha")])
def test_bad_params_named_in_select(pool, kw, msg):
    x, p, _ = pool
    s = CalibratedMix(**kw)  # __init__ only stores
    with pytest.raises(VlalInputError, match=msg):
        s.select(x, p, 3)


@settings(max_examples=25, deadline=None)
@given(n_lab=st.integers(0, 20), budget=st.integers(1, 20), seed=st.integers(0, 1000),
       mix=st.one_of(st.none(), st.floats(0, 1)))
def test_property_distinct_values_when_possible(n_lab, budget, seed, mix):
    # pools with many duplicated rows: the picks are distinct feature vectors, none equal to a
    # labeled one, as long as enough distinct rows remain
    _, p, y = make_pool(n=40, d=3, n_classes=3, seed=seed)
    rng = np.random.default_rng(seed)
    distinct = rng.normal(size=(12, 3))
    distinct /= np.linalg.norm(distinct, axis=1, keepdims=True)
    x = distinct[rng.integers(0, 12, size=40)].astype(np.float32)  # many identical rows
    lab = np.sort(rng.choice(40, size=n_lab, replace=False))
    idx = CalibratedMix(k=3, mix=mix, random_state=seed).select(x, p, budget, labeled=lab, labels=y[lab])
    lab_rows = {tuple(r) for r in x[lab]}
    cand_rows = {tuple(r) for i, r in enumerate(x) if i not in set(lab.tolist())} - lab_rows
    picked = [tuple(r) for r in x[idx]]
    if budget <= len(cand_rows):
        assert len(set(picked)) == budget
        assert not set(picked) & lab_rows


def test_utilities_are_the_step1_score_and_nan_off_candidates():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 6)).astype(np.float32)
    p = rng.dirichlet(np.ones(4), size=80)
    lab, y = np.arange(5), np.array([0, 1, 2, 3, 0])
    s = CalibratedMix(k=5, random_state=0)
    idx, util = s.select(x, p, 6, labeled=lab, labels=y, return_utilities=True)
    assert np.isnan(util[lab]).all() and np.isfinite(np.delete(util, lab)).all()
    assert ((0.0 <= np.delete(util, lab)) & (np.delete(util, lab) <= 1.0 + 1e-9)).all()
    np.testing.assert_array_equal(idx, CalibratedMix(k=5, random_state=0).select(x, p, 6, labeled=lab, labels=y))
    # with mix=1 the score is the rank of U = H^ + H_NN alone: one distinct value per row (no ties here)
    u = CalibratedMix(k=5, mix=1.0, random_state=0).select(x, p, 6, return_utilities=True)[1]
    assert np.unique(u).size > 40  # ranks, not a constant


class TestCalibratedMixPurity(StrategyTemplate):
    make = staticmethod(lambda rs: CalibratedMix(k=5, density="purity", density_k="class", random_state=rs))
    float16_overlap = 5 / 6  # purity counts discrete pseudo-labels: float16 rounding flips ties (one pick of 6)


class TestCalibratedMixClassTypicality(StrategyTemplate):
    make = staticmethod(lambda rs: CalibratedMix(k=5, density="class-typicality", density_k=3, random_state=rs))


# four rows on a line: 0, 0.1, 1.0, 1.1 (not normalised: both functions take the rows as given)
_LINE = np.array([[0.0, 0.0], [0.1, 0.0], [1.0, 0.0], [1.1, 0.0]], dtype=np.float32)


def test_pseudo_label_purity_hand_case():
    from vlal.strategies.calibrated_mix import pseudo_label_purity

    # k = 1: each row's nearest other row is its pair; the pair (2, 3) disagrees
    np.testing.assert_allclose(pseudo_label_purity(_LINE, [0, 0, 1, 0], k=1, knn_index="exact"), [1, 1, 0, 0])
    # k = 3: all other rows; row 0 sees labels 0, 1, 0 -> 2/3; row 2 (label 1) sees none of its own
    np.testing.assert_allclose(pseudo_label_purity(_LINE, [0, 0, 1, 0], k=3, knn_index="exact"),
                               [2 / 3, 2 / 3, 0, 2 / 3])
    with pytest.raises(VlalInputError, match="pseudo_labels"):
        pseudo_label_purity(_LINE, [0, 1], k=1)


def test_class_typicality_hand_case():
    from vlal.strategies.calibrated_mix import class_typicality

    # class 0 = rows 0, 1, 3: nearest class-0 neighbours at 0.1, 0.1 and 1.0; row 2 is alone -> 0
    np.testing.assert_allclose(class_typicality(_LINE, [0, 0, 1, 0], k=1), [10.0, 10.0, 0.0, 1.0], rtol=1e-5)
    with pytest.raises(VlalInputError, match="pseudo_labels"):
        class_typicality(_LINE, [0, 0, 1], k=1)


@pytest.mark.parametrize("kw, name", [({"density": "dense"}, "density"), ({"density_k": 0}, "density_k"),
                                      ({"density_k": "row"}, "density_k")])
def test_density_params_checked(kw, name):
    f, p, _ = make_pool(40, 8, 4, seed=0)
    with pytest.raises(VlalInputError, match=name):
        CalibratedMix(**kw).select(f, p, 3)


def test_balance_reads_labels_so_they_are_required_and_checked():
    """balance=True counts the labeled set's classes: missing or out-of-range labels are errors (they were
    silently treated as 'no labels'); balance=False does not read them."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(80, 6)).astype(np.float32)
    p = rng.dirichlet(np.ones(4), size=80)
    lab = np.arange(5)
    with pytest.raises(VlalInputError, match="labels was not given"):
        CalibratedMix(k=5, random_state=0).select(x, p, 6, labeled=lab)
    with pytest.raises(VlalInputError, match="labels"):
        CalibratedMix(k=5, random_state=0).select(x, p, 6, labeled=lab, labels=np.array([0, 1, 2, 3, 104]))
    a = CalibratedMix(k=5, random_state=0).select(x, p, 6, labeled=lab, labels=np.zeros(5, int))
    b = CalibratedMix(k=5, random_state=0).select(x, p, 6, labeled=lab, labels=np.arange(5) % 4)
    assert a.shape == b.shape == (6,)
    free = CalibratedMix(k=5, balance=False, random_state=0)
    assert not free.reads_labels
    np.testing.assert_array_equal(free.select(x, p, 6, labeled=lab),
                                  free.select(x, p, 6, labeled=lab, labels=np.array([0, 1, 2, 3, 104])))


def test_k_warning_counts_distinct_candidates_when_copies_are_dropped():
    """Stop 22 review: 29 candidates, 3 distinct images: the warning said 'number of candidates (3)'."""
    rng = np.random.default_rng(0)
    x = np.repeat(rng.normal(size=(3, 5)).astype(np.float32), 10, axis=0)[:29]
    p = rng.dirichlet(np.ones(3), 29)
    with pytest.warns(UserWarning, match=r"k=20 >= number of distinct candidates \(3 of 29: copies"):
        idx = make_strategy("calibrated-mix", random_state=0).select(x, p, 2)
    assert np.unique(x[idx], axis=0).shape[0] == 2  # two different images
