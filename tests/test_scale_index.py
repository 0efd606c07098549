"""The compressed index of the streamed CEC path (vlal._scale): two-level coarse centroids,
probed assignment, faiss SQ8 codes, row normalisation and the entropy kernel."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import entropy as scipy_entropy

from vlal import _scale
from vlal.exceptions import VlalInputError


def _blobs():
    """Four tight 2-D blobs of 50 rows at (+-10, +-10)."""
    rng = np.random.default_rng(0)
    means = np.array([[10, 10], [10, -10], [-10, 10], [-10, -10]], dtype=np.float32)
    x = np.repeat(means, 50, axis=0) + 0.01 * rng.normal(size=(200, 2)).astype(np.float32)
    return x, means


def test_two_level_centroids_recover_the_blob_means():
    x, means = _blobs()
    top, cent, offsets = _scale.two_level_centroids(x, 4, seed=0)
    assert top.shape == (2, 2)  # round(sqrt(4)) top centroids
    assert offsets.tolist() == [0, 2, 4]  # each top cluster holds two blobs: two sub-centroids
    got = cent[np.lexsort(cent.T)]
    want = means[np.lexsort(means.T)]
    np.testing.assert_allclose(got, want, atol=0.01)
    # the sub-centroids of a top cluster lie in that top cluster's cell
    for t in range(2):
        sub = cent[offsets[t] : offsets[t + 1]]
        d = ((sub[:, None, :] - top[None]) ** 2).sum(-1)
        assert (d.argmin(axis=1) == t).all()


def test_two_level_centroids_every_top_cluster_gets_a_list():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 8)).astype(np.float32)
    top, cent, offsets = _scale.two_level_centroids(x, 50, seed=0)
    assert offsets[0] == 0 and offsets[-1] == cent.shape[0]
    assert (np.diff(offsets) >= 1).all()
    assert abs(cent.shape[0] - 50) <= top.shape[0]  # nlist up to per-cluster rounding
    assert cent.dtype == np.float32 and top.dtype == np.float32


def _index(n=3000, d=16, nlist=60, seed=2):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, _scale.CompressedIVF(x, n, 0, nlist=nlist)


def test_assignment_probing_every_top_cluster_is_exact(monkeypatch):
    x, ix = _index()
    monkeypatch.setattr(_scale, "ASSIGN_PROBE", ix.top.shape[0])
    exact = ((x[:, None, :] - ix.centroids[None]) ** 2).sum(-1).argmin(axis=1)
    np.testing.assert_array_equal(ix.assign_rows(x), exact)


def test_assignment_with_one_probe_stays_in_the_nearest_top_cluster(monkeypatch):
    x, ix = _index()
    monkeypatch.setattr(_scale, "ASSIGN_PROBE", 1)
    a = ix.assign_rows(x)
    t = ((x[:, None, :] - ix.top[None]) ** 2).sum(-1).argmin(axis=1)
    assert ((a >= ix.offsets[t]) & (a < ix.offsets[t + 1])).all()


def test_index_decode_is_close_and_search_finds_itself():
    x, ix = _index()
    for s in range(0, len(x), 1000):
        ix.add(x[s : s + 1000])
    ix.finish()
    assert np.abs(ix.decode(np.arange(len(x))) - x).max() < 0.02
    _, idx = ix.search_rows(np.arange(50), 1, nprobe=ix.nlist)
    np.testing.assert_array_equal(idx[:, 0], np.arange(50))


def test_sq8_round_trip_within_one_step():
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 2, size=(2000, 8)).astype(np.float32)
    sq = _scale.SQ8(x)
    codes = sq.encode(x)
    assert codes.dtype == np.uint8 and codes.shape == x.shape
    step = 1.02 * (x.max(0) - x.min(0)) / 255  # range widened by 1 % each side
    assert (np.abs(sq.decode(codes) - x) <= step[None, :]).all()


def test_normalised_rows_and_zero_row_error():
    x = np.array([[3.0, 4.0], [0.0, 2.0]], dtype=np.float16)
    before = x.copy()
    out = _scale._normalised(x, "features", 10)
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 1.0]], rtol=1e-6)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(x, before)  # the caller's block is not touched
    with pytest.raises(VlalInputError, match="features row at candidate position 11 has zero norm"):
        _scale._normalised(np.array([[1.0, 0.0], [0.0, 0.0]]), "features", 10)


def test_entropy_block_with_zero_probabilities():
    p = np.array([[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]], dtype=np.float32)
    np.testing.assert_allclose(_scale._calibrated_entropy_block(p, None), [np.log(2), 0.0, np.log(4)], rtol=1e-6)
    inv_q = np.array([2.0, 1.0, 1.0, 1.0], dtype=np.float32)  # Eq. 5: ratios p / q, renormalised
    r = p * inv_q
    r /= r.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(_scale._calibrated_entropy_block(p, inv_q), scipy_entropy(r, axis=1), rtol=1e-6)
