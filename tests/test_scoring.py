"""Each scoring function against a small hand-computed case (values worked out by hand)."""

import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import vlal

P4 = np.array([[0.7, 0.3], [0.6, 0.4], [0.1, 0.9], [0.2, 0.8]])


def test_entropy_hand_values():
    h = vlal.entropy([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    # ln 2 = 0.693147; 0 (0 log 0 = 0); 0.2 ln 5 + 0.3 ln(10/3) + 0.5 ln 2
    # = 0.2 * 1.609438 + 0.3 * 1.203973 + 0.5 * 0.693147 = 0.321888 + 0.361192 + 0.346574 = 1.029653
    np.testing.assert_allclose(h, [0.693147, 0.0, 1.029653], atol=1e-6)


def test_entropy_matches_scipy():
    """Eq. 2 against an independent implementation (scipy.stats.entropy, natural log)."""
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(5, 0.3), size=40)  # small alpha: many near-zero entries
    p[:3, 2:] = 0.0  # exact zeros (0 log 0 = 0)
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(vlal.entropy(p), scipy.stats.entropy(p, axis=1), rtol=1e-10, atol=1e-12)
    # float32 input (the strategies' usual dtype): the same entropies up to float32 rounding (scipy
    # renormalises each row, vlal takes the values as given; float32 rows sum to 1 within ~1e-7)
    np.testing.assert_allclose(vlal.entropy(p.astype(np.float32)), scipy.stats.entropy(p, axis=1), rtol=1e-6, atol=1e-7)


def test_contextual_prior_hand_values():
    np.testing.assert_allclose(vlal.contextual_prior(P4, top_n=2), [0.65, 0.85])
    # top_n larger than the pool: all rows are used
    np.testing.assert_allclose(vlal.contextual_prior(P4, top_n=10), [0.4, 0.6])
    np.testing.assert_allclose(vlal.contextual_prior(P4, top_n=1), [0.7, 0.9])


def test_calibrate_hand_values():
    # ratios (0.5/0.25, 0.5/0.75) = (2, 2/3) -> (0.75, 0.25)
    np.testing.assert_allclose(vlal.calibrate([[0.5, 0.5]], [0.25, 0.75]), [[0.75, 0.25]])
    # a uniform prior changes nothing
    np.testing.assert_allclose(vlal.calibrate(P4, [0.3, 0.3]), P4)


def test_calibrate_zero_prior_fallback():
    p = np.array([[0.4, 0.6, 0.0], [0.5, 0.5, 0.0]])
    out = vlal.calibrate(p, vlal.contextual_prior(p, 1))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[:, 2], 0.0)
    np.testing.assert_allclose(out.sum(1), 1.0)


def test_calibrate_subnormal_prior_stays_a_distribution():
    # Q = (1e-320, 1): ratios (0.3e320, 0.7) overflow 1/Q in float64; Eq. 5 gives (1, 0.7 / 0.3e320)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning either
        out = vlal.calibrate([[0.3, 0.7], [0.0, 1.0]], [1e-320, 1.0])
    np.testing.assert_allclose(out, [[1.0, 0.7 / 0.3 * 1e-320], [0.0, 1.0]], rtol=1e-3, atol=0)
    np.testing.assert_allclose(out.sum(1), 1.0)


def test_entropy_is_at_most_log_k_for_rows_summing_within_tolerance():
    h = vlal.entropy([[0.25, 0.25, 0.25, 0.2509]])  # sums to 1.0009: accepted, its -sum p log p is 1.38657
    assert h[0] == pytest.approx(math.log(4), abs=0)


def test_calibrated_entropy_hand_value():
    # Q = (0.65, 0.85) (top-2 means, see test_contextual_prior_hand_values). Eq. 5 row by row:
    #   row 0: (0.7/0.65, 0.3/0.85) = (14/13, 6/17) = (238, 78)/221  -> (119/158, 39/158)
    #   row 1: (0.6/0.65, 0.4/0.85) = (12/13, 8/17) = (204, 104)/221 -> (51/77, 26/77)
    #   row 2: (0.1/0.65, 0.9/0.85) = (2/13, 18/17) = (34, 234)/221  -> (17/134, 117/134)
    #   row 3: (0.2/0.65, 0.8/0.85) = (4/13, 16/17) = (68, 208)/221  -> (17/69, 52/69)
    calibrated = np.array([[119 / 158, 39 / 158], [51 / 77, 26 / 77], [17 / 134, 117 / 134], [17 / 69, 52 / 69]])
    np.testing.assert_allclose(vlal.calibrate(P4, [0.65, 0.85]), calibrated, rtol=1e-12)
    # Eq. 2 of those rows: row 0 = -(119/158 ln(119/158) + 39/158 ln(39/158))
    #   = 0.753165 * 0.283472 + 0.246835 * 1.399033 = 0.213501 + 0.345331 = 0.558832
    got = vlal.calibrated_entropy(P4, top_n=2)
    np.testing.assert_allclose(got[0], 0.558832, atol=1e-6)
    np.testing.assert_allclose(got, [0.558832, 0.639473, 0.380385, 0.558320], atol=1e-6)
    np.testing.assert_allclose(got, scipy.stats.entropy(calibrated, axis=1), rtol=1e-12)  # independent Eq. 2


def test_calibration_lifts_underpredicted_class():
    # class 1 is never confident; calibration raises the entropy of rows leaning to it
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.95, 0.05]])
    assert vlal.calibrated_entropy(p, top_n=2)[0] > vlal.entropy(p)[0]


