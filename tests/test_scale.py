"""Speed-and-scale paths (issue 5): approximate kNN, fast K-Means, GPU dispatch, low-memory inputs.

Small n only and no timing assertions: the speed itself is measured by
``benchmarks/bench_select.py``.
"""

import numpy as np
import pytest

import vlal
from vlal import _faiss, scoring
from vlal._validation import l2_normalize

from conftest import make_pool


def _clustered(n=3000, d=32, k=40, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    x = centres[rng.integers(0, k, size=n)] + 0.4 * rng.normal(size=(n, d))
    return l2_normalize(x.astype(np.float32))


def _exact_neighbours(z, k):
    _, idx = _faiss.knn_search(z, z, k + 1)
    return [set(row) - {i} for i, row in enumerate(idx)]


def _recall(approx, exact):
    return np.mean([len(a & e) / len(e) for a, e in zip(approx, exact)])


# --------------------------------------------------------------------------- kNN


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_index_recall_close_to_exact(kind):
    z = _clustered()
    exact = _exact_neighbours(z, 10)
    index = _faiss.KnnIndex(z, kind, use_gpu=False)
    assert index.kind == kind
    _, idx = index.search(z, 11)
    approx = [set(row) - {i} for i, row in enumerate(idx)]
    assert _recall(approx, exact) >= 0.9
    assert (idx >= 0).all()


def test_ivf_self_search_covers_every_row_once_and_finds_itself():
    z = _clustered(n=2000)
    index = _faiss.KnnIndex(z, "ivf", use_gpu=False, nlist=50, nprobe=4)
    seen = np.zeros(len(z), dtype=int)
    for rows, dist, idx in index.self_search(6):
        seen[rows] += 1
        assert (idx[:, 0] == rows).all()  # each row is its own nearest neighbour (distinct rows)
        assert (np.diff(dist, axis=1) >= 0).all()
    assert (seen == 1).all()


def test_ivf_with_few_candidates_is_repaired_exactly():
    # 200 lists of ~5 rows, 1 probed: fewer candidates than k -> those rows are redone exactly.
    z = _clustered(n=1000)
    index = _faiss.KnnIndex(z, "ivf", use_gpu=False, nlist=200, nprobe=1)
    dist, idx = index.search(z, 30)
    assert (idx >= 0).all() and np.isfinite(dist).all()
    assert all(len(set(row)) == 30 for row in idx)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_neighbor_uncertainty_approximate_close_to_exact(kind):
    z = _clustered()
    h = np.random.default_rng(1).random(len(z))
    exact = vlal.neighbor_uncertainty(z, h, k=10, knn_index="exact")
    approx = vlal.neighbor_uncertainty(z, h, k=10, knn_index=kind, use_gpu=False)
    assert np.abs(approx - exact).mean() <= 0.02 * exact.mean()


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_self_excluded_on_approximate_path(kind):
    # Only the row itself carries a score: if it were counted as its own neighbour, H_NN > 0.
    z = _clustered(n=1500)
    for row in (0, 777, 1499):
        h = np.zeros(len(z))
        h[row] = 1.0
        got = vlal.neighbor_uncertainty(z, h, k=5, knn_index=kind, use_gpu=False)
        assert got[row] == 0.0


def test_self_excluded_with_duplicates_on_ivf():
    z = _clustered(n=600)
    z = np.vstack([z, z[:50]])  # rows 600..649 duplicate rows 0..49
    h = np.arange(len(z), dtype=float)
    got = vlal.neighbor_uncertainty(z, h, k=4, alpha=0.0, knn_index="ivf", use_gpu=False)
    want = vlal.neighbor_uncertainty(z, h, k=4, alpha=0.0, knn_index="exact")
    # Each duplicate pair sees the other at distance 0 and never itself.
    for i in range(50):
        assert got[i] > 0 and got[600 + i] > 0
    assert np.abs(got - want).mean() <= 0.05 * want.mean()


def test_prebuilt_index_is_reused_and_checked():
    z = _clustered(n=500)
    h = np.ones(len(z))
    index = scoring.build_knn_index(z, "ivf", use_gpu=False)
    np.testing.assert_allclose(
        vlal.neighbor_uncertainty(z, h, k=3, knn_index=index),
        vlal.neighbor_uncertainty(z, h, k=3, knn_index="ivf", use_gpu=False),
    )
    with pytest.raises(ValueError, match="built on 500 rows"):
        vlal.neighbor_uncertainty(z[:400], h[:400], k=3, knn_index=index)
    with pytest.raises(ValueError, match="knn_index"):
        vlal.neighbor_uncertainty(z, h, knn_index="annoy")


def test_nearest_to_centers_on_ivf_matches_exact_when_probing_enough():
    z = _clustered(n=2000)
    centres = z[::40] + 0.01
    exact = vlal.nearest_to_centers(z, centres, knn_index="exact")
    approx = vlal.nearest_to_centers(z, centres, knn_index="ivf", use_gpu=False)
    assert len(set(approx)) == len(centres)
    assert np.mean(exact == approx) >= 0.95


def test_nearest_to_centers_distinct_with_duplicate_centres_on_ivf():
    z = _clustered(n=800)
    got = vlal.nearest_to_centers(z, np.repeat(z[:3], 40, axis=0), knn_index="ivf", use_gpu=False)
    assert got.shape == (120,) and np.unique(got).size == 120


# --------------------------------------------------------------------------- K-Means


def test_fast_kmeans_returns_b_centres_and_valid_assignments():
    z = _clustered(n=4000)
    w = np.random.default_rng(0).random(len(z))
    centers, assign = vlal.weighted_kmeans(z, w, 300, random_state=0, kmeans_mode="fast", use_gpu=False)
    assert centers.shape == (300, z.shape[1]) and centers.dtype == np.float32
    assert np.isfinite(centers).all()
    assert assign.shape == (len(z),) and assign.dtype == np.int64
    assert assign.min() >= 0 and assign.max() < 300
    # Assignments are (approximately) the nearest centre.
    _, nearest = _faiss.knn_search(centers, z, 1)
    assert np.mean(nearest[:, 0] == assign) >= 0.95


def test_fast_kmeans_objective_close_to_exact():
    # n > 32 b, so the fast path really samples. Init luck varies per seed on both paths:
    # compare the weighted objective averaged over seeds.
    z = _clustered(n=6000, k=40)
    w = np.random.default_rng(0).random(len(z)) + 0.1

    def objective(mode, seed):
        c, _ = vlal.weighted_kmeans(z, w, 100, random_state=seed, kmeans_mode=mode, use_gpu=False)
        d2, _ = _faiss.knn_search(c, z, 1)
        return float((w * d2[:, 0]).sum() / w.sum())

    exact = np.mean([objective("exact", s) for s in range(4)])
    fast = np.mean([objective("fast", s) for s in range(4)])
    assert fast <= 1.05 * exact


def test_fast_kmeans_samples_by_weight():
    # All weight on one blob: the sample (and so every centre) comes from it.
    rng = np.random.default_rng(0)
    x = np.vstack([rng.normal(0, 0.1, (3000, 4)), rng.normal(10, 0.1, (3000, 4))]).astype(np.float32)
    w = np.r_[np.ones(3000), np.zeros(3000)]
    centers, _ = vlal.weighted_kmeans(x, w, 5, random_state=0, kmeans_mode="fast", use_gpu=False)
    assert np.abs(centers).max() < 1.0


def test_fast_kmeans_weight_on_fewer_rows_than_clusters():
    x = _clustered(n=3000)
    w = np.zeros(len(x))
    w[:3] = 1.0
    centers, assign = vlal.weighted_kmeans(x, w, 50, random_state=0, kmeans_mode="fast", use_gpu=False)
    assert centers.shape == (50, x.shape[1]) and np.isfinite(centers).all()
    assert assign.max() < 50


def test_fast_kmeans_is_reproducible():
    z = _clustered(n=3000)
    a = vlal.weighted_kmeans(z, None, 100, random_state=3, kmeans_mode="fast", use_gpu=False)
    b = vlal.weighted_kmeans(z, None, 100, random_state=3, kmeans_mode="fast", use_gpu=False)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_kmeans_mode_validation():
    with pytest.raises(ValueError, match="kmeans_mode"):
        vlal.weighted_kmeans(np.eye(4), None, 2, kmeans_mode="turbo")


# --------------------------------------------------------------------------- dispatch


def test_knn_dispatch_threshold():
    t = _faiss.KNN_EXACT_MAX_ROWS
    assert _faiss.resolve_knn_kind("auto", t, t) == "exact"
    assert _faiss.resolve_knn_kind("auto", t + 1, t + 1) == "ivf"
    assert _faiss.resolve_knn_kind("auto", 10 * t, 10) == "exact"  # few queries: brute force is cheap
    assert _faiss.resolve_knn_kind("auto", t + 1, t + 1, gpu=True) == "exact"
    assert _faiss.resolve_knn_kind("hnsw", 5, 5) == "hnsw"
    with pytest.raises(ValueError):
        _faiss.resolve_knn_kind("lsh", 5, 5)


def test_kmeans_dispatch_threshold():
    w = scoring.KMEANS_EXACT_MAX_WORK
    assert scoring.resolve_kmeans_mode("auto", int(w // 100), 100) == "exact"
    assert scoring.resolve_kmeans_mode("auto", int(w // 100) + 1, 100) == "fast"
    assert scoring.resolve_kmeans_mode("auto", int(w), 100, gpu=True) == "exact"
    assert scoring.resolve_kmeans_mode("fast", 10, 2) == "fast"


def test_small_pools_stay_exact_by_default():
    z = _clustered(n=500)
    assert scoring.build_knn_index(z, use_gpu=False).kind == "exact"
    h = np.random.default_rng(0).random(len(z))
    np.testing.assert_array_equal(
        vlal.neighbor_uncertainty(z, h), vlal.neighbor_uncertainty(z, h, knn_index="exact")
    )


def test_use_gpu_dispatch(monkeypatch):
    monkeypatch.setenv("VLAL_GPU_PROBE", "0")  # the faked GPUs could not pass the child-process check
    monkeypatch.setattr(_faiss.faiss, "get_num_gpus", lambda: 0)
    assert _faiss.resolve_use_gpu("auto") is False
    assert _faiss.resolve_use_gpu(False) is False
    with pytest.raises(ValueError, match="no GPU"):
        _faiss.resolve_use_gpu(True)
    with pytest.raises(ValueError, match="use_gpu"):
        _faiss.resolve_use_gpu("yes")
    with pytest.raises(ValueError, match="no GPU"):
        vlal.weighted_kmeans(np.eye(4), None, 2, use_gpu=True)
    monkeypatch.setattr(_faiss.faiss, "get_num_gpus", lambda: 2)
    assert _faiss.resolve_use_gpu("auto") is True
    assert _faiss.resolve_use_gpu(True) is True


def test_gpu_code_path_runs_with_cpu_stand_ins(monkeypatch):
    # No GPU here: pretend there is one and let "moving to the GPUs" return the CPU index,
    # so the GPU branches (flat and IVF index, faiss.Kmeans(gpu=...)) run end to end.
    moved = []

    def fake_to_gpus(index, *args, **kwargs):
        moved.append(type(index).__name__)
        return index

    import faiss.extra_wrappers as fw  # where faiss.Kmeans looks up the GPU count

    monkeypatch.setenv("VLAL_GPU_PROBE", "0")
    monkeypatch.setattr(_faiss.faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(fw, "get_num_gpus", lambda: 1, raising=False)
    monkeypatch.setattr(_faiss.faiss, "index_cpu_to_all_gpus", fake_to_gpus)
    z = _clustered(n=1200)
    h = np.random.default_rng(0).random(len(z))
    exact = vlal.neighbor_uncertainty(z, h, k=5, knn_index="exact", use_gpu=False)
    np.testing.assert_allclose(vlal.neighbor_uncertainty(z, h, k=5), exact, rtol=1e-5)
    assert moved == ["IndexFlatL2"]
    ivf = vlal.neighbor_uncertainty(z, h, k=5, knn_index="ivf")
    assert np.abs(ivf - exact).mean() <= 0.05 * exact.mean()
    assert moved[-1] == "IndexIVFFlat"
    moved.clear()
    centers, assign = vlal.weighted_kmeans(z, h, 10, random_state=0)  # auto on GPU -> exact faiss.Kmeans(gpu)
    assert centers.shape == (10, z.shape[1]) and assign.max() < 10
    assert moved.count("IndexFlatL2") == 2  # the K-Means assignment index and the final assignment
    assert "IndexIVFFlat" not in moved


# --------------------------------------------------------------------------- memory


def test_float16_memmap_goes_through_cec(tmp_path):
    x, p, _ = make_pool(n=400, d=16, n_classes=5, seed=3)
    fx = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float16, shape=x.shape)
    fx[:] = x
    fx.flush()
    fp = np.lib.format.open_memmap(tmp_path / "p.npy", mode="w+", dtype=np.float16, shape=p.shape)
    fp[:] = p
    fp.flush()
    mx = np.load(tmp_path / "x.npy", mmap_mode="r")
    mp = np.load(tmp_path / "p.npy", mmap_mode="r")
    labeled = np.arange(0, 400, 7)
    for kw in ({}, {"knn_index": "ivf", "kmeans_mode": "fast"}):
        strategy = vlal.CEC(k=5, random_state=0, use_gpu=False, **kw)
        picks = strategy.select(mx, mp, 12, labeled=labeled)
        assert picks.shape == (12,) and np.unique(picks).size == 12
        assert not np.isin(picks, labeled).any()
    # Same answer as the in-memory float32 copy on the exact path.
    want = vlal.CEC(k=5, random_state=0).select(np.asarray(mx, np.float32), np.asarray(mp, np.float32), 12,
                                                labeled=labeled)
    np.testing.assert_array_equal(vlal.CEC(k=5, random_state=0).select(mx, mp, 12, labeled=labeled), want)


def test_cec_forced_fast_paths_select_distinct_candidates():
    x, p, _ = make_pool(n=1500, d=16, n_classes=6, seed=1)
    labeled = np.arange(0, 1500, 10)
    for clustering in ("weighted", "plain", "greedy"):
        s = vlal.CEC(k=8, knn_index="ivf", kmeans_mode="fast", clustering=clustering, random_state=0, use_gpu=False)
        picks = s.select(x, p, 40, labeled=labeled)
        assert np.unique(picks).size == 40 and not np.isin(picks, labeled).any()
    # issue 9: parameters are checked when select runs (and by make_strategy)
    with pytest.raises(ValueError, match="knn_index"):
        vlal.CEC(knn_index="faiss").select(x, p, 3)
    with pytest.raises(ValueError, match="kmeans_mode"):
        vlal.CEC(kmeans_mode="quick").select(x, p, 3)
    with pytest.raises(ValueError, match="use_gpu"):
        vlal.CEC(use_gpu="always").select(x, p, 3)
    with pytest.raises(ValueError, match="knn_index"):
        vlal.make_strategy("cec[knn_index=faiss]")


def test_l2_normalize_rows_and_no_copy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8)).astype(np.float16)
    rows = np.array([3, 1, 40])
    np.testing.assert_allclose(l2_normalize(x, rows=rows), l2_normalize(x)[rows])
    z = l2_normalize(x)
    same = l2_normalize(z, copy=False)
    assert np.shares_memory(same, z) and not same.flags.writeable
    assert not np.shares_memory(l2_normalize(z), z)  # default still copies
    assert not np.shares_memory(l2_normalize(2 * z, copy=False), z)
    with pytest.raises(ValueError, match="row 40 has zero norm"):
        l2_normalize(np.where(np.arange(50)[:, None] == 40, 0, x), rows=rows)


def test_wide_probabilities_are_processed_in_bounded_chunks():
    from vlal._validation import CHUNK_BYTES, rows_per_chunk

    assert rows_per_chunk(100_000) * 100_000 * 8 <= CHUNK_BYTES
    assert rows_per_chunk(10) == vlal._validation.CHUNK_ROWS
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3000), size=700)
    prior = vlal.contextual_prior(p, 10)
    want = np.sort(p, axis=0)[-10:].mean(axis=0)
    np.testing.assert_allclose(prior, want)
