"""The paper's equations as small, pure, composable functions.

Each function implements one step of CEC (Safaei & Patel, "Active Learning for
Vision-Language Models", WACV 2025) or of a baseline; equation numbers refer to that
paper. None of them modifies its inputs. Large inputs are processed in row chunks
(``vlal._validation.rows_per_chunk``: at most ``CHUNK_BYTES`` of float64 temporaries per
chunk, whatever the width) so that float16 or memory-mapped arrays are never copied whole
to float64.

Layout: each public function = input checks + a private kernel of the same name with a
leading underscore (``entropy`` -> ``_entropy``). Strategies validate once, in
:meth:`vlal.Strategy.select`, and then call the kernels only; they never import the faiss
layer (``vlal._faiss``) themselves (``_knn`` and ``_nearest_center_sq_dist`` serve them).
"""

from __future__ import annotations

import numbers

import numpy as np

from . import _faiss
from ._validation import (
    check_features,
    check_param,
    check_positive_int,
    check_probs,
    check_temperature,
    check_vector,
    l2_normalize,
    rows_per_chunk,
    seed_int,
)
from .exceptions import VlalInputError
from ._warnings import warn_caller

__all__ = [
    "entropy",
    "contextual_prior",
    "calibrate",
    "calibrated_entropy",
    "neighbor_uncertainty",
    "weighted_kmeans",
    "nearest_to_centers",
    "zero_shot_probs",
    "margin",
    "least_confidence",
    "k_center_greedy",
    "build_knn_index",
    "KNN_INDEXES",
    "KMEANS_MODES",
    "KMEANS_EXACT_MAX_WORK",
]

#: Accepted values of ``knn_index`` (or pass a prebuilt :class:`vlal._faiss.KnnIndex`).
KNN_INDEXES = _faiss.KNN_KINDS
#: Accepted values of ``kmeans_mode``.
KMEANS_MODES = ("auto", "exact", "fast")
#: ``kmeans_mode="auto"`` runs the exact path while ``n * n_clusters`` is at most this
#: (one exact Lloyd pass costs ``2 n b d`` flops: 5e7 -> 5e10 flops at d = 512).
KMEANS_EXACT_MAX_WORK = _faiss.KMEANS_EXACT_MAX_WORK



def _entropy_block(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(p), 0.0)
    # -0.0 for one-hot rows is returned as +0.0; a row summing to 1 + 1e-3 (accepted) can exceed log K: capped
    return np.clip(-plogp.sum(axis=1), 0.0, np.log(p.shape[1])) + 0.0  # + 0.0: -0.0 -> +0.0 (clip keeps -0.0)


def entropy(probs) -> np.ndarray:
    """Shannon entropy of each row of class probabilities (paper Eq. 2).

    ``H(x) = -sum_i P_i log P_i`` with the natural log and ``0 log 0 = 0``.

    Parameters
    ----------
    probs : array-like of shape (n, K)
        Class probabilities, any float dtype; rows sum to 1 (atol 1e-3), values >= 0.

    Returns
    -------
    ndarray of shape (n,), float64
        Entropies in nats, in ``[0, log K]``.

    Raises
    ------
    ValueError
        ``probs`` is not 2-D, holds NaN/inf or negative values, or a row does not sum to 1.
    """
    return _entropy(check_probs(probs))


def _entropy(p) -> np.ndarray:
    """Kernel of :func:`entropy` (``p`` validated (n, K), any float dtype)."""
    out = np.empty(p.shape[0], dtype=np.float64)
    step = rows_per_chunk(p.shape[1])
    for s in range(0, p.shape[0], step):
        out[s : s + step] = _entropy_block(p[s : s + step])
    return out


def contextual_prior(probs, top_n: int = 10) -> np.ndarray:
    """Contextualised class prior ``Q`` (paper Eq. 3-4, after Zhou et al. [18]).

    For each class ``i``, ``Q(i)`` is the mean of the ``top_n`` largest values of
    ``P(y=i|x)`` over the rows of ``probs`` (the candidate pool). If the pool has
    fewer than ``top_n`` rows, all rows are used.

    Parameters
    ----------
    probs : array-like of shape (n, K)
        Class probabilities of the pool.
    top_n : int, default 10
        ``N`` in Eq. 3 (the paper fixes it to 10 for every dataset).

    Returns
    -------
    ndarray of shape (K,), float64
        ``Q(i)`` in ``[0, 1]``.

    Raises
    ------
    ValueError
        Invalid ``probs`` (see :func:`entropy`) or ``top_n`` not a positive int.
    """
    p = check_probs(probs)
    return _contextual_prior(p, check_positive_int(top_n, "top_n"))


def _contextual_prior(p, top_n: int) -> np.ndarray:
    # Keep a running top-N per class across chunks: memory O(N*K + chunk*K).
    n_top = min(top_n, p.shape[0])
    best = None
    step = rows_per_chunk(p.shape[1])
    for s in range(0, p.shape[0], step):
        block = np.asarray(p[s : s + step], dtype=np.float64)
        stack = block if best is None else np.vstack([best, block])
        m = min(n_top, stack.shape[0])
        best = -np.partition(-stack, m - 1, axis=0)[:m]
    return best.mean(axis=0)


