"""The faiss GPU path (``use_gpu=True``), checked against the CPU path on the same inputs.

These tests need a faiss build that can run on the machine's GPU (``pip install -e ".[gpu]"``
on a Volta-to-Ada card; see docs/scale.md, "GPU", for Hopper); elsewhere, CI included, they
are skipped with that reason. ``benchmarks/gpu/run_gpu_check.sh`` runs them on a GPU machine.
Not yet run on a GPU that faiss could use (see docs/scale.md).
"""

import numpy as np
import pytest

import vlal
from vlal import _faiss
from vlal._validation import l2_normalize

pytestmark = pytest.mark.skipif(_faiss.num_gpus() == 0, reason="faiss has no usable GPU (needs faiss-gpu built for this card)")


def _clustered(n=4000, d=64, k=50, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    x = centres[rng.integers(0, k, size=n)] + 0.5 * rng.normal(size=(n, d))
    return l2_normalize(x.astype(np.float32))


def _probs(n, n_classes=10, seed=1):
    rng = np.random.default_rng(seed)
    logits = 3.0 * rng.normal(size=(n, n_classes))
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def test_auto_resolves_to_the_gpu():
    assert _faiss.resolve_use_gpu("auto") is True
    assert _faiss.KnnIndex(_clustered(500), "exact").gpu


def test_gpu_exact_knn_equals_cpu_exact_knn():
    z = _clustered()
    dg, ig = _faiss.KnnIndex(z, "exact", use_gpu=True).search(z, 11)
    dc, ic = _faiss.KnnIndex(z, "exact", use_gpu=False).search(z, 11)
    np.testing.assert_allclose(dg, dc, atol=1e-4)
    same = np.mean([len(set(a) & set(b)) / 11 for a, b in zip(ig, ic)])
    assert same >= 0.999  # only near-ties may swap under float32 round-off
    assert (ig[:, 0] == np.arange(len(z))).all()  # every row finds itself first


def test_gpu_ivf_recall_against_exact():
    z = _clustered(n=20000, k=100)
    index = _faiss.KnnIndex(z, "ivf", use_gpu=True)
    assert index.gpu and index.kind == "ivf"
    _, ia = index.search(z[:1000], 21)
    _, ie = _faiss.knn_search(z, z[:1000], 21)
    recall = np.mean([len(set(a) & set(e)) / 21 for a, e in zip(ia, ie)])
    assert recall >= 0.9
    assert (ia >= 0).all()


def test_gpu_k_above_the_gpu_limit_falls_back_to_exact_cpu_search():
    z = _clustered(n=3000)
    k = _faiss.DEFAULT_CONFIG.gpu_max_k + 10
    dg, ig = _faiss.KnnIndex(z, "exact", use_gpu=True).search(z[:20], k)
    dc, _ = _faiss.knn_search(z, z[:20], k)
    assert ig.shape == (20, k)
    np.testing.assert_allclose(dg, dc, atol=1e-4)


def test_gpu_neighbor_uncertainty_matches_cpu():
    z = _clustered()
    h = vlal.calibrated_entropy(_probs(len(z)))
    got = vlal.neighbor_uncertainty(z, h, k=20, knn_index="exact", use_gpu=True)
    ref = vlal.neighbor_uncertainty(z, h, k=20, knn_index="exact", use_gpu=False)
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-5)


def test_gpu_weighted_kmeans_reaches_the_cpu_objective():
    z = _clustered(n=6000)
    w = np.random.default_rng(2).random(len(z)) + 0.1

    def objective(centers):
        d2 = ((z[:, None, :] - centers[None]) ** 2).sum(-1).min(1)
        return float((w * d2).sum())

    cg, ag = vlal.weighted_kmeans(z, w, 60, random_state=0, kmeans_mode="exact", use_gpu=True)
    cc, _ = vlal.weighted_kmeans(z, w, 60, random_state=0, kmeans_mode="exact", use_gpu=False)
    assert cg.shape == (60, z.shape[1]) and ag.shape == (len(z),)
    assert abs(objective(cg) - objective(cc)) / objective(cc) < 0.02


def test_gpu_nearest_to_centers_equals_cpu():
    z = _clustered()
    centres = z[::97] + 0.01
    got = vlal.nearest_to_centers(z, centres, knn_index="exact", use_gpu=True)
    ref = vlal.nearest_to_centers(z, centres, knn_index="exact", use_gpu=False)
    np.testing.assert_array_equal(got, ref)
    assert np.unique(got).size == len(centres)


def test_cec_on_the_gpu_picks_like_cec_on_the_cpu():
    z = _clustered(n=8000)
    p = _probs(len(z))
    gpu = vlal.CEC(random_state=0, use_gpu=True).select(z, p, 80)
    cpu = vlal.CEC(random_state=0, use_gpu=False).select(z, p, 80)
    assert np.unique(gpu).size == 80 and gpu.min() >= 0 and gpu.max() < len(z)
    # Same equations and seed; float32 round-off can send a Lloyd step elsewhere, so the
    # picks need not be identical, but they must serve the pool as well.
    assert np.intersect1d(gpu, cpu).size >= 0.5 * 80
    u = vlal.calibrated_entropy(p)

    def served(picks):  # U-weighted mean squared distance to the nearest pick
        return float((u * _faiss.knn_search(z[picks], z, 1)[0][:, 0]).sum() / u.sum())

    assert served(gpu) <= 1.05 * served(cpu)
