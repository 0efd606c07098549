"""The paper's equations as small, pure, composable functions.

Each function implements one step of CEC (Safaei & Patel, "Active Learning for
Vision-Language Models", WACV 2025); equation numbers refer to that paper. None
of them modifies its inputs. Large inputs are processed in row chunks so that
float16 or memory-mapped arrays are never copied whole to float64.
"""

from __future__ import annotations

import warnings

import numpy as np

from . import _faiss
from ._validation import (
    CHUNK_ROWS,
    check_features,
    check_positive_int,
    check_probs,
    l2_normalize,
    seed_int,
)
from .exceptions import VlalInputError

__all__ = [
    "entropy",
    "contextual_prior",
    "calibrate",
    "calibrated_entropy",
    "neighbor_uncertainty",
    "weighted_kmeans",
    "nearest_to_centers",
]


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
    for s in range(0, p.shape[0], CHUNK_ROWS):
        out[s : s + CHUNK_ROWS] = _entropy_block(p[s : s + CHUNK_ROWS])
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
    n_top = min(check_positive_int(top_n, "top_n"), p.shape[0])
    # Keep a running top-N per class across chunks: memory O(N*K + chunk*K).
    best = None
    for s in range(0, p.shape[0], CHUNK_ROWS):
        block = np.asarray(p[s : s + CHUNK_ROWS], dtype=np.float64)
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
    """
    p = check_probs(probs)
    q = contextual_prior(p, top_n)
    out = np.empty(p.shape[0], dtype=np.float64)
    for s in range(0, p.shape[0], CHUNK_ROWS):
        block = np.asarray(p[s : s + CHUNK_ROWS], dtype=np.float64)
        out[s : s + CHUNK_ROWS] = _entropy_block(_calibrate_block(block, q))
    return out


def neighbor_uncertainty(features, scores, k: int = 20, alpha: float = 0.1) -> np.ndarray:
    """Neighbour uncertainty ``H_NN`` (paper Eq. 6).

    ``H_NN(x) = (1/k) sum_{x_i in kNN(x)} exp(-alpha ||z_x - z_i||^2) H^(x_i)``, where
    ``z = f / ||f||`` and kNN are the ``k`` nearest *other* rows by Euclidean distance
    on the normalised features (faiss exact search; the row itself is excluded, also
    when identical rows exist).

    Parameters
    ----------
    features : array-like of shape (n, d)
        Image features of the candidate pool; normalised to unit L2 norm internally.
    scores : array-like of shape (n,)
        Per-row uncertainty ``H^`` (e.g. :func:`calibrated_entropy`).
    k : int, default 20
        Number of neighbours. If ``k >= n`` it is reduced to ``n - 1`` with a
        ``UserWarning``; with ``n = 1`` the result is ``[0.0]``.
    alpha : float, default 0.1
        Similarity bandwidth (>= 0), in units of 1 / squared distance.

    Returns
    -------
    ndarray of shape (n,), float64

    Raises
    ------
    ValueError
        Invalid ``features``; ``scores`` of the wrong shape or not finite;
        ``k`` not a positive int; ``alpha`` negative or not finite.
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
        warnings.warn(f"k={k} >= number of candidates ({n}); using k={n - 1}", UserWarning, stacklevel=2)
        k = n - 1
    z = l2_normalize(f, "features")
    out = np.empty(n, dtype=np.float64)
    # Search k+1 and drop the row itself (or, when identical rows hide it, the farthest hit).
    for s in range(0, n, CHUNK_ROWS):
        q = z[s : s + CHUNK_ROWS]
        dist, idx = _faiss.knn_search(z, q, k + 1)
        own = idx == np.arange(s, s + q.shape[0])[:, None]
        drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
        keep = np.ones_like(own)
        keep[np.arange(q.shape[0]), drop] = False
        d = dist[keep].reshape(q.shape[0], k).astype(np.float64)
        nb = idx[keep].reshape(q.shape[0], k)
        out[s : s + q.shape[0]] = (np.exp(-alpha * d) * h[nb]).sum(axis=1) / k
    return out


def weighted_kmeans(
    features,
    weights=None,
    n_clusters: int = 8,
    random_state=None,
    n_iter: int = 20,
) -> tuple[np.ndarray, np.ndarray]:
    """Uncertainty-weighted K-Means (paper Sec. 4.3; weighted K-Means as in Kerdprasop et al. [19]).

    Lloyd's algorithm (faiss) where each row counts with its weight when centres
    are recomputed. Features are clustered as given (CEC passes normalised ones).

    Parameters
    ----------
    features : array-like of shape (n, d)
        Rows to cluster.
    weights : array-like of shape (n,), optional
        Non-negative sample weights, e.g. ``U(x)`` of Eq. 7. ``None`` or all zeros
        -> equal weights (documented fallback).
    n_clusters : int
        Number of clusters ``b``, ``1 <= b <= n``.
    random_state : int, numpy Generator or None
        Seed of the centre initialisation.
    n_iter : int, default 20
        Lloyd iterations.

    Returns
    -------
    centers : ndarray of shape (n_clusters, d), float32
    assignments : ndarray of shape (n,), int64
        Index of each row's nearest centre.

    Raises
    ------
    ValueError
        Invalid ``features``; ``weights`` of the wrong shape, not finite or negative;
        ``n_clusters`` not an int in ``[1, n]``.
    """
    f = check_features(features, "features")
    n = f.shape[0]
    b = check_positive_int(n_clusters, "n_clusters")
    if b > n:
        raise VlalInputError(f"n_clusters={b} exceeds the number of rows ({n})")
    n_iter = check_positive_int(n_iter, "n_iter")
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
    x = np.ascontiguousarray(f, dtype=np.float32)
    if b == n:
        centers = x.copy()
    else:
        centers = _faiss.kmeans(x, b, w, seed_int(random_state), n_iter)
    _, assign = _faiss.knn_search(centers, x, 1)
    return centers, assign[:, 0]


def nearest_to_centers(features, centers) -> np.ndarray:
    """For each centre, the closest row not already taken (paper Sec. 4.4).

    Centres are served in order of their nearest distance (closest first); a centre
    whose nearest rows are taken (duplicates, empty clusters) gets the next closest,
    so exactly ``len(centers)`` distinct rows are returned.

    Parameters
    ----------
    features : array-like of shape (n, d)
    centers : array-like of shape (b, d), ``b <= n``

    Returns
    -------
    ndarray of shape (b,), int64
        Distinct row positions into ``features``; entry ``j`` serves centre ``j``.

    Raises
    ------
    ValueError
        Invalid arrays, different ``d``, or more centres than rows.
    """
    f = check_features(features, "features")
    c = check_features(centers, "centers")
    if c.shape[1] != f.shape[1]:
        raise VlalInputError(f"centers has {c.shape[1]} columns but features has {f.shape[1]} (shapes {c.shape}, {f.shape})")
    n, b = f.shape[0], c.shape[0]
    if b > n:
        raise VlalInputError(f"cannot pick {b} distinct rows for {b} centers from {n} rows")
    x = np.ascontiguousarray(f, dtype=np.float32)
    taken = np.zeros(n, dtype=bool)
    out = np.full(b, -1, dtype=np.int64)
    pending = np.arange(b)
    m = min(n, 8)
    while pending.size:
        dist, idx = _faiss.knn_search(x, c[pending], m)
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