def calibrate(probs, prior) -> np.ndarray:
    """Prior-calibrated probabilities (paper Eq. 5).

    ``P^_i = (P_i / Q(i)) / sum_j (P_j / Q(j))``.

    A class with ``Q(i) = 0`` has ``P_i = 0`` on every row the prior was estimated
    from (:func:`contextual_prior`); its ratio is defined as 0 there (documented fallback).
    A row with ``P_i > 0`` for such a class is an error: Eq. 5 would divide by zero, and
    dropping the class would silently change the row's prediction (a prior estimated on other
    rows than ``probs``, or one given by hand). A row whose ratios all vanish is left as it was.

    Parameters
    ----------
    probs : array-like of shape (n, K)
        Class probabilities.
    prior : array-like of shape (K,)
        Non-negative prior, e.g. from :func:`contextual_prior`.

    Returns
    -------
    ndarray of shape (n, K), float64
        Rows sum to 1.

    Raises
    ------
    ValueError
        Invalid ``probs``; ``prior`` not 1-D of length K, not finite, or negative; ``prior``
        0 for a class that a row of ``probs`` gives a positive probability.
    """
    p = check_probs(probs)
    q = np.asarray(prior, dtype=np.float64)
    if q.ndim != 1 or q.shape[0] != p.shape[1]:
        raise VlalInputError(f"prior must have shape ({p.shape[1]},) to match probs {p.shape}; got {q.shape}")
    if not np.isfinite(q).all() or (q < 0).any():
        raise VlalInputError("prior must be finite and non-negative")
    zero = np.flatnonzero(q == 0)
    if zero.size:
        hit = np.asarray(p[:, zero], dtype=np.float64) > 0
        if hit.any():
            row, col = np.argwhere(hit)[0]
            raise VlalInputError(
                f"prior is 0 for class {int(zero[col])}, but probs row {int(row)} gives it probability "
                f"{float(p[row, zero[col]]):.3g}: Eq. 5 divides by the prior; estimate the prior on these rows "
                "(contextual_prior(probs)) or give the class a positive prior")
    return _calibrate_block(np.asarray(p, dtype=np.float64), q)


def _calibrate_block(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):  # a tiny (subnormal) prior overflows 1 / q: rows redone below
        inv_q = np.divide(1.0, q, out=np.zeros_like(q), where=q > 0)
        ratio = p * inv_q
        total = ratio.sum(axis=1, keepdims=True)
    huge = ~np.isfinite(total[:, 0])
    good = (total[:, 0] > 0) & ~huge
    out = p.copy()
    out[good] = ratio[good] / total[good]
    if huge.any():  # the same ratios in log space, scaled by the row's largest
        with np.errstate(divide="ignore"):
            lr = np.where((p[huge] > 0) & (q > 0), np.log(p[huge]) - np.log(np.where(q > 0, q, 1.0)), -np.inf)
        r = np.exp(lr - lr.max(axis=1, keepdims=True))
        out[huge] = r / r.sum(axis=1, keepdims=True)
    return out


def calibrated_entropy(probs, top_n: int = 10) -> np.ndarray:
    """Calibrated entropy ``H^(x)``: Eq. 2 applied to the calibrated probabilities of Eq. 5.

    The prior (Eq. 3-4) is estimated from the rows of ``probs`` themselves.

    Parameters
    ----------
    probs : array-like of shape (n, K)
        Class probabilities of the candidate pool.
    top_n : int, default 10
        ``N`` of the contextualised prior.

    Returns
    -------
    ndarray of shape (n,), float64
        Entropies in nats.

    Raises
    ------
    ValueError
        As :func:`contextual_prior`.

    Notes
    -----
    Works chunk by chunk: the calibrated (n, K) matrix of :func:`calibrate` is never
    built, and float16 / memory-mapped ``probs`` are never copied whole.
    """
    p = check_probs(probs)
    return _calibrated_entropy(p, check_positive_int(top_n, "top_n"))


def _calibrated_entropy(p, top_n: int) -> np.ndarray:
    """Kernel of :func:`calibrated_entropy` (``p`` validated (n, K), ``top_n`` a positive int)."""
    q = _contextual_prior(p, top_n)
    out = np.empty(p.shape[0], dtype=np.float64)
    step = rows_per_chunk(p.shape[1])
    for s in range(0, p.shape[0], step):
        block = np.asarray(p[s : s + step], dtype=np.float64)
        out[s : s + step] = _entropy_block(_calibrate_block(block, q))
    return out


def build_knn_index(features, knn_index: str = "auto", *, n_queries: int | None = None, use_gpu="auto"):
    """A reusable kNN index over (already L2-normalised) ``features``.

    Building the index once and passing it as ``knn_index=`` to
    :func:`neighbor_uncertainty` and :func:`nearest_to_centers` avoids building it twice
    (CEC does this).

    Parameters
    ----------
    features : array-like of shape (n, d)
        Rows to index, as given (float32 C-contiguous input is referenced, not copied).
    knn_index : {"auto", "exact", "ivf", "hnsw"}, default "auto"
        ``"exact"``: brute force (faiss). ``"ivf"``: inverted file with flat lists,
        ``2 sqrt(n)`` lists, 12 probed. ``"hnsw"``: faiss HNSW graph (M = 32, CPU only).
        ``"auto"``: exact while ``n * n_queries <= vlal._faiss.KNN_EXACT_MAX_ROWS ** 2``
        (2e4 ** 2; on GPUs 2e6 ** 2), else ``"ivf"``.
    n_queries : int, optional
        Expected number of queries, to resolve ``"auto"`` (default ``n``).
    use_gpu : "auto", bool, default "auto"
        Search on the GPUs (``"auto"``: when faiss has any; ``True`` without one raises).

    Returns
    -------
    vlal._faiss.KnnIndex

    Raises
    ------
    ValueError
        Invalid ``features``, ``knn_index`` or ``use_gpu``.
    """
    f = check_features(features, "features")
    return _build_knn_index(f, knn_index, n_queries, use_gpu)