def _circle(deg):
    a = np.deg2rad(deg)
    return np.c_[np.cos(a), np.sin(a)]


def test_neighbor_uncertainty_hand_values():
    # points at 0, 60 and 180 degrees: squared distances 1 (0-60), 3 (60-180), 4 (0-180)
    z = _circle([0, 60, 180])
    h = np.array([1.0, 2.0, 3.0])
    got = vlal.neighbor_uncertainty(3.0 * z, h, k=1, alpha=1.0)  # scale: normalised inside
    np.testing.assert_allclose(got, [2 * math.exp(-1), 1 * math.exp(-1), 2 * math.exp(-3)], rtol=1e-6)
    got2 = vlal.neighbor_uncertainty(z, h, k=2, alpha=0.5)
    np.testing.assert_allclose(got2[0], (2 * math.exp(-0.5) + 3 * math.exp(-2)) / 2, rtol=1e-6)
    np.testing.assert_allclose(got2[0], 0.809534, atol=1e-6)


def test_neighbor_uncertainty_excludes_self_with_duplicates():
    # every row identical: neighbours are the *other* rows, so a row's own score never counts
    z = np.ones((5, 3))
    h = np.array([10.0, 0, 0, 0, 0])
    got = vlal.neighbor_uncertainty(z, h, k=4, alpha=1.0)
    np.testing.assert_allclose(got, [0.0, 2.5, 2.5, 2.5, 2.5])


def test_neighbor_uncertainty_k_reduced():
    z = _circle([0, 60, 180])
    with pytest.warns(UserWarning, match="k=5"):
        got = vlal.neighbor_uncertainty(z, [1.0, 2.0, 3.0], k=5, alpha=0.0)
    np.testing.assert_allclose(got, [2.5, 2.0, 1.5])  # mean of the two others' scores
    np.testing.assert_allclose(vlal.neighbor_uncertainty(z[:1], [4.0]), [0.0])


def test_weighted_kmeans_hand_value():
    centers, assign = vlal.weighted_kmeans(np.array([[0.0], [1.0], [10.0]]), [1, 3, 1], 2, random_state=0)
    order = np.argsort(centers[:, 0])
    np.testing.assert_allclose(centers[order, 0], [0.75, 10.0], rtol=1e-6)  # (0*1 + 1*3) / 4
    assert assign[0] == assign[1] != assign[2]


def test_weighted_kmeans_weights_pull_centre():
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    c_eq, _ = vlal.weighted_kmeans(x, None, 1)
    c_w, _ = vlal.weighted_kmeans(x, [0, 0, 0, 1], 1)
    np.testing.assert_allclose(c_eq[0, 0], 1.5, rtol=1e-6)
    np.testing.assert_allclose(c_w[0, 0], 3.0, rtol=1e-6)


def test_weighted_kmeans_zero_weights_fallback():
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    c0, a0 = vlal.weighted_kmeans(x, np.zeros(4), 2, random_state=1)
    c1, a1 = vlal.weighted_kmeans(x, None, 2, random_state=1)
    np.testing.assert_allclose(c0, c1)
    np.testing.assert_array_equal(a0, a1)


def test_weighted_kmeans_errors():
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="n_clusters"):
        vlal.weighted_kmeans(x, None, 4)
    with pytest.raises(ValueError, match="weights"):
        vlal.weighted_kmeans(x, [1, -1, 1], 2)
    with pytest.raises(ValueError, match=r"weights must have shape \(3,\)"):
        vlal.weighted_kmeans(x, [1, 1], 2)
    with pytest.raises(ValueError, match="weights contains NaN"):
        vlal.weighted_kmeans(x, [1, np.nan, 1], 2)


def test_nearest_to_centers_hand_value():
    x = np.array([[0.0], [1.0], [1.1], [5.0]])
    # centre 1 (at 1.0) is served first and takes row 1; centre 0 (1.04) gets the next closest, row 2
    np.testing.assert_array_equal(vlal.nearest_to_centers(x, np.array([[1.04], [1.0]])), [2, 1])


def test_nearest_to_centers_duplicates_and_errors():
    x = np.zeros((6, 2))
    got = vlal.nearest_to_centers(x, np.zeros((6, 2)))
    assert sorted(got.tolist()) == list(range(6))
    with pytest.raises(ValueError, match="distinct"):
        vlal.nearest_to_centers(x, np.zeros((7, 2)))
    with pytest.raises(ValueError, match="columns"):
        vlal.nearest_to_centers(x, np.zeros((2, 3)))


@settings(max_examples=30, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 20), st.integers(1, 6)), elements=st.floats(0.01, 1.0)))
def test_entropy_bounds_and_calibrated_rows(raw):
    p = raw / raw.sum(1, keepdims=True)
    h = vlal.entropy(p)
    assert (h >= 0).all() and (h <= np.log(p.shape[1]) + 1e-9).all()
    c = vlal.calibrate(p, vlal.contextual_prior(p, 3))
    np.testing.assert_allclose(c.sum(1), 1.0, atol=1e-9)
    assert (vlal.calibrated_entropy(p, 3) <= np.log(p.shape[1]) + 1e-9).all()


def test_scoring_does_not_modify_inputs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4)).astype(np.float16)
    p = rng.dirichlet(np.ones(3), size=30)
    x0, p0 = x.copy(), p.copy()
    h = vlal.calibrated_entropy(p)
    vlal.neighbor_uncertainty(x, h, k=3)
    vlal.weighted_kmeans(x, h, 4, random_state=0)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(p, p0)
