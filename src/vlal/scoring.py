"""The paper's equations as small, pure, composable functions.

Each function implements one step of CEC (Safaei & Patel, "Active Learning for
Vision-Language Models", WACV 2025); equation numbers refer to that paper. None
of them modifies its inputs. Large inputs are processed in row chunks so that
float16 or memory-mapped arrays are never copied whole to float64.
"""

from __future__ import annotations


import numpy as np

from . import _faiss
from ._validation import (
    check_features,
    check_positive_int,
    check_probs,
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
    # -0.0 for one-hot rows is returned as +0.0
    return np.maximum(-plogp.sum(axis=1), 0.0)


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
    p = check_probs(probs)
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
    from; its ratio is defined as 0 (documented fallback). A row whose ratios all
    vanish is left as it was.

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
        Invalid ``probs``; ``prior`` not 1-D of length K, not finite, or negative.
    """
    p = check_probs(probs)
    q = np.asarray(prior, dtype=np.float64)
    if q.ndim != 1 or q.shape[0] != p.shape[1]:
        raise VlalInputError(f"prior must have shape ({p.shape[1]},) to match probs {p.shape}; got {q.shape}")
    if not np.isfinite(q).all() or (q < 0).any():
        raise VlalInputError("prior must be finite and non-negative")
    return _calibrate_block(np.asarray(p, dtype=np.float64), q)


def _calibrate_block(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    inv_q = np.divide(1.0, q, out=np.zeros_like(q), where=q > 0)
    ratio = p * inv_q
    total = ratio.sum(axis=1, keepdims=True)
    good = total[:, 0] > 0
    out = p.copy()
    out[good] = ratio[good] / total[good]
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
    q = _contextual_prior(p, check_positive_int(top_n, "top_n"))
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
    if knn_index not in KNN_INDEXES:
        raise VlalInputError(f"knn_index must be one of {KNN_INDEXES} or a KnnIndex; got {knn_index!r}")
    try:
        return _faiss.KnnIndex(f, knn_index, n_queries=n_queries, use_gpu=use_gpu)
    except ValueError as exc:
        raise VlalInputError(str(exc)) from None


def _index_for(z: np.ndarray, knn_index, use_gpu, n_queries: int):
    if isinstance(knn_index, _faiss.KnnIndex):
        if knn_index.n != z.shape[0] or knn_index.d != z.shape[1]:
            raise VlalInputError(
                f"knn_index was built on {knn_index.n} rows of dimension {knn_index.d}, "
                f"but features has shape {z.shape}"
            )
        return knn_index
    return build_knn_index(z, knn_index, n_queries=n_queries, use_gpu=use_gpu)


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
    h = np.asarray(scores, dtype=np.float64)
    if h.ndim != 1 or h.shape[0] != f.shape[0]:
        raise VlalInputError(f"scores must have shape ({f.shape[0]},) to match features {f.shape}; got {h.shape}")
    if not np.isfinite(h).all():
        raise VlalInputError(f"scores contains NaN or inf (first bad row: {int(np.flatnonzero(~np.isfinite(h))[0])})")
    k = check_positive_int(k, "k")
    alpha = float(alpha)
    if not np.isfinite(alpha) or alpha < 0:
        raise VlalInputError(f"alpha must be a finite number >= 0; got {alpha}")
    n = f.shape[0]
    if n == 1:
        return np.zeros(1, dtype=np.float64)
    if k >= n:
        warn_caller(f"k={k} >= number of candidates ({n}); using k={n - 1}", UserWarning)
        k = n - 1
    z = l2_normalize(f, "features", copy=False)
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
    its own neighbour. The one place of the self-exclusion rule (in-memory and streamed CEC).
    """
    m = rows.shape[0]
    own = idx == rows[:, None]
    drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
    keep = np.ones_like(own)
    keep[np.arange(m), drop] = False
    d = dist[keep].reshape(m, k).astype(np.float64)
    nb = idx[keep].reshape(m, k)
    return (np.exp(-alpha * d) * h[nb]).sum(axis=1) / k


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
    clustered as given (CEC passes normalised ones).

    Parameters
    ----------
    features : array-like of shape (n, d)
        Rows to cluster (float16 / memory-mapped inputs are converted to one float32 copy).
    weights : array-like of shape (n,), optional
        Non-negative sample weights, e.g. ``U(x)`` of Eq. 7. ``None`` or all zeros
        -> equal weights (documented fallback).
    n_clusters : int
        Number of clusters ``b``, ``1 <= b <= n``.
    random_state : int, numpy Generator or None
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
        ``n_clusters`` not an int in ``[1, n]``; invalid ``kmeans_mode`` / ``use_gpu``.
    """
    f = check_features(features, "features")
    n = f.shape[0]
    b = check_positive_int(n_clusters, "n_clusters")
    if b > n:
        raise VlalInputError(f"n_clusters={b} exceeds the number of rows ({n})")
    n_iter = check_positive_int(n_iter, "n_iter")
    if kmeans_mode not in KMEANS_MODES:
        raise VlalInputError(f"kmeans_mode must be one of {KMEANS_MODES}; got {kmeans_mode!r}")
    try:
        gpu = _faiss.resolve_use_gpu(use_gpu)
    except ValueError as exc:
        raise VlalInputError(str(exc)) from None
    w = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or w.shape[0] != n:
            raise VlalInputError(f"weights must have shape ({n},) to match features {f.shape}; got {w.shape}")
        if not np.isfinite(w).all():
            raise VlalInputError(f"weights contains NaN or inf (first bad row: {int(np.flatnonzero(~np.isfinite(w))[0])})")
        if (w < 0).any():
            raise VlalInputError(f"weights must be non-negative (first bad row: {int(np.flatnonzero(w < 0)[0])})")
        if not (w > 0).any():
            w = None  # all zero: equal weights
        else:
            w = w / w.max()  # scale-free; keeps float32 accumulation well conditioned
    mode = resolve_kmeans_mode(kmeans_mode, n, b, gpu)
    x = np.ascontiguousarray(f, dtype=np.float32)
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
    so exactly ``len(centers)`` distinct rows are returned.

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
    x = np.ascontiguousarray(f, dtype=np.float32)
    c = np.ascontiguousarray(c, dtype=np.float32)
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
        pending = np.asarray(deferred, dtype=np.int64)
        m = min(n, m * 4)
    return out