def _build_knn_index(f: np.ndarray, knn_index, n_queries, use_gpu):
    """Kernel of :func:`build_knn_index` (``f`` validated); checks only the index kind."""
    if not isinstance(knn_index, str) or knn_index not in KNN_INDEXES:
        raise VlalInputError(f"knn_index must be one of {KNN_INDEXES} or a KnnIndex; got {knn_index!r}")
    try:
        return _faiss.KnnIndex(f, knn_index, n_queries=n_queries, use_gpu=use_gpu)
    except ValueError as exc:
        raise VlalInputError(str(exc)) from None


def _index_for(z: np.ndarray, knn_index, use_gpu, n_queries: int):
    """``knn_index`` itself when it is a KnnIndex built on ``z``'s shape, else a new one over ``z``."""
    if isinstance(knn_index, _faiss.KnnIndex):
        if knn_index.n != z.shape[0] or knn_index.d != z.shape[1]:
            raise VlalInputError(
                f"knn_index was built on {knn_index.n} rows of dimension {knn_index.d}, "
                f"but features has shape {z.shape}"
            )
        return knn_index
    return _build_knn_index(z, knn_index, n_queries, use_gpu)


def _knn(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest rows of ``base`` for each query row: squared L2 distances (m, k)
    float32 and positions (m, k) int64, nearest first (faiss brute force)."""
    return _faiss.knn_search(base, queries, k)


def _nearest_center_sq_dist(centers: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance (n,) float64, clipped at 0, of each row of ``x`` to its
    nearest row of ``centers`` (exact)."""
    dist, _ = _knn(centers, x, 1)
    return np.maximum(dist[:, 0].astype(np.float64), 0.0)


def _drop_self(rows: np.ndarray, dist: np.ndarray, idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest *other* rows from a self-search of ``k + 1``: (m, k) distances and positions.

    ``dist`` / ``idx`` (m, k + 1) are the k + 1 nearest rows of the rows ``rows``; each row's
    own hit is dropped (or, when identical rows hide it, the farthest hit), so a row never
    counts as its own neighbour. The one place of the self-exclusion rule (Eq. 6 in memory
    and streamed, GCNAL's graph).
    """
    m = rows.shape[0]
    own = idx == rows[:, None]
    drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones_like(own)
    keep[np.arange(m), drop] = False
    return dist[keep].reshape(m, k), idx[keep].reshape(m, k)


def neighbor_uncertainty(
    features,
    scores,
    k: int = 20,
    alpha: float = 0.1,
    *,
    knn_index="auto",
    use_gpu="auto",
) -> np.ndarray:
    """Neighbour uncertainty ``H_NN`` (paper Eq. 6).

    ``H_NN(x) = (1/k) sum_{x_i in kNN(x)} exp(-alpha ||z_x - z_i||^2) H^(x_i)``, where
    ``z = f / ||f||`` and kNN are the ``k`` nearest *other* rows by Euclidean distance
    on the normalised features (the row itself is excluded, also when identical rows
    exist). The index is built once and all rows are searched in chunks.

    Parameters
    ----------
    features : array-like of shape (n, d)
        Image features of the candidate pool; normalised to unit L2 norm internally
        (no copy when they already are unit-norm float32).
    scores : array-like of shape (n,)
        Per-row uncertainty ``H^`` (e.g. :func:`calibrated_entropy`).
    k : int, default 20
        Number of neighbours. If ``k >= n`` it is reduced to ``n - 1`` with a
        ``UserWarning``; with ``n = 1`` the result is ``[0.0]``.
    alpha : float, default 0.1
        Similarity bandwidth (>= 0), in units of 1 / squared distance.
    knn_index : {"auto", "exact", "ivf", "hnsw"} or KnnIndex, default "auto"
        Neighbour search (see :func:`build_knn_index`). ``"auto"`` is exact up to
        ``vlal._faiss.KNN_EXACT_MAX_ROWS`` (20,000) rows and IVF above (recall@20
        >= 0.95 measured at n = 1e6, see ``benchmarks/results/select_scaling.md``).
        A prebuilt index must have been built on the normalised ``features``. On the
        approximate paths, the row itself is still excluded (if the index misses it,
        the farthest hit is dropped instead).
    use_gpu : "auto", bool, default "auto"
        Run the search on GPUs (``"auto"``: when faiss has any).

    Returns
    -------
    ndarray of shape (n,), float64

    Raises
    ------
    ValueError
        Invalid ``features``; ``scores`` of the wrong shape or not finite;
        ``k`` not a positive int; ``alpha`` negative or not finite; invalid
        ``knn_index`` / ``use_gpu``.
    """
    f = check_features(features, "features")
    h = check_vector(scores, f.shape[0], "scores")
    k = check_positive_int(k, "k")
    alpha = float(check_param(alpha, "alpha", numbers.Real, min_val=0))
    if f.shape[0] == 1:
        return np.zeros(1, dtype=np.float64)
    return _neighbor_uncertainty(l2_normalize(f, "features", copy=False), h, k, alpha, knn_index, use_gpu)


def _neighbor_uncertainty(z: np.ndarray, h: np.ndarray, k: int, alpha: float, knn_index="auto",
                          use_gpu="auto") -> np.ndarray:
    """Kernel of :func:`neighbor_uncertainty`: ``z`` (n, d) unit-norm rows, ``h`` (n,) float64
    finite, ``k >= 1`` (reduced to ``n - 1`` with a warning), ``alpha >= 0``; ``knn_index`` a
    kind or a KnnIndex over ``z``."""
    n = z.shape[0]
    if n == 1:
        return np.zeros(1, dtype=np.float64)
    if k >= n:
        warn_caller(f"k={k} >= number of candidates ({n}); using k={n - 1}", UserWarning)
        k = n - 1
    index = _index_for(z, knn_index, use_gpu, n)
    out = np.empty(n, dtype=np.float64)
    # Search k+1 and drop the row itself (or, when identical rows hide it, the farthest hit).
    for rows, dist, idx in index.self_search(k + 1):
        out[rows] = _neighbor_term(rows, dist, idx, h, k, alpha)
    return out


def _neighbor_term(rows: np.ndarray, dist: np.ndarray, idx: np.ndarray, h: np.ndarray, k: int,
                   alpha: float) -> np.ndarray:
    """Eq. 6 for one block of a self-search: ``(1/k) sum_j exp(-alpha d_ij) h_j`` over the k
    nearest other rows.

    ``dist`` / ``idx`` (m, k + 1) are the block's k + 1 nearest rows (squared L2); each row's own
    hit is dropped (or, when identical rows hide it, the farthest hit), so a row never counts as
    its own neighbour (:func:`_drop_self`).
    """
    d, nb = _drop_self(rows, dist, idx, k)
    return (np.exp(-alpha * d.astype(np.float64)) * h[nb]).sum(axis=1) / k


def weighted_kmeans(
    features,
    weights=None,
    n_clusters: int = 8,
    random_state=None,
    n_iter: int = 20,
    *,
    kmeans_mode: str = "auto",
    use_gpu="auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Uncertainty-weighted K-Means (paper Sec. 4.3; weighted K-Means as in Kerdprasop et al. [19]).

    Lloyd's algorithm where each row counts with its weight when centres are
    recomputed, i.e. it decreases ``sum_x w(x) ||x - c(x)||^2``. Features are
    clustered as given (CEC passes normalised ones); rows whose largest |value| lies outside
    ``[2**-20, 2**20]`` are multiplied by a power of two for the float32 computation (exact; the
    centres are returned in the caller's units).

    Parameters
    ----------
    features : array-like of shape (n, d)
        Rows to cluster (float16 / memory-mapped inputs are converted to one float32 copy).
    weights : array-like of shape (n,), optional
        Non-negative sample weights, e.g. ``U(x)`` of Eq. 7. ``None`` or all zeros
        -> equal weights (documented fallback).
    n_clusters : int
        Number of clusters ``b``, ``1 <= b <= n``.
    random_state : None, int, numpy SeedSequence, Generator or RandomState
        Seed of the centre initialisation (and of the fast path's sample).
    n_iter : int, default 20
        Lloyd iterations (the fast path runs at most
        ``vlal._faiss.KMEANS_FAST_MAX_ITER`` = 10).
    kmeans_mode : {"auto", "exact", "fast"}, default "auto"
        ``"exact"``: faiss K-Means on every row with its weight, exact assignments.
        ``"fast"``: for many clusters. Lloyd runs on a sample of
        ``KMEANS_FAST_ROWS_PER_CENTROID * b`` (32 b) draws taken with probability
        proportional to the weight; each drawn row then counts with its number of draws.
        That sampled objective is an unbiased estimate of the weighted objective above
        (importance sampling), so the centres target the same weighted K-Means
        problem, with sampling noise that shrinks as the sample grows; rows that are
        never drawn do not move the centres. Assignments inside Lloyd and the
        returned ones use an approximate (IVF) index over the centres when
        ``b * rows`` is large. When ``n <= 32 b`` every row is used with its weight.
        Initial centres are drawn from the weighted sample (the exact path draws them
        uniformly from all rows), see :func:`vlal._faiss.kmeans_fast`.
        ``"auto"``: exact while ``n * b <= KMEANS_EXACT_MAX_WORK`` (or on a GPU), else fast.
    use_gpu : "auto", bool, default "auto"
        Run the assignments on GPUs (``"auto"``: when faiss has any).

    Returns
    -------
    centers : ndarray of shape (n_clusters, d), float32
    assignments : ndarray of shape (n,), int64
        Index of each row's nearest centre (approximate on the fast path: a row near
        a boundary may get its second nearest centre).

    Raises
    ------
    ValueError
        Invalid ``features``; ``weights`` of the wrong shape, not finite or negative;
        ``n_clusters`` not an int in ``[1, n]``; invalid ``kmeans_mode`` / ``use_gpu``;
        ``features`` whose largest |value| is outside float32's normal range (the centres
        could not be returned as float32).
    """
    f = check_features(features, "features")
    n = f.shape[0]
    b = check_positive_int(n_clusters, "n_clusters")
    if b > n:
        raise VlalInputError(f"n_clusters={b} exceeds the number of rows ({n})")
    n_iter = check_positive_int(n_iter, "n_iter")
    if kmeans_mode not in KMEANS_MODES:
        raise VlalInputError(f"kmeans_mode must be one of {KMEANS_MODES}; got {kmeans_mode!r}")
    _resolve_gpu(use_gpu)
    w = None if weights is None else check_vector(weights, n, "weights", nonnegative=True)
    return _weighted_kmeans(f, w, b, random_state, n_iter, kmeans_mode, use_gpu)


# ---------------------------------------------------------------------------- float32 Euclidean kernels

#: The Euclidean kernels (faiss, float32) run on rows whose largest |value| lies in this band as
#: given; rows outside it are first multiplied by a power of two (exact, so nothing but the
#: units changes), else squared distances overflow (|x| ~ 1e19: faiss aborts the process,
#: searches return nothing) or underflow (|x| ~ 1e-25: every distance is 0, picks are wrong).
_SAFE_MAGNITUDE = (2.0**-20, 2.0**20)


def _magnitude_exponent(*arrays) -> int:
    """``k`` such that ``arrays * 2**k`` have their largest |value| near 1; 0 when already in
    :data:`_SAFE_MAGNITUDE` (or all zero). No temporary copies (max / min per array)."""
    m = 0.0
    for a in arrays:
        if a is not None and a.size:
            m = max(m, abs(float(np.max(a))), abs(float(np.min(a))))
    if m == 0.0 or _SAFE_MAGNITUDE[0] <= m <= _SAFE_MAGNITUDE[1]:
        return 0
    return -int(np.round(np.log2(m)))


def _float32_rows(a, k: int) -> np.ndarray:
    """``a * 2**k`` as a C-contiguous float32 array (``np.ldexp``: exact, no intermediate overflow)."""
    if k == 0:
        return np.ascontiguousarray(a, dtype=np.float32)
    return np.ascontiguousarray(np.ldexp(np.asarray(a, dtype=np.float64), k), dtype=np.float32)



def _resolve_gpu(use_gpu) -> bool:
    try:
        return _faiss.resolve_use_gpu(use_gpu)
    except ValueError as exc:
        raise VlalInputError(str(exc)) from None


def _weighted_kmeans(f, w, b: int, random_state, n_iter: int, kmeans_mode: str = "auto",
                     use_gpu="auto") -> tuple[np.ndarray, np.ndarray]:
    """Kernel of :func:`weighted_kmeans`: ``f`` (n, d) validated, ``w`` (n,) float64 finite and
    non-negative or None, ``1 <= b <= n``."""
    n = f.shape[0]
    gpu = _resolve_gpu(use_gpu)
    if w is not None:
        if not (w > 0).any():
            w = None  # all zero: equal weights
        else:
            w = w / w.max()  # scale-free; keeps float32 accumulation well conditioned
    mode = resolve_kmeans_mode(kmeans_mode, n, b, gpu)
    k = _magnitude_exponent(f)
    if k:  # the centres are returned in the caller's units, as float32: they must fit
        big = 2.0**-k
        if not float(np.finfo(np.float32).tiny) <= big <= float(np.finfo(np.float32).max):
            raise VlalInputError(f"features has values of magnitude {big:.3g}, outside float32's range, in which the "
                                 "centres are returned; rescale the rows (e.g. L2-normalise them)")
    x = _float32_rows(f, k)
    seed = seed_int(random_state)
    if b == n:
        centers = x.copy()
    elif mode == "fast":
        centers = _faiss.kmeans_fast(x, b, w, seed, n_iter, use_gpu=gpu)
    else:
        centers = _faiss.kmeans(x, b, w, seed, n_iter, use_gpu=gpu)
    if mode == "exact" and not gpu:
        _, assign = _faiss.knn_search(centers, x, 1)
    else:
        _, assign = _faiss.assignment_index(centers, n, gpu, seed).search(x, 1)
    if k:
        centers = np.ldexp(centers.astype(np.float64), -k).astype(np.float32)
    return centers, assign[:, 0]


def resolve_kmeans_mode(kmeans_mode: str, n: int, n_clusters: int, gpu: bool = False) -> str:
    """What ``kmeans_mode="auto"`` stands for: ``"exact"`` on GPUs or while
    ``n * n_clusters <= KMEANS_EXACT_MAX_WORK``, else ``"fast"``."""
    if kmeans_mode != "auto":
        return kmeans_mode
    return "exact" if gpu or n * n_clusters <= KMEANS_EXACT_MAX_WORK else "fast"


def nearest_to_centers(features, centers, *, knn_index="auto", use_gpu="auto") -> np.ndarray:
    """For each centre, the closest row not already taken (paper Sec. 4.4).

    Centres are served in order of their nearest distance (closest first); a centre
    whose nearest rows are taken (duplicates, empty clusters) gets the next closest,
    so exactly ``len(centers)`` distinct rows are returned. Any magnitude of values works:
    rows and centres outside ``[2**-20, 2**20]`` are rescaled together by a power of two
    before the float32 search (exact; not with a prebuilt ``knn_index``).

    Parameters
    ----------
    features : array-like of shape (n, d)
    centers : array-like of shape (b, d), ``b <= n``
    knn_index : {"auto", "exact", "ivf", "hnsw"} or KnnIndex, default "auto"
        Search over the rows, built once (see :func:`build_knn_index`); ``"auto"`` is
        exact while ``n * b <= KNN_EXACT_MAX_ROWS ** 2``. A prebuilt index must have
        been built on ``features`` as given here. With an approximate index a centre
        may get a row that is close but not the closest.
    use_gpu : "auto", bool, default "auto"
        Run the search on GPUs (``"auto"``: when faiss has any).

    Returns
    -------
    ndarray of shape (b,), int64
        Distinct row positions into ``features``; entry ``j`` serves centre ``j``.

    Raises
    ------
    ValueError
        Invalid arrays, different ``d``, or more centres than rows; invalid
        ``knn_index`` / ``use_gpu``.
    """
    f = check_features(features, "features")
    c = check_features(centers, "centers")
    if c.shape[1] != f.shape[1]:
        raise VlalInputError(f"centers has {c.shape[1]} columns but features has {f.shape[1]} (shapes {c.shape}, {f.shape})")
    n, b = f.shape[0], c.shape[0]
    if b > n:
        raise VlalInputError(f"cannot pick {b} distinct rows for {b} centers from {n} rows")
    return _nearest_to_centers(f, c, knn_index, use_gpu)


def _nearest_to_centers(f, c, knn_index="auto", use_gpu="auto") -> np.ndarray:
    """Kernel of :func:`nearest_to_centers` (``f`` (n, d), ``c`` (b, d) validated, ``b <= n``)."""
    n, b = f.shape[0], c.shape[0]
    k = 0 if isinstance(knn_index, _faiss.KnnIndex) else _magnitude_exponent(f, c)  # a prebuilt index has its own units
    x = _float32_rows(f, k)
    c = _float32_rows(c, k)
    index = _index_for(x, knn_index, use_gpu, b)
    taken = np.zeros(n, dtype=bool)
    out = np.full(b, -1, dtype=np.int64)
    pending = np.arange(b)
    m = min(n, 8)
    while pending.size:
        # Approximate indexes return -1 for what they cannot fill; KnnIndex redoes those
        # rows exactly, so this loop ends as the exact one does (m grows to n).
        dist, idx = index.search(c, m, rows=pending)
        deferred = []
        for row in np.argsort(dist[:, 0], kind="stable"):
            for j in idx[row]:
                if j >= 0 and not taken[j]:
                    taken[j] = True
                    out[pending[row]] = j
                    break
            else:
                deferred.append(pending[row])
        if deferred and m == n and len(deferred) == pending.size:  # nothing found in a full search
            raise VlalInputError("nearest_to_centers: the search over all rows found no row for the remaining "
                                 "centres (non-finite distances); check features and centers")
        pending = np.asarray(deferred, dtype=np.int64)
        m = min(n, m * 4)
    return out


# ---------------------------------------------------------------------------- baselines' scores


def margin(probs) -> np.ndarray:
    """Gap between the largest and the second largest class probability of each row.

    Margin sampling (Scheffer et al., IDA 2001) queries the smallest gaps first.

    Parameters
    ----------
    probs : array-like of shape (n, K)
        Class probabilities, any float dtype (see :func:`entropy`).

    Returns
    -------
    ndarray of shape (n,), float64
        ``P_(1) - P_(2)`` in ``[0, 1]``; with ``K = 1`` the second probability is taken as 0.

    Raises
    ------
    ValueError
        Invalid ``probs`` (see :func:`entropy`).
    """
    return _margin(check_probs(probs))


def _margin(p) -> np.ndarray:
    """Kernel of :func:`margin` (``p`` validated (n, K))."""
    n, n_classes = p.shape
    out = np.empty(n, dtype=np.float64)
    step = rows_per_chunk(n_classes)
    for s in range(0, n, step):
        block = np.asarray(p[s : s + step], dtype=np.float64)
        if n_classes == 1:
            out[s : s + block.shape[0]] = block[:, 0]
            continue
        top2 = np.partition(block, (n_classes - 2, n_classes - 1), axis=1)[:, -2:]
        out[s : s + block.shape[0]] = top2[:, 1] - top2[:, 0]
    return out


def least_confidence(probs) -> np.ndarray:
    """Least-confidence score ``1 - max_i P_i`` of each row (Lewis & Gale, SIGIR 1994).

    Parameters
    ----------
    probs : array-like of shape (n, K)
        Class probabilities, any float dtype (see :func:`entropy`).

    Returns
    -------
    ndarray of shape (n,), float64
        In ``[0, 1 - 1/K]``; higher = less confident.

    Raises
    ------
    ValueError
        Invalid ``probs`` (see :func:`entropy`).
    """
    return _least_confidence(check_probs(probs))


def _least_confidence(p) -> np.ndarray:
    """Kernel of :func:`least_confidence` (``p`` validated (n, K))."""
    out = np.empty(p.shape[0], dtype=np.float64)
    step = rows_per_chunk(p.shape[1])
    for s in range(0, p.shape[0], step):
        block = p[s : s + step]
        out[s : s + block.shape[0]] = 1.0 - np.asarray(block.max(axis=1), dtype=np.float64)
    return out


def zero_shot_probs(features, prototypes, temperature: float = 0.01) -> np.ndarray:
    """CLIP's class probabilities (paper Eq. 1): ``P(y=i|x) = softmax_i(cos(f(x), t_i) / T)``.

    Parameters
    ----------
    features : array-like of shape (m, d)
        Image features, any float dtype (normalised here to unit L2 norm, as float32).
    prototypes : array-like of shape (K, d)
        One embedding per class (text embeddings or class prototypes), normalised here.
    temperature : float, default 0.01
        ``T`` of Eq. 1 (CLIP's learned logit scale is 1 / 0.01 = 100), a finite real > 0 (not a
        bool). As ``T`` goes to 0 the rows become one-hot on the nearest prototype.

    Returns
    -------
    ndarray of shape (m, K), float32
        Rows sum to 1. Logits are computed in float32 (``z @ t^T``) and the softmax in
        float64, ``rows_per_chunk(K)`` rows at a time (K = 1000 classes -> 8,388 rows,
        64 MB of float64 per chunk).

    Raises
    ------
    ValueError
        Non-finite values or zero-norm rows, different ``d``, ``temperature`` not a finite
        real > 0.
    """
    x = l2_normalize(check_features(features, "features"), "features")
    w = l2_normalize(check_features(prototypes, "prototypes"), "prototypes")
    if x.shape[1] != w.shape[1]:
        raise VlalInputError(f"features has d={x.shape[1]} but prototypes has d={w.shape[1]}")
    temperature = check_temperature(temperature)
    return _zero_shot_probs(x, w, temperature)


def _zero_shot_probs(z: np.ndarray, t: np.ndarray, temperature: float, dtype=np.float32) -> np.ndarray:
    """Kernel of Eq. 1: ``softmax((z @ t^T) / T)`` row-chunked, ``dtype`` (float32) out.

    ``z`` (m, d) and ``t`` (K, d) are unit-norm rows; the product is taken in their dtype
    (float32 for :func:`zero_shot_probs`, float64 where a caller normalised in float64),
    then the division and the softmax run in float64.
    """
    from scipy.special import softmax

    out = np.empty((z.shape[0], t.shape[0]), dtype=dtype)
    step = rows_per_chunk(t.shape[0])
    for s in range(0, z.shape[0], step):
        logits = (z[s : s + step] @ t.T).astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            block = softmax(logits / temperature, axis=1)
        bad = ~np.isfinite(block).all(axis=1)
        if bad.any():  # a tiny T overflows logits / T: the same softmax, its row maximum taken out first
            shifted = logits[bad] - logits[bad].max(axis=1, keepdims=True)  # <= 0: / T gives -inf, never NaN
            with np.errstate(over="ignore"):
                block[bad] = softmax(shifted / temperature, axis=1)
        out[s : s + step] = block
    return out


# ---------------------------------------------------------------------------- k-centre (CoreSet, GCNAL)


def _sq_dist_to(x: np.ndarray, sq_norms: np.ndarray, j: int) -> np.ndarray:
    """Squared Euclidean distance of every row of ``x`` to row ``j``, chunked (never n x n)."""
    out = np.empty(x.shape[0], dtype=np.float64)
    xj = x[j]
    step = rows_per_chunk(x.shape[1])
    for s in range(0, x.shape[0], step):
        dot = np.asarray(x[s : s + step] @ xj, dtype=np.float64)
        out[s : s + dot.shape[0]] = sq_norms[s : s + dot.shape[0]] + sq_norms[j] - 2.0 * dot
    return np.maximum(out, 0.0)


def k_center_greedy(candidates, centers, budget: int, rng=None, *, return_distances: bool = False):
    """Greedy k-centre: repeatedly take the candidate farthest from its nearest centre.

    Every pick becomes a centre for the next one (Sener & Savarese, ICLR 2018). Memory is
    O(m) beyond the inputs: a running nearest-centre distance per candidate, updated with
    the distances to each new pick (chunked matrix-vector products), never an (m, m) or
    (m, l) matrix.

    Parameters
    ----------
    candidates : array-like of shape (m, d)
        Embeddings of the rows that may be picked (used as given, as float32: normalise
        beforehand if cosine geometry is wanted; candidates and centres whose largest |value|
        lies outside ``[2**-20, 2**20]`` are first rescaled together by a power of two, exactly,
        and the distances returned in the caller's units).
    centers : array-like of shape (l, d), or None
        Embeddings of the already labeled rows. ``None`` or ``l = 0``: the first pick is
        one uniform draw from ``rng``.
    budget : int
        Number of picks, ``1 <= budget <= m``.
    rng : None, int, numpy SeedSequence, Generator or RandomState
        Draws the first pick when there are no centres, and breaks ties in distance
        (several candidates equally far from their nearest centre).
    return_distances : bool, default False
        Also return the Euclidean distance of every candidate to its nearest centre:
        for a pick, at the moment it was picked (``inf`` for a first pick drawn with no
        centres); for the other candidates, after the last pick.

    Returns
    -------
    picks : ndarray of shape (budget,), int64
        Distinct row positions into ``candidates``, in pick order.
    distances : ndarray of shape (m,), float64
        Only with ``return_distances=True``; the picks hold the ``budget`` largest values.

    Raises
    ------
    ValueError
        Invalid arrays, different ``d``, ``budget`` not an int in ``[1, m]``.
    """
    x = check_features(candidates, "candidates")
    c = None
    if centers is not None:
        c = np.asarray(centers)
        if c.ndim != 2 or c.shape[1] != x.shape[1]:
            raise VlalInputError(f"centers must have shape (l, {x.shape[1]}); got {c.shape}")
        c = check_features(c, "centers") if c.shape[0] else c
    b = check_positive_int(budget, "budget")
    if b > x.shape[0]:
        raise VlalInputError(f"budget={b} exceeds the number of candidates ({x.shape[0]})")
    from ._validation import rng_from

    return _k_center_greedy(x, c, b, rng if isinstance(rng, np.random.Generator) else rng_from(rng),
                            return_distances=return_distances)


def _k_center_greedy(candidates: np.ndarray, centers: np.ndarray | None, budget: int, rng: np.random.Generator,
                     *, return_distances: bool = False):
    """Kernel of :func:`k_center_greedy` (validated arrays, a Generator)."""
    k = _magnitude_exponent(candidates, centers)
    x = _float32_rows(candidates, k)
    if k and centers is not None:
        centers = _float32_rows(centers, k)
    m = x.shape[0]
    sq = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    picks = np.empty(budget, dtype=np.int64)
    at_pick = np.empty(budget, dtype=np.float64)
    if centers is not None and centers.shape[0] > 0:
        min_d = _nearest_center_sq_dist(centers, x)
        start = 0
    else:
        picks[0] = int(rng.integers(m))
        at_pick[0] = np.inf
        min_d = _sq_dist_to(x, sq, picks[0])
        min_d[picks[0]] = -np.inf
        start = 1
    for t in range(start, budget):
        best = min_d.max()
        ties = np.flatnonzero(min_d == best)
        j = int(ties[0]) if ties.size == 1 else int(rng.choice(ties))
        picks[t] = j
        at_pick[t] = best
        np.minimum(min_d, _sq_dist_to(x, sq, j), out=min_d)
        min_d[j] = -np.inf  # never picked twice, even among identical rows
    if not return_distances:
        return picks
    min_d[picks] = at_pick
    return picks, np.ldexp(np.sqrt(min_d), -k)  # in the caller's units


# ---------------------------------------------------------------------------- BADGE (gradient embeddings)


def _gradient_residuals(probs) -> np.ndarray:
    """``r_x = P(x) - onehot(argmax P(x))`` for each row, float32 (n, K), chunked (BADGE)."""
    p = np.asarray(probs)
    n, n_classes = p.shape
    out = np.empty((n, n_classes), dtype=np.float32)
    step = rows_per_chunk(n_classes)
    for s in range(0, n, step):
        block = np.array(p[s : s + step], dtype=np.float64, copy=True)  # never the caller's rows (float64 input)
        block[np.arange(block.shape[0]), block.argmax(axis=1)] -= 1.0
        out[s : s + block.shape[0]] = block
    return out


def _grad_sq_dist_to(r: np.ndarray, h: np.ndarray, g_sq: np.ndarray, j: int) -> np.ndarray:
    """Squared distance of every gradient embedding ``g_x = r_x (outer) h_x`` to ``g_j``.

    Uses ``||g_x - g_j||^2 = ||g_x||^2 + ||g_j||^2 - 2 <r_x, r_j> <h_x, h_j>``, so the
    (n, K*d) embedding matrix is never built; rows are processed in chunks.

    Parameters
    ----------
    r : ndarray (n, K)
        Residuals ``P - onehot(argmax P)``.
    h : ndarray (n, d)
        Penultimate features (BADGE: normalised image features).
    g_sq : ndarray (n,), float64
        ``||g_x||^2 = ||r_x||^2 ||h_x||^2``.
    j : int
        Reference row.

    Returns
    -------
    ndarray (n,), float64, clipped at 0.
    """
    out = np.empty(r.shape[0], dtype=np.float64)
    rj, hj = r[j], h[j]
    step = rows_per_chunk(max(r.shape[1], h.shape[1]))
    for s in range(0, r.shape[0], step):
        rr = np.asarray(r[s : s + step] @ rj, dtype=np.float64)
        hh = np.asarray(h[s : s + step] @ hj, dtype=np.float64)
        e = s + rr.shape[0]
        out[s:e] = g_sq[s:e] + g_sq[j] - 2.0 * rr * hh
    return np.maximum(out, 0.0)


def _kmeanspp_seeding(
    r: np.ndarray, h: np.ndarray, budget: int, rng: np.random.Generator, *, return_norms: bool = False
):
    """k-means++ seeding over gradient embeddings (BADGE); the first seed is the largest-norm one.

    Several rows sharing the largest norm (within a relative ``1e-6``, e.g. every norm 0
    for one-hot predictions): the first seed is drawn uniformly among them with ``rng``.
    With ``return_norms`` the squared norms ``||g_x||^2`` (n,) float64 come back too.

    Later seeds are drawn with probability proportional to the squared distance to the
    nearest seed so far (chosen rows have probability 0). When every remaining row is at
    distance 0 (e.g. all predictions one-hot), the draw is uniform over the rows not yet
    chosen, so exactly ``budget`` distinct rows come back.
    """
    n = r.shape[0]
    g_sq = np.einsum("ij,ij->i", r, r, dtype=np.float64) * np.einsum("ij,ij->i", h, h, dtype=np.float64)
    chosen = np.zeros(n, dtype=bool)
    picks = np.empty(budget, dtype=np.int64)
    # as in the authors' code: start from the largest gradient; ties drawn with rng
    top = np.flatnonzero(g_sq >= g_sq.max() * (1.0 - 1e-6))
    j = int(top[0]) if top.size == 1 else int(rng.choice(top))
    picks[0] = j
    chosen[j] = True
    min_d = _grad_sq_dist_to(r, h, g_sq, j)
    for t in range(1, budget):
        w = np.where(chosen, 0.0, min_d)
        total = w.sum()
        if total > 0 and np.isfinite(total):
            cum = np.cumsum(w)
            j = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
            j = min(j, n - 1)
            if chosen[j] or w[j] <= 0:  # float edge case at the very end of cum
                j = int(np.flatnonzero(w > 0)[-1])
        else:
            j = int(rng.choice(np.flatnonzero(~chosen)))
        picks[t] = j
        chosen[j] = True
        np.minimum(min_d, _grad_sq_dist_to(r, h, g_sq, j), out=min_d)
    return (picks, g_sq) if return_norms else picks
