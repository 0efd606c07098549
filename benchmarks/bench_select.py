"""Speed and scale of one CEC selection round (issue 5).

Synthetic CLIP-like pools (clustered unit vectors, d = 512, K = 100 classes, class
probabilities from a miscalibrated one-prototype-per-class softmax at T = 0.01), budget
b = 1 % of n. For every pool size, each method runs in its own subprocess (so that its
peak RSS, ``VmHWM``, is its own) on the same inputs:

* ``cec``       -- ``vlal.CEC`` with its defaults (``knn_index="auto"``, ``kmeans_mode="auto"``):
                   wall time per stage, kNN recall@20 against exact search on 1,000 sampled
                   rows, achieved GFLOP/s of the kNN and K-Means stages.
* ``reference`` -- a plain implementation of the same equations: numpy (Eq. 2-5, 7),
                   scikit-learn exact ``NearestNeighbors`` (Eq. 6), ``KMeans(sample_weight=U)``
                   and nearest-to-centre with the same distinct-row rule.
* ``skal-coreset``, ``skal-badge``, ``skal-clue`` -- scikit-activeml's CoreSet / Badge / Clue
                   (if installed), fed the same features and probabilities.
* ``cec-exact``   -- (only when asked for) CEC with ``knn_index="exact", kmeans_mode="exact"``:
                   isolates what the approximate paths change.
* ``cec-f16-memmap`` -- (only when asked for) CEC on float16 features and probabilities read
                   through ``np.load(mmap_mode="r")``: the low-memory input path.

Selection quality is measured on 20,000 random pool rows: the ``H^``-weighted mean squared
distance to the nearest pick (the quantity the weighted K-Means + query step minimise, lower
is better), the class coverage of the picks, and the accuracy of a nearest-class-mean
classifier built from the picks' true labels. A method whose run at some n exceeds the time
cap is not run at larger n (the skip is recorded with an n^2 extrapolation).

Usage::

    python benchmarks/bench_select.py                       # full grid, writes benchmarks/results/
    python benchmarks/bench_select.py --quick               # smoke run, < 1 min on 2 cores
    python benchmarks/bench_select.py --sizes 10000,50000 --methods cec,reference
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
D, K, T = 512, 100, 0.01
EVAL_ROWS = 20_000
RECALL_QUERIES = 1_000
METHODS = ("cec", "reference", "skal-coreset", "skal-badge", "skal-clue")
#: Not run by default: CEC with the fast paths forced off (exact kNN, exact K-Means).
EXTRA_METHODS = ("cec-exact", "cec-f16-memmap")
DEFAULT_SIZES = (10_000, 50_000, 100_000, 1_000_000)
QUICK_SIZES = (2_000, 25_000)
REAL_DATA = Path(os.environ.get("VLAL_DATA", HERE.parents[1] / "shared" / "data" / "clip-vitb32"))


# ----------------------------------------------------------------------------- data



def _duration(seconds: float) -> str:
    """``"21 s"``, ``"14 min"`` or ``"3.2 h"``: a duration in the unit that keeps it readable."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"

def make_clip_like_pool(n: int, d: int = D, n_classes: int = K, seed: int = 0, modes: int = 4, beta: float = 0.9,
                        chunk: int = 65536):
    """Clustered unit vectors whose statistics resemble CLIP image embeddings.

    Every row is ``a g + class centre + class mode + within-mode noise + small isotropic
    noise``, then L2-normalised; ``g`` is a shared direction (CLIP embeddings share a
    large mean component), centres, modes and noise are Gaussian with a power-law
    spectrum ``lambda_j ~ j^-beta`` (anisotropic, effective dimension ~ 100). The
    parameters were set so that, at ~1,600 rows, the norm of the mean, the cosine to the
    class mean, the effective dimension and the 1-NN / 20-NN cosines are close to the
    real CLIP ViT-B/32 pools in ``shared/data`` (printed by :func:`data_stats`).

    Returns features (n, d) float32 unit rows, labels (n,) int64 and one extra
    "prototype" image per class (n_classes, d), drawn the same way but not in the pool.
    """
    rng = np.random.default_rng(seed)
    lam = np.arange(1, d + 1, dtype=np.float64) ** (-beta)
    lam = np.sqrt(lam / lam.sum())
    g = rng.normal(size=d)
    g /= np.linalg.norm(g)
    centres = 1.6 * g + rng.normal(size=(n_classes, d)) * lam
    mode_c = centres[:, None, :] + 0.6 * rng.normal(size=(n_classes, modes, d)) * lam

    def draw(y, m):
        x = mode_c[y, m] + 0.75 * rng.normal(size=(y.size, d)) * lam + 0.02 * rng.normal(size=(y.size, d)) / np.sqrt(d)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    protos = draw(np.arange(n_classes), rng.integers(0, modes, size=n_classes)).astype(np.float32)
    y = rng.integers(0, n_classes, size=n)
    m = rng.integers(0, modes, size=n)
    x = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, chunk):
        x[s : s + chunk] = draw(y[s : s + chunk], m[s : s + chunk])
    return x, y.astype(np.int64), protos


def prototype_softmax(x, protos, temperature: float = T, chunk: int = 65536) -> np.ndarray:
    """``softmax(z W0^T / T)`` with one image per class as ``W0`` (the zero-shot proxy), float32."""
    w = protos / np.linalg.norm(protos, axis=1, keepdims=True)
    out = np.empty((x.shape[0], w.shape[0]), dtype=np.float32)
    for s in range(0, x.shape[0], chunk):
        z = np.asarray(x[s : s + chunk], dtype=np.float64)
        logits = (z / np.linalg.norm(z, axis=1, keepdims=True)) @ w.T / temperature
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        out[s : s + chunk] = e / e.sum(axis=1, keepdims=True)
    return out


