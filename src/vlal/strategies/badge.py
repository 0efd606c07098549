"""BADGE: k-means++ seeding on gradient embeddings (Ash et al., ICLR 2020)."""

from __future__ import annotations

import numpy as np

from .._validation import CHUNK_ROWS, l2_normalize
from .base import Pool, Strategy
from ._register import register

__all__ = ["BADGE"]


def _residuals(probs: np.ndarray) -> np.ndarray:
    """``r_x = P(x) - onehot(argmax P(x))`` for each row, float32 (n, K), chunked."""
    p = np.asarray(probs)
    n, k = p.shape
    out = np.empty((n, k), dtype=np.float32)
    for s in range(0, n, CHUNK_ROWS):
        block = np.asarray(p[s : s + CHUNK_ROWS], dtype=np.float64)
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
    for s in range(0, r.shape[0], CHUNK_ROWS):
        rr = np.asarray(r[s : s + CHUNK_ROWS] @ rj, dtype=np.float64)
        hh = np.asarray(h[s : s + CHUNK_ROWS] @ hj, dtype=np.float64)
        e = s + rr.shape[0]
        out[s:e] = g_sq[s:e] + g_sq[j] - 2.0 * rr * hh
    return np.maximum(out, 0.0)


def _kmeanspp_seeding(
    r: np.ndarray, h: np.ndarray, budget: int, rng: np.random.Generator, *, return_norms: bool = False
):
    """k-means++ seeding over gradient embeddings; the first seed is the largest-norm one.

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


@register("badge")
class BADGE(Strategy):
    """Batch Active learning by Diverse Gradient Embeddings.

    For each candidate, the gradient of the cross-entropy loss w.r.t. the last linear
    layer at the predicted label is ``g_x = (P(x) - onehot(argmax P(x))) (outer) h_x``,
    with ``h_x`` the L2-normalised image feature (for CLIP the class embeddings act on
    ``h_x``). ``budget`` candidates are then chosen by k-means++ seeding over ``g``: the
    first is the largest ``||g_x||`` (as in the authors' code), each next one is drawn
    (seeded) with probability proportional to its squared distance to the nearest pick.
    Distances use ``<g_x, g_y> = <r_x, r_y> <h_x, h_y>`` and are kept as a running
    minimum vector of length ``n_candidates``; the (n, K*d) matrix is never built.
    Uses no labels, so it works in round 1.

    Utilities (``select(..., return_utilities=True)``): ``||g_x||^2 = ||r_x||^2 ||h_x||^2``,
    the squared norm of each candidate's gradient embedding (how much the loss at the
    predicted class could change). The first pick has the largest (ties drawn with the
    seed); the others are drawn by distance, so they are not the top utilities.

    Parameters
    ----------
    random_state : None, int, numpy Generator or RandomState
        Seeds the k-means++ draws and breaks ties of the first pick.

    Notes
    -----
    Cost: ``O(budget * n * (K + d))`` time, ``O(n * (K + d))`` float32 memory.

    References
    ----------
    J. T. Ash, C. Zhang, A. Krishnamurthy, J. Langford and A. Agarwal, "Deep Batch Active
    Learning by Diverse, Uncertain Gradient Lower Bounds", ICLR 2020.
    """

    def _query(self, pool: Pool, budget: int, rng: np.random.Generator) -> np.ndarray:
        cand = pool.candidates
        h = l2_normalize(pool.features[cand], "features")
        r = _residuals(pool.probs[cand])
        picks, g_sq = _kmeanspp_seeding(r, h, budget, rng, return_norms=True)
        return cand[picks], g_sq