def data_stats(x, y) -> dict:
    """Summary statistics used to match the synthetic pool to real CLIP features (small n)."""
    x = np.asarray(x, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    mu = x.mean(0)
    cm = np.stack([x[y == c].mean(0) for c in np.unique(y)])
    cm /= np.linalg.norm(cm, axis=1, keepdims=True)
    within = float(np.mean([(x[y == c] @ cm[i]).mean() for i, c in enumerate(np.unique(y))]))
    ev = np.linalg.svd(x - mu, compute_uv=False) ** 2
    ev /= ev.sum()
    g = x @ x.T
    np.fill_diagonal(g, -np.inf)
    nn = -np.sort(-g, axis=1)
    return {
        "rows": int(x.shape[0]),
        "norm_of_mean": round(float(np.linalg.norm(mu)), 3),
        "cos_to_class_mean": round(within, 3),
        "effective_dim": round(float(np.exp(-(ev * np.log(ev + 1e-300)).sum())), 1),
        "nn1_cos": round(float(nn[:, 0].mean()), 3),
        "nn20_cos": round(float(nn[:, 19].mean()), 3),
    }


REAL_FILES = ("dtd", "caltech101", "flowers102", "imagenet_real_even")
#: Pools every table reports: the synthetic model above and real CLIP rows plus noise.
POOLS = ("synthetic", "real")


def make_real_clip_pool(n: int, seed: int = 0, noise: float = 0.02, chunk: int = 65536):
    """Real CLIP ViT-B/32 rows (all four files of ``shared/data/clip-vitb32``, classes kept apart:
    47 + 100 + 102 + 500 = 749), drawn with replacement, plus Gaussian noise of std ``noise`` per
    coordinate, re-normalised. The "prototype" of each class (the zero-shot proxy, as for the
    synthetic pool) is one real row of that class with its own noise draw.

    Returns features (n, 512) float32 unit rows, labels (n,) int64, prototypes (749, 512).
    Raises FileNotFoundError when the data files are absent.
    """
    rng = np.random.default_rng(seed)
    feats, labels, offset = [], [], 0
    for name in REAL_FILES:
        with np.load(REAL_DATA / f"{name}.npz") as f:
            feats.append(np.asarray(f["pool_features"], dtype=np.float32))
            labels.append(np.asarray(f["pool_labels"], dtype=np.int64) + offset)
            offset = int(labels[-1].max()) + 1
    src = np.concatenate(feats)
    src_y = np.concatenate(labels)

    def draw(rows):
        x = src[rows] + noise * rng.standard_normal(size=(rows.size, src.shape[1]), dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    proto_rows = np.array([rng.choice(np.flatnonzero(src_y == c)) for c in range(offset)])
    protos = draw(proto_rows)
    rows = rng.integers(0, src.shape[0], size=n)
    x = np.empty((n, src.shape[1]), dtype=np.float32)
    for s in range(0, n, chunk):
        x[s : s + chunk] = draw(rows[s : s + chunk])
    return x, src_y[rows], protos


def write_pool(n: int, data_dir: Path, seed: int = 0, float16: bool = False, pool: str = "synthetic") -> None:
    x, y, protos = make_clip_like_pool(n, seed=seed) if pool == "synthetic" else make_real_clip_pool(n, seed=seed)
    np.save(data_dir / f"x_{n}.npy", x)
    p = prototype_softmax(x, protos)
    np.save(data_dir / f"p_{n}.npy", p)
    if float16:
        np.save(data_dir / f"x16_{n}.npy", x.astype(np.float16))
        np.save(data_dir / f"p16_{n}.npy", p.astype(np.float16))
    np.save(data_dir / f"y_{n}.npy", y)
    np.save(data_dir / f"w0_{n}.npy", protos)


def matmul_gflops(size: int = 2048, repeat: int = 5) -> float:
    """numpy float32 (size x size) @ (size x size) throughput, best of ``repeat``."""
    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    b = np.random.default_rng(1).random((size, size), dtype=np.float32)
    a @ b
    best = np.inf
    for _ in range(repeat):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best / 1e9


# ----------------------------------------------------------------------------- quality


def selection_quality(x, y, h, picks, eval_rows, n_classes: int | None = None) -> dict:
    """Quality of a selection on ``eval_rows`` (see the module docstring)."""
    from vlal import _faiss

    z = np.ascontiguousarray(x[eval_rows], dtype=np.float32)
    zs = np.ascontiguousarray(x[picks], dtype=np.float32)
    d2 = _faiss.knn_search(zs, z, 1)[0][:, 0].astype(np.float64)
    w = h[eval_rows]
    ys = y[picks]
    classes = np.unique(ys)
    means = np.stack([zs[ys == c].mean(0) for c in classes])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    pred = classes[np.argmax(z @ means.T, axis=1)]
    return {
        "weighted_sq_dist": float((w * d2).sum() / w.sum()),
        "mean_sq_dist": float(d2.mean()),
        "class_coverage": float(classes.size / (n_classes or K)),
        "ncm_accuracy": float((pred == y[eval_rows]).mean()),
    }


# ----------------------------------------------------------------------------- workers


def _count_knn_distances() -> list:
    """Wrap ``faiss.knn`` (the brute-force kernel every vlal kNN search ends in) so that it
    counts the squared distances it evaluates; returns the one-element counter. The
    library keeps no counters of its own; this worker process measures from outside."""
    import threading

    import faiss

    counter, lock, knn = [0], threading.Lock(), faiss.knn

    def counting_knn(xq, xb, k, *args, **kwargs):
        with lock:
            counter[0] += xq.shape[0] * xb.shape[0]
        return knn(xq, xb, k, *args, **kwargs)

    faiss.knn = counting_knn
    return counter


def _rss_gb() -> float:
    """Peak resident memory of this process, GB.

    ``VmHWM`` from ``/proc/self/status`` (Linux): the high-water mark of this program since
    it started. ``ru_maxrss`` is not used where ``VmHWM`` exists: after fork + exec it
    starts from the parent's own peak, which here (the parent generates the pools) would
    hide the worker's figure.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB -> GB (Linux)


BUDGET_FRAC = 0.01  # b = BUDGET_FRAC * n (set by --budget-frac)


def budget_for(n: int) -> int:
    """The benchmark's budget at pool size ``n``: ``max(1, round(BUDGET_FRAC * n))``."""
    return max(1, int(round(BUDGET_FRAC * n)))


def _load(n: int, data_dir: Path):
    x = np.load(data_dir / f"x_{n}.npy")
    p = np.load(data_dir / f"p_{n}.npy")
    y = np.load(data_dir / f"y_{n}.npy")
    return x, p, y


def _knn_recall(z, index, k: int, rows) -> dict:
    """recall@k of ``index`` (self excluded) against exact search, and the H_NN error it causes."""
    from vlal import _faiss

    def drop_self(dist, idx):
        own = idx == rows[:, None]
        drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
        keep = np.ones_like(own)
        keep[np.arange(rows.size), drop] = False
        return dist[keep].reshape(rows.size, k), idx[keep].reshape(rows.size, k)

    da, ia = drop_self(*index.search(z, k + 1, rows=rows))
    de, ie = drop_self(*_faiss.knn_search(z, z[rows], k + 1))
    recall = np.mean([np.intersect1d(a, e).size / k for a, e in zip(ia, ie)])
    return {"recall": float(recall), "_approx": (da, ia), "_exact": (de, ie)}


def worker_cec(n: int, data_dir: Path, seed: int, exact: bool = False, f16_memmap: bool = False) -> dict:
    import scipy.sparse  # noqa: F401  (imported before the clock starts)

    import vlal
    from vlal import _faiss, scoring
    from vlal.strategies import cec as cec_mod
    from vlal.strategies import clustering as clustering_mod

    if f16_memmap:
        x = np.load(data_dir / f"x16_{n}.npy", mmap_mode="r")
        p = np.load(data_dir / f"p16_{n}.npy", mmap_mode="r")
        y = np.load(data_dir / f"y_{n}.npy")
    else:
        x, p, y = _load(n, data_dir)
    rss_loaded = _rss_gb()
    b = budget_for(n)
    times = {"calibration": 0.0, "knn_build": 0.0, "knn_search": 0.0, "kmeans": 0.0, "query": 0.0}
    dists = {"knn": 0, "kmeans": 0}
    captured = {}
    computed = _count_knn_distances()

    def timed(name, fn, count=None, keep=False):
        def wrapper(*args, **kwargs):
            c0, t0 = computed[0], time.perf_counter()
            out = fn(*args, **kwargs)
            times[name] += time.perf_counter() - t0
            if count:
                dists[count] += computed[0] - c0
            if keep:
                captured[name] = out
            return out
        return wrapper

    # CEC's stages, timed where cec.py / clustering.py call the scoring kernels
    cec_mod._calibrated_entropy = timed("calibration", cec_mod._calibrated_entropy)
    cec_mod._build_knn_index = timed("knn_build", cec_mod._build_knn_index, "knn", keep=True)
    cec_mod._neighbor_uncertainty = timed("knn_search", cec_mod._neighbor_uncertainty, "knn")
    clustering_mod._weighted_kmeans = timed("kmeans", clustering_mod._weighted_kmeans, "kmeans")
    cec_mod._nearest_to_centers = timed("query", cec_mod._nearest_to_centers)
    clustering_mod._nearest_to_centers = timed("query", clustering_mod._nearest_to_centers)

    params = {"knn_index": "exact", "kmeans_mode": "exact"} if exact else {}
    strategy = vlal.CEC(random_state=seed, **params)
    t0 = time.perf_counter()
    picks = strategy.select(x, p, b)
    total = time.perf_counter() - t0
    rss_select = _rss_gb()

    index = captured["knn_build"]
    gpu = _faiss.resolve_use_gpu(strategy.use_gpu)
    kmeans_mode = scoring.resolve_kmeans_mode(strategy.kmeans_mode, n, b, gpu=gpu)
    iters = strategy.n_iter if kmeans_mode == "exact" else min(strategy.n_iter, _faiss.DEFAULT_CONFIG.kmeans_fast_max_iter)
    if kmeans_mode == "exact":  # faiss' own Lloyd does not pass through the counter
        dists["kmeans"] += n * b * iters
    if index.gpu and index.kind == "exact":  # nor do faiss' GPU indexes
        dists["knn"] += n * n
    rng = np.random.default_rng(1234)
    qrows = np.sort(rng.choice(n, size=min(n, RECALL_QUERIES), replace=False))
    if f16_memmap:  # checks below compare against the float32 unit rows the index was built on
        x = index.base
    rec = _knn_recall(x, index, strategy.k, qrows)
    h = vlal.calibrated_entropy(p)
    hnn_a = (np.exp(-strategy.alpha * rec["_approx"][0]) * h[rec["_approx"][1]]).mean(1)
    hnn_e = (np.exp(-strategy.alpha * rec["_exact"][0]) * h[rec["_exact"][1]]).mean(1)
    eval_rows = np.sort(rng.choice(n, size=min(n, EVAL_ROWS), replace=False))
    quality = selection_quality(x, y, h, picks, eval_rows, p.shape[1])
    random_picks = np.random.default_rng(seed).choice(n, size=b, replace=False)
    name = "cec-exact" if exact else "cec-f16-memmap" if f16_memmap else "cec"
    np.save(data_dir / f"picks_{name}_{n}.npy", picks)
    knn_time = times["knn_build"] + times["knn_search"]
    return {
        "n": n, "b": b, "method": name, "total_s": total,
        "stages_s": {"calibration": times["calibration"], "knn": knn_time, "knn_build": times["knn_build"],
                     "kmeans": times["kmeans"], "query": times["query"],
                     "other": total - sum(times.values())},
        "knn_index": index.kind + (" (GPU)" if index.gpu else ""), "kmeans_mode": kmeans_mode,
        "kmeans_iters": iters, "gpus": _faiss.num_gpus(),
        "knn_recall20": rec["recall"],
        "hnn_rel_error": float(np.abs(hnn_a - hnn_e).mean() / hnn_e.mean()),
        "knn_gflops": 2 * D * dists["knn"] / knn_time / 1e9,
        "knn_exact_equiv_gflops": 2 * D * n * n / knn_time / 1e9,
        "kmeans_gflops": 2 * D * dists["kmeans"] / times["kmeans"] / 1e9,
        "kmeans_exact_equiv_gflops": 2 * D * n * b * strategy.n_iter / times["kmeans"] / 1e9,
        "peak_rss_gb": rss_select, "rss_after_load_gb": rss_loaded,
        "features_f32_gb": n * D * 4 / 1e9,
        "quality": quality,
        "random_quality": selection_quality(x, y, h, random_picks, eval_rows, p.shape[1]),
    }


def reference_select(z, probs, b, k=20, alpha=0.1, top_n=10, seed=0, times=None):
    """The same equations written plainly: numpy + scikit-learn, exact search, no chunking."""
    from sklearn.cluster import KMeans
    from sklearn.neighbors import NearestNeighbors

    times = {} if times is None else times
    t = time.perf_counter()
    pr = probs.astype(np.float64)
    q = np.sort(pr, axis=0)[-top_n:].mean(axis=0)  # Eq. 3-4
    r = pr / q
    pc = r / r.sum(axis=1, keepdims=True)  # Eq. 5
    h = -(pc * np.log(np.where(pc > 0, pc, 1.0))).sum(axis=1)  # Eq. 2 on P^
    times["calibration"] = time.perf_counter() - t

    t = time.perf_counter()
    nn = NearestNeighbors(n_neighbors=k + 1, algorithm="brute").fit(z)
    dist, idx = nn.kneighbors(z)
    n = z.shape[0]
    own = idx == np.arange(n)[:, None]
    drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones_like(own)
    keep[np.arange(n), drop] = False
    d2 = dist[keep].reshape(n, k) ** 2
    hnn = (np.exp(-alpha * d2) * h[idx[keep].reshape(n, k)]).mean(axis=1)  # Eq. 6
    u = h + hnn  # Eq. 7
    times["knn"] = time.perf_counter() - t

    t = time.perf_counter()
    km = KMeans(n_clusters=b, n_init=1, random_state=seed).fit(z, sample_weight=u)
    times["kmeans"] = time.perf_counter() - t
    times["kmeans_iters"] = int(km.n_iter_)

    t = time.perf_counter()
    centres = km.cluster_centers_.astype(np.float32)
    taken = np.zeros(n, dtype=bool)
    out = np.full(b, -1, dtype=np.int64)
    pending, m = np.arange(b), min(n, 8)
    finder = NearestNeighbors().fit(z)
    while pending.size:
        cd, ci = finder.kneighbors(centres[pending], n_neighbors=m)
        deferred = []
        for row in np.argsort(cd[:, 0], kind="stable"):
            for j in ci[row]:
                if not taken[j]:
                    taken[j] = True
                    out[pending[row]] = j
                    break
            else:
                deferred.append(pending[row])
        pending, m = np.asarray(deferred, dtype=np.int64), min(n, m * 4)
    times["query"] = time.perf_counter() - t
    return out, h


def worker_reference(n: int, data_dir: Path, seed: int) -> dict:
    import sklearn.cluster  # noqa: F401  (imported before the clock starts)
    import sklearn.neighbors  # noqa: F401

    x, p, y = _load(n, data_dir)
    rss_loaded = _rss_gb()
    b = budget_for(n)
    times = {}
    t0 = time.perf_counter()
    picks, h = reference_select(x, p, b, seed=seed, times=times)
    total = time.perf_counter() - t0
    rss_select = _rss_gb()
    rng = np.random.default_rng(1234)
    rng.choice(n, size=min(n, RECALL_QUERIES), replace=False)  # keep the eval rows identical to cec's
    eval_rows = np.sort(rng.choice(n, size=min(n, EVAL_ROWS), replace=False))
    np.save(data_dir / f"picks_reference_{n}.npy", picks)
    iters = times.pop("kmeans_iters")
    return {
        "n": n, "b": b, "method": "reference", "total_s": total,
        "stages_s": {**times, "other": total - sum(times.values())},
        "kmeans_iters": iters,
        "knn_gflops": 2 * D * n * n / times["knn"] / 1e9,
        "kmeans_gflops": 2 * D * n * b * iters / times["kmeans"] / 1e9,
        "peak_rss_gb": rss_select, "rss_after_load_gb": rss_loaded,
        "quality": selection_quality(x, y, h, picks, eval_rows, p.shape[1]),
    }


def _skal_classifier(protos):
    from skactiveml.base import SkactivemlClassifier

    class PrototypeSoftmax(SkactivemlClassifier):
        """The benchmark's zero-shot proxy as a scikit-activeml classifier (no training)."""

        def __init__(self, prototypes=None, temperature=T, classes=None, missing_label=np.nan, random_state=None):
            super().__init__(classes=classes, missing_label=missing_label, random_state=random_state)
            self.prototypes = prototypes
            self.temperature = temperature

        def fit(self, X, y, sample_weight=None):
            self.classes_ = np.arange(len(self.prototypes))
            return self

        def predict_proba(self, X, return_embeddings=False):
            probs = prototype_softmax(np.asarray(X), self.prototypes, self.temperature).astype(np.float64)
            return (probs, np.asarray(X)) if return_embeddings else probs

    clf = PrototypeSoftmax(protos, classes=np.arange(len(protos)))
    return clf.fit(None, None)


def worker_skal(method: str, n: int, data_dir: Path, seed: int) -> dict:
    import sklearn.cluster  # noqa: F401  (imported before the clock starts)

    import vlal
    from skactiveml.pool import Badge, Clue, CoreSet

    x, p, y = _load(n, data_dir)
    protos = np.load(data_dir / f"w0_{n}.npy")
    rss_loaded = _rss_gb()
    b = budget_for(n)
    y_missing = np.full(n, np.nan)
    clf = _skal_classifier(protos)
    t0 = time.perf_counter()
    if method == "skal-coreset":
        picks = CoreSet(random_state=seed).query(x, y_missing, batch_size=b)
    elif method == "skal-badge":
        picks = Badge(clf_embedding_flag_name="return_embeddings", random_state=seed).query(
            x, y_missing, clf, fit_clf=False, batch_size=b)
    else:
        picks = Clue(random_state=seed, cluster_algo_dict={"n_init": 1}).query(
            x, y_missing, clf, fit_estimator=False, batch_size=b)
    total = time.perf_counter() - t0
    rss_select = _rss_gb()
    picks = np.asarray(picks, dtype=np.int64)
    rng = np.random.default_rng(1234)
    rng.choice(n, size=min(n, RECALL_QUERIES), replace=False)
    eval_rows = np.sort(rng.choice(n, size=min(n, EVAL_ROWS), replace=False))
    h = vlal.calibrated_entropy(p)
    return {
        "n": n, "b": b, "method": method, "total_s": total,
        "peak_rss_gb": rss_select, "rss_after_load_gb": rss_loaded,
        "quality": selection_quality(x, y, h, picks, eval_rows, p.shape[1]),
    }


# ----------------------------------------------------------------------------- ANN choice


def ann_compare(n: int, data_dir: Path, search_rows: int = 10_000) -> list[dict]:
    """IVF (query-grouped, vlal's), faiss IndexIVFFlat and faiss HNSW at one n.

    Build time is measured in full; search time on ``search_rows`` sampled rows and
    extrapolated to all n rows (all-vs-all graph); recall@20 on 1,000 rows.
    """
    import faiss

    from vlal import _faiss

    x = np.load(data_dir / f"x_{n}.npy")
    k = 21
    rng = np.random.default_rng(7)
    qrows = np.sort(rng.choice(n, size=RECALL_QUERIES, replace=False))
    srows = np.sort(rng.choice(n, size=min(n, search_rows), replace=False))
    _, exact = _faiss.knn_search(x, x[qrows], k)
    nlist = _faiss.default_nlist(n)
    out = []

    def recall(idx):
        return float(np.mean([np.intersect1d(a, e).size / k for a, e in zip(idx, exact)]))

    def record(name, params, build_s, search_fn):
        t = time.perf_counter()
        search_fn(srows)
        per_row = (time.perf_counter() - t) / srows.size
        out.append({"index": name, "params": params, "build_s": build_s, "search_all_s_est": per_row * n,
                    "total_s_est": build_s + per_row * n, "recall20": recall(search_fn(qrows))})
        print(f"  ann {name} {params}: {out[-1]}", flush=True)

    # vlal's query-grouped IVF. Its real cost is an all-vs-all pass (self_search), which
    # groups rows by list; searching a sparse sample pays one group search per list, so
    # time the full self_search instead of extrapolating.
    t = time.perf_counter()
    index = _faiss.KnnIndex(x, "ivf")
    build = time.perf_counter() - t
    t = time.perf_counter()
    for _ in index.self_search(k):
        pass
    full = time.perf_counter() - t
    out.append({"index": "ivf (vlal, query-grouped)", "params": f"nlist={nlist}, nprobe={_faiss.DEFAULT_CONFIG.ivf_nprobe}",
                "build_s": build, "search_all_s_est": full, "total_s_est": build + full,
                "recall20": recall(index.search(x, k, rows=qrows)[1])})
    print(f"  ann {out[-1]}", flush=True)
    for nprobe in (4, 8, 32):
        index._ivf.nprobe = nprobe
        out.append({"index": "ivf (vlal, query-grouped)", "params": f"nlist={nlist}, nprobe={nprobe}",
                    "build_s": None, "search_all_s_est": None, "total_s_est": None,
                    "recall20": recall(index.search(x, k, rows=qrows)[1])})
    del index

    t = time.perf_counter()
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(D), D, nlist)
    ivf.cp.min_points_per_centroid = 1
    ivf.train(x[np.sort(rng.choice(n, size=min(n, 32 * nlist), replace=False))])
    ivf.add(x)
    build = time.perf_counter() - t
    for nprobe in (8, 16):
        ivf.nprobe = nprobe
        record("faiss IndexIVFFlat", f"nlist={nlist}, nprobe={nprobe}", build, lambda r: ivf.search(x[r], k)[1])
    del ivf

    t = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(D, _faiss.DEFAULT_CONFIG.hnsw_m)
    hnsw.hnsw.efConstruction = _faiss.DEFAULT_CONFIG.hnsw_ef_construction
    hnsw.add(x)
    build = time.perf_counter() - t
    for ef in (64, 128):
        hnsw.hnsw.efSearch = ef
        record("faiss IndexHNSWFlat", f"M={_faiss.DEFAULT_CONFIG.hnsw_m}, efC={_faiss.DEFAULT_CONFIG.hnsw_ef_construction}, efS={ef}", build,
               lambda r: hnsw.search(x[r], k)[1])
    return out


# ----------------------------------------------------------------------------- driver


def run_worker(args) -> None:
    data_dir = Path(args.data_dir)
    if args.worker in ("cec", "cec-exact", "cec-f16-memmap"):
        res = worker_cec(args.n, data_dir, args.seed, exact=args.worker == "cec-exact",
                         f16_memmap=args.worker == "cec-f16-memmap")
    elif args.worker == "reference":
        res = worker_reference(args.n, data_dir, args.seed)
    elif args.worker == "ann":
        res = {"ann": ann_compare(args.n, data_dir)}
    else:
        res = worker_skal(args.worker, args.n, data_dir, args.seed)
    Path(args.result).write_text(json.dumps(res, default=float))


def spawn(method: str, n: int, data_dir: Path, seed: int, cap: float | None) -> dict:
    result = data_dir / f"res_{method}_{n}.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", method, "--n", str(n),
           "--data-dir", str(data_dir), "--seed", str(seed), "--result", str(result),
           "--budget-frac", repr(BUDGET_FRAC)]
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, timeout=cap, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return {"n": n, "method": method, "status": "timeout", "cap_s": cap}
    if proc.returncode != 0 or not result.exists():
        tail = (proc.stderr or proc.stdout)[-1500:]
        return {"n": n, "method": method, "status": "error", "error": tail, "wall_s": time.perf_counter() - t}
    res = json.loads(result.read_text())
    res["status"] = "ok"
    return res


def _fmt(v, spec=".1f"):
    return "–" if v is None else format(v, spec)


def _ordered(runs):
    order = {m: i for i, m in enumerate(METHODS + EXTRA_METHODS)}
    pools = {p: i for i, p in enumerate(POOLS)}
    return sorted(runs, key=lambda r: (r["n"], pools.get(r.get("pool", "synthetic"), 9), r.get("batch", 0),
                                       order.get(r["method"], 99)))


def _label(r) -> str:
    return (r["method"] + (f" [{r['pool']}]" if r.get("pool") else "")
            + (f" (appended run {r['batch']})" if r.get("batch") else ""))


def _key(method: str, n: int, pool: str | None) -> str:
    return f"{method}_{n}" if pool in (None, "synthetic") else f"{method}_{pool}_{n}"


def targets(report: dict, pool: str = "synthetic") -> list[str]:
    """Issue-5 targets, checked against the first (non-appended) run of each size on ``pool``."""
    runs = {(r["n"], r["method"]): r for r in report["runs"] if r.get("status") == "ok" and not r.get("batch")
            and r.get("pool", "synthetic") == pool}
    out = ["", f"## Targets (2 CPU cores), {pool} pool", "", "| target | measured | met |", "|---|---|---|"]
    cec, ref = runs.get((50_000, "cec")), runs.get((50_000, "reference"))
    if cec and ref:
        s = ref["total_s"] / cec["total_s"]
        out.append(f"| n = 5e4: CEC >= 5x faster than the reference | {s:.1f}x ({cec['total_s']:.1f} s vs "
                   f"{ref['total_s']:.1f} s) | {'yes' if s >= 5 else 'no'} |")
        qc, qr = cec["quality"], ref["quality"]
        out.append(f"| n = 5e4: same-quality selection | H^-weighted sq. dist {qc['weighted_sq_dist']:.4f} vs "
                   f"{qr['weighted_sq_dist']:.4f}; class coverage {qc['class_coverage']:.2f} vs {qr['class_coverage']:.2f}; "
                   f"NCM acc. {qc['ncm_accuracy']:.3f} vs {qr['ncm_accuracy']:.3f} | see notes |")
    big = runs.get((1_000_000, "cec"))
    if big:
        f32 = big["n"] * D * 4 / 1e9
        out += [
            f"| n = 1e6, b = 1e4: CEC select <= 300 s | {big['total_s']:.0f} s | {'yes' if big['total_s'] <= 300 else 'no'} |",
            f"| n = 1e6: peak RSS <= 3x the float32 features ({3 * f32:.1f} GB) | {big['peak_rss_gb']:.2f} GB "
            f"({big['peak_rss_gb'] / f32:.2f}x) | {'yes' if big['peak_rss_gb'] <= 3 * f32 else 'no'} |",
            f"| n = 1e6: kNN recall@20 >= 0.95 | {big['knn_recall20']:.4f} | {'yes' if big['knn_recall20'] >= 0.95 else 'no'} |",
        ]
    if len(out) == 5:  # no size of the targets was run (e.g. --quick)
        return []
    out += ["", "Notes on quality: `cec` and `reference` implement the same equations but not the same K-Means: "
            "CEC's exact path is faiss Lloyd from uniformly drawn starting rows for a fixed 20 iterations; "
            "the reference is scikit-learn's `KMeans` with weighted k-means++ seeding run to convergence. "
            "Weighted seeding puts centres where U is high, so the reference reaches a lower weighted "
            "objective and covers fewer classes. What the speed paths themselves change is isolated by "
            "`cec-exact` (same library, `knn_index=\"exact\", kmeans_mode=\"exact\"`, same seed; "
            "column `overlap with cec-exact`): at n = 5e4 only the kNN differs (IVF vs exact), at n = 1e5 the "
            "K-Means too (fast vs exact; the fast path's starting rows come from the weight-proportional "
            "sample, i.e. where U is high, as with weighted seeding)."]
    return out


def markdown(report: dict) -> str:
    lines = [
        "# CEC selection at scale (issue 5)",
        "",
        f"Date: {report['date']}. Machine: {report['machine']}. "
        f"numpy float32 matmul (2048^3, 2 threads): {report['matmul_gflops_start']:.0f} GFLOP/s at the start"
        + (f", {report['matmul_gflops_end']:.0f} GFLOP/s at the end of the run" if "matmul_gflops_end" in report
           else " (run in progress)")
        + f"; 1-min load average {report['loadavg_start'][0]:.1f} at the start"
        + (f", {report['loadavg_end'][0]:.1f} at the end." if "loadavg_end" in report else "."),
        "",
        f"Command: `{report['command']}`",
        "",
    ] + [
        f"Appended runs ({a['date']}): `{a['command']}`; matmul {a['matmul_gflops_start']:.0f}"
        + (f" / {a['matmul_gflops_end']:.0f}" if "matmul_gflops_end" in a else "")
        + f" GFLOP/s, load average {a['loadavg_start'][0]:.1f}"
        + (f" / {a['loadavg_end'][0]:.1f}." if "loadavg_end" in a else ".")
        for a in report.get("appended", [])
    ] + [
        "",
        ("The machine's 2 cores were shared with other engineers' jobs during the runs (see the load "
         "averages), so wall times are noisy: the same run can differ by 2x between a busy and a quiet moment."
         if report.get("cpu_count", 2) <= 2 else
         f"Machine: {report['machine']}. kNN index kinds marked (GPU) ran on faiss' GPU indexes; "
         "`use_gpu='auto'` also runs the weighted K-Means on the GPU (exact Lloyd)."),
        "",
        "Pools: `[synthetic]` = synthetic CLIP-like unit vectors (d = 512, K = 100 classes); `[real]` = real "
        "CLIP ViT-B/32 rows of the four files in `shared/data/clip-vitb32` (749 classes) drawn with "
        "replacement plus Gaussian noise of std 0.02 per coordinate, re-normalised (issue 14: less clustered, "
        "harder for IVF and K-Means); rows without a pool tag come from runs before the real pool existed "
        "(synthetic). Probabilities: a one-prototype softmax at T = 0.01. "
        "Budget: column b (1 % of n unless `--budget-frac` said otherwise), float32 features (the caller's array). "
        "Each method ran in its own process; peak RSS is that process' high-water mark (`VmHWM`) after selection, "
        "including the loaded inputs (features + probabilities; for `cec-f16-memmap` the float16 "
        "files are memory-mapped and their pages count once touched). The synthetic features are unit-norm "
        "float32, which CEC uses in place; features that still need normalising cost one more float32 "
        "(n, d) copy (see `cec-f16-memmap`).",
        "",
        "## Wall time and memory",
        "",
        "| n | b | method | total s | calibration s | kNN s | K-Means s | query s | peak RSS GB | "
        "RSS / f32 features | kNN index | recall@20 | H_NN rel. err | K-Means mode (iters) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in _ordered(report["runs"]):
        if r.get("status") != "ok":
            reason = r.get("reason") or (f"timed out after {r.get('cap_s')} s" if r.get("status") == "timeout"
                                         else f"error: {str(r.get('error', ''))[-200:]!r}")
            lines.append(f"| {r['n']:,} | {r.get('b', budget_for(r['n'])):,} | {_label(r)} | not run: {reason} "
                         "| | | | | | | | | | |")
            continue
        st = r.get("stages_s", {})
        f32 = r["n"] * D * 4 / 1e9
        lines.append(
            f"| {r['n']:,} | {r['b']:,} | {_label(r)} | {r['total_s']:.1f} | {_fmt(st.get('calibration'))} | "
            f"{_fmt(st.get('knn'))} | {_fmt(st.get('kmeans'))} | {_fmt(st.get('query'))} | "
            f"{r['peak_rss_gb']:.2f} | {r['peak_rss_gb'] / f32:.1f} | {r.get('knn_index', 'exact' if r['method'] == 'reference' else '–')} | "
            f"{_fmt(r.get('knn_recall20'), '.4f')} | {_fmt(r.get('hnn_rel_error'), '.2e')} | "
            f"{r.get('kmeans_mode', 'sklearn') if r['method'] != 'reference' and 'kmeans_mode' in r else 'sklearn' if r['method'] == 'reference' else '–'}"
            f"{' (' + str(r['kmeans_iters']) + ')' if 'kmeans_iters' in r else ''} |"
        )
    lines += ["", "## Throughput", "",
              "Achieved GFLOP/s = 2 d x (distances actually computed) / stage time; exact-equivalent = the flops "
              "exact search (n^2) or exact Lloyd (n b iters, CEC's n_iter = 20) would need / stage time.", "",
              "| n | method | kNN GFLOP/s | kNN exact-equiv. GFLOP/s | K-Means GFLOP/s | K-Means exact-equiv. GFLOP/s |",
              "|---|---|---|---|---|---|"]
    for r in _ordered(report["runs"]):
        if r.get("status") == "ok" and r["method"] in ("cec", "cec-exact", "cec-f16-memmap", "reference"):
            lines.append(f"| {r['n']:,} | {_label(r)} | {_fmt(r.get('knn_gflops'))} | "
                         f"{_fmt(r.get('knn_exact_equiv_gflops', r.get('knn_gflops')))} | {_fmt(r.get('kmeans_gflops'))} | "
                         f"{_fmt(r.get('kmeans_exact_equiv_gflops'))} |")
    lines += ["", "## Selection quality", "",
              "On 20,000 random pool rows (all rows when n is smaller): `H^-wtd sq. dist` = H^-weighted mean "
              "squared distance to the nearest pick (lower = better coverage of uncertain regions); "
              "`mean sq. dist` = unweighted; class coverage = share of the 100 classes among the picks; "
              "NCM acc. = accuracy of a nearest-class-mean classifier built from the picks' true labels. "
              "`random` = b uniform picks, for scale.", "",
              "| n | method | H^-wtd sq. dist | mean sq. dist | class coverage | NCM acc. | overlap with reference "
              "| overlap with cec-exact |",
              "|---|---|---|---|---|---|---|---|"]
    for r in _ordered(report["runs"]):
        if r.get("status") != "ok":
            continue
        q = r["quality"]
        ov = report.get("overlap", {}).get(_key(r["method"], r["n"], r.get("pool")))
        ove = report.get("overlap_exact", {}).get(_key(r["method"], r["n"], r.get("pool")))
        lines.append(f"| {r['n']:,} | {_label(r)} | {q['weighted_sq_dist']:.4f} | {q['mean_sq_dist']:.4f} | "
                     f"{q['class_coverage']:.2f} | {q['ncm_accuracy']:.3f} | {_fmt(ov, '.3f')} | {_fmt(ove, '.3f')} |")
        if "random_quality" in r and r["method"] == "cec" and not r.get("batch"):
            q = r["random_quality"]
            lines.append(f"| {r['n']:,} | random{' [' + r['pool'] + ']' if r.get('pool') else ''} | {q['weighted_sq_dist']:.4f} | {q['mean_sq_dist']:.4f} | "
                         f"{q['class_coverage']:.2f} | {q['ncm_accuracy']:.3f} | | |")
    for pool in POOLS:
        lines += targets(report, pool)
    if report.get("speedup"):
        lines += ["", "## CEC vs the plain reference", "", "| n | pool | reference s / CEC s |", "|---|---|---|"]
        for n, s in report["speedup"].items():
            size, _, pool = n.partition(" ")
            lines.append(f"| {int(size):,} | {pool or 'synthetic'} | {s:.1f}x |")
    if report.get("ann"):
        a = report["ann"]
        lines += ["", f"## Approximate index choice (n = {a['n']:,}, d = 512, k = 20)", "",
                  "Build measured in full; all-vs-all search time measured in full for vlal's IVF and "
                  "extrapolated from 10,000 sampled rows for the faiss indexes; recall@20 on 1,000 rows "
                  "(self included in both lists here).", "",
                  "| index | parameters | build s | all-vs-all search s | total s | recall@20 |", "|---|---|---|---|---|---|"]
        for r in a["rows"]:
            lines.append(f"| {r['index']} | {r['params']} | {_fmt(r['build_s'])} | {_fmt(r['search_all_s_est'])} | "
                         f"{_fmt(r['total_s_est'])} | {r['recall20']:.4f} |")
    if report.get("stats"):
        lines += ["", "## Synthetic vs real CLIP statistics", "",
                  "| pool | rows | norm of mean | cos to class mean | effective dim | 1-NN cos | 20-NN cos |",
                  "|---|---|---|---|---|---|---|"]
        for name, s in report["stats"].items():
            lines.append(f"| {name} | {s['rows']} | {s['norm_of_mean']} | {s['cos_to_class_mean']} | "
                         f"{s['effective_dim']} | {s['nn1_cos']} | {s['nn20_cos']} |")
    lines += streamed_section(report.get("streamed", []))
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


def streamed_section(rows: list[dict]) -> list[str]:
    """Runs of ``benchmarks/bench_scale.py`` (CEC streaming float16 shards, issue 14)."""
    if not rows:
        return []
    out = ["", "## Streamed from float16 shards (issue 14)", "",
           "`python benchmarks/bench_scale.py generate --n N [--pool real]` then `select --budget N/1000 "
           "--stream`: `[synthetic]` = the CLIP-like model of this benchmark with K = 1000 classes, `[real]` = "
           "real CLIP rows + noise 0.02 (749 classes), as in the tables above; "
           "features and probabilities as float16 shards on disk, read through `vlal.shards.ShardedFeatures`; "
           "CEC streams them (`vlal._scale`, SQ8 IVF index). Peak RSS = `VmHWM` of the selecting process. "
           "recall@20: of the compressed index against exact search (float32 of the float16 rows), on "
           "sampled rows. Load: 1-min load average sampled every 15 s during the run (2 cores).", "",
           "| n | b | status | total s | prior s | entropy s | index s | tune s | kNN s | K-Means s | query s | "
           "peak RSS GiB | index GiB | nlist | nprobe | recall@20 | SQ8 dist. err (median / p99) | "
           "classes covered | load avg (mean / max) | date |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        st = r.get("stages_s", {})
        err = r.get("sq8_dist_err") or {}
        la = r.get("load_avg_1min") or {}
        out.append(
            f"| {r['n']:,} [{r.get('pool', 'synthetic')}] | {r['budget']:,} | {r.get('status', 'ok')} | {_fmt(r.get('wall_s'))} | "
            + " | ".join(_fmt(st.get(k)) for k in ("prior", "entropy", "index", "tune", "knn", "kmeans", "query"))
            + f" | {_fmt(r.get('peak_rss_gib'), '.2f')} | {_fmt(r.get('index_gib'), '.2f')} | {r.get('nlist', '–')} | "
            f"{r.get('nprobe', '–')} | {_fmt(r.get('recall_at_20'), '.3f')} | "
            f"{_fmt(err.get('median'), '.4f')} / {_fmt(err.get('p99'), '.4f')} | {r.get('classes_covered', '–')} | "
            f"{_fmt(la.get('mean'))} / {_fmt(la.get('max'))} | {r.get('date', '')} |")
        if r.get("note"):
            out.append(f"|  | | note: {r['note']} |" + " |" * 17)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", help="comma-separated pool sizes (default 10000,50000,100000,1000000)")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help=f"subset of {','.join(METHODS + EXTRA_METHODS)} (default: all but {','.join(EXTRA_METHODS)})")
    ap.add_argument("--quick", action="store_true", help="smoke run: n in {2000, 25000}, 10 s cap, no ANN comparison")
    ap.add_argument("--cap", type=float, default=900.0, help="time cap (s) per baseline run (default 900)")
    ap.add_argument("--ann-compare", type=int, default=None, metavar="N",
                    help="also compare IVF / IndexIVFFlat / HNSW at this n (default: the largest size, not with --quick)")
    ap.add_argument("--no-ann", action="store_true", help="skip the index comparison")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budget-frac", type=float, default=0.01,
                    help="budget as a fraction of the pool size (default 0.01: b = 1 %% of n)")
    ap.add_argument("--reuse-pools", action="store_true",
                    help="use the pool files already in --data-dir instead of generating them again")
    ap.add_argument("--out", default=str(RESULTS), help="directory for select_scaling.{md,json}")
    ap.add_argument("--prefix", default="select_scaling")
    ap.add_argument("--append", action="store_true",
                    help="add these runs to the existing {out}/{prefix}.json report instead of starting a new one")
    ap.add_argument("--data-dir", default=None, help="scratch directory for the generated pools")
    ap.add_argument("--pools", default=",".join(POOLS),
                    help="comma-separated pools, each run at every size (default synthetic,real; real needs "
                         "shared/data/clip-vitb32)")
    # worker mode (internal)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if not 0 < args.budget_frac <= 1:
        ap.error(f"--budget-frac must be in (0, 1]; got {args.budget_frac}")
    global BUDGET_FRAC
    BUDGET_FRAC = args.budget_frac
    if args.worker:
        run_worker(args)
        return

    sizes = tuple(int(float(s)) for s in args.sizes.split(",")) if args.sizes else (
        QUICK_SIZES if args.quick else DEFAULT_SIZES)
    cap = 10.0 if args.quick else args.cap
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(METHODS) - set(EXTRA_METHODS)
    if unknown:
        ap.error(f"unknown methods {sorted(unknown)}")
    notes = []
    try:
        import skactiveml  # noqa: F401
    except ImportError:
        if any(m.startswith("skal") for m in methods):
            notes.append("scikit-activeml is not installed: its CoreSet / Badge / Clue were not run.")
        methods = [m for m in methods if not m.startswith("skal")]

    scratch = Path(args.data_dir or tempfile.mkdtemp(prefix="vlal_bench_"))
    scratch.mkdir(parents=True, exist_ok=True)
    report = {
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
                   f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, "
                   f"Python {platform.python_version()}, numpy {np.__version__}",
        "cpu_count": os.cpu_count(),
        "command": "python benchmarks/bench_select.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "sizes": list(sizes), "methods": methods, "cap_s": cap, "runs": [], "notes": notes,
        "budget_frac": BUDGET_FRAC,
    }
    import faiss
    from vlal import _faiss
    report["machine"] += f", faiss {faiss.__version__}" + (
        f", {_faiss.num_gpus()} GPU(s) visible to faiss" if _faiss.num_gpus() else "")
    report["matmul_gflops_start"] = matmul_gflops()
    report["loadavg_start"] = os.getloadavg()
    previous = Path(args.out) / f"{args.prefix}.json"
    if args.append and previous.exists():
        old = json.loads(previous.read_text())
        extra = {k: report[k] for k in ("date", "command", "matmul_gflops_start", "loadavg_start", "sizes", "methods")}
        report = old
        report.setdefault("appended", []).append(extra)
    print(f"matmul {report['matmul_gflops_start']:.0f} GFLOP/s; scratch {scratch}", flush=True)

    stats = report.get("stats", {}) if args.append else {}
    x, y, _ = make_clip_like_pool(1600, seed=args.seed)
    stats["synthetic (this benchmark)"] = data_stats(x, y)
    if all((REAL_DATA / f"{f}.npz").exists() for f in REAL_FILES):
        x, y, _ = make_real_clip_pool(1600, seed=args.seed)
        stats["real rows + noise 0.02 (this benchmark)"] = data_stats(x, y)
    for name in ("dtd", "caltech101", "flowers102"):
        path = REAL_DATA / f"{name}.npz"
        if path.exists():
            with np.load(path) as f:
                stats[f"real {name} (CLIP ViT-B/32)"] = data_stats(f["pool_features"], f["pool_labels"])
    report["stats"] = stats

    pools = [p.strip() for p in args.pools.split(",") if p.strip()]
    if set(pools) - set(POOLS):
        ap.error(f"unknown pools {sorted(set(pools) - set(POOLS))}")
    if "real" in pools and not all((REAL_DATA / f"{f}.npz").exists() for f in REAL_FILES):
        notes.append(f"real pool not run: {REAL_DATA} is missing")
        pools.remove("real")
    skipped: dict[tuple[str, str], tuple[int, float]] = {}  # (method, pool) -> (n, s) of the capped run
    for n in sizes:
        for pool in pools:
            run_size(report, args, scratch, n, pool, methods, cap, skipped)
            write_report(report, args)  # after every size, so a long run leaves partial results

    ann_n = None if args.no_ann or args.quick else (args.ann_compare or max(sizes))
    if ann_n:
        t = time.perf_counter()
        write_pool(ann_n, scratch, seed=args.seed)
        print(f"ANN comparison at n={ann_n:,}", flush=True)
        res = spawn("ann", ann_n, scratch, args.seed, None)
        if res.get("status") == "ok":
            report["ann"] = {"n": ann_n, "rows": res["ann"]}
        else:
            report["notes"].append(f"ANN comparison failed: {res.get('error', res.get('status'))}")
        for f in scratch.glob(f"*_{ann_n}.npy"):
            f.unlink()

    if args.append and report.get("appended"):
        report["appended"][-1]["matmul_gflops_end"] = matmul_gflops()
        report["appended"][-1]["loadavg_end"] = os.getloadavg()
    else:
        report["matmul_gflops_end"] = matmul_gflops()
        report["loadavg_end"] = os.getloadavg()
    write_report(report, args)
    if not args.data_dir:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"wrote {Path(args.out) / (args.prefix + '.md')}", flush=True)


def run_size(report, args, scratch, n, pool, methods, cap, skipped) -> None:
    """Run every method at size ``n`` on ``pool`` (appends to ``report['runs']``)."""
    t = time.perf_counter()
    f16 = "cec-f16-memmap" in methods
    names = ["x", "p", "y", "w0"] + (["x16", "p16"] if f16 else [])
    if args.reuse_pools and all((scratch / f"{v}_{n}.npy").exists() for v in names):
        print(f"n={n:,} [{pool}]: reusing the pool files in {scratch}", flush=True)
    else:
        write_pool(n, scratch, seed=args.seed, float16=f16, pool=pool)
        print(f"n={n:,} [{pool}]: pool written in {time.perf_counter() - t:.1f} s", flush=True)
    for method in methods:
        if (method, pool) in skipped:
            n0, s0 = skipped[(method, pool)]
            report["runs"].append({"n": n, "method": method, "pool": pool, "status": "skipped",
                                   "reason": f"previous size n={n0:,} took > {s0:.0f} s; ~n^2 scaling "
                                             f"-> > {_duration(s0 * (n / n0) ** 2)} estimated"})
            continue
        if method == "skal-badge" and n * K * D * 8 > 8e9:
            report["runs"].append({"n": n, "method": method, "pool": pool, "status": "skipped",
                                   "reason": f"scikit-activeml Badge builds the (n, K*d) float64 gradient "
                                             f"embedding: {n * K * D * 8 / 1e9:.0f} GB"})
            continue
        if method == "reference" and n > 200_000:
            last = [r for r in report["runs"] if r["method"] == "reference" and r.get("status") == "ok"
                    and r.get("pool", "synthetic") == pool]
            est = f"; ~n^2 from n={last[-1]['n']:,} ({last[-1]['total_s']:.0f} s) -> " \
                  f"{last[-1]['total_s'] * (n / last[-1]['n']) ** 2 / 3600:.1f} h" if last else ""
            report["runs"].append({"n": n, "method": method, "pool": pool, "status": "skipped",
                                   "reason": f"exact all-pairs kNN needs {2 * D * n * n / 1e12:.0f} TFLOP{est}"})
            continue
        prev = [r for r in report["runs"] if r["method"] == method and r.get("status") == "ok"
                and r.get("pool", "synthetic") == pool]
        if method != "cec" and prev and prev[-1]["total_s"] * (n / prev[-1]["n"]) ** 2 > cap:
            est = prev[-1]["total_s"] * (n / prev[-1]["n"]) ** 2
            report["runs"].append({"n": n, "method": method, "pool": pool, "status": "skipped",
                                   "reason": f"~n^2 from n={prev[-1]['n']:,} ({prev[-1]['total_s']:.1f} s) -> "
                                             f"~{_duration(est)} estimated, over the {cap:.0f} s cap"})
            continue
        res = spawn(method, n, scratch, args.seed, None if method == "cec" else cap)
        res["pool"] = pool
        if args.append and report.get("appended"):
            res["batch"] = len(report["appended"])  # which appended command produced it
        report["runs"].append(res)
        print(f"  {method}: {json.dumps({k: v for k, v in res.items() if k != 'error'}, default=float)[:400]}",
              flush=True)
        if res.get("status") == "error":
            print(res.get("error"), flush=True)
        if res.get("status") == "timeout":
            skipped[(method, pool)] = (n, cap)
    for m in methods:
        picks = scratch / f"picks_{m}_{n}.npy"
        for other, key in (("reference", "overlap"), ("cec-exact", "overlap_exact")):
            ref = scratch / f"picks_{other}_{n}.npy"
            if picks.exists() and ref.exists() and m != other:
                a, r = np.load(picks), np.load(ref)
                report.setdefault(key, {})[_key(m, n, pool)] = float(np.intersect1d(a, r).size / r.size)
    batch = len(report.get("appended", [])) if args.append else 0
    runs = {r["method"]: r for r in report["runs"]
            if r["n"] == n and r.get("status") == "ok" and r.get("batch", 0) == batch and r.get("pool") == pool}
    if "cec" in runs and "reference" in runs:
        report.setdefault("speedup", {})[str(n) if pool == "synthetic" else f"{n} {pool}"] = runs["reference"]["total_s"] / runs["cec"]["total_s"]
    if not args.reuse_pools:  # with --reuse-pools the files stay for the next command
        for f in scratch.glob(f"*_{n}.npy"):
            f.unlink()


def write_report(report: dict, args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.prefix}.json").write_text(json.dumps(report, indent=1, default=float))
    (out / f"{args.prefix}.md").write_text(markdown(report))


if __name__ == "__main__":
    main()
