"""CoreSet: greedy k-centre selection (Sener & Savarese, ICLR 2018)."""

from __future__ import annotations

import numpy as np

from .. import _faiss
from .._validation import CHUNK_ROWS, l2_normalize
from .base import Pool, Strategy
from ._register import register

__all__ = ["CoreSet", "k_center_greedy"]


def _sq_dist_to(x: np.ndarray, sq_norms: np.ndarray, j: int) -> np.ndarray:
    """Squared Euclidean distance of every row of ``x`` to row ``j``, chunked (never n x n)."""
    out = np.empty(x.shape[0], dtype=np.float64)
    xj = x[j]
    for s in range(0, x.shape[0], CHUNK_ROWS):
        dot = np.asarray(x[s : s + CHUNK_ROWS] @ xj, dtype=np.float64)
        out[s : s + dot.shape[0]] = sq_norms[s : s + dot.shape[0]] + sq_norms[j] - 2.0 * dot
    return np.maximum(out, 0.0)


def k_center_greedy(
    candidates: np.ndarray,
    centers: np.ndarray | None,
    budget: int,
    rng: np.random.Generator,
    *,
    return_distances: bool = False,
):
    """Greedy k-centre: repeatedly take the candidate farthest from its nearest centre.

    Every pick becomes a centre for the next one. Memory is O(m) beyond the inputs:
    a running nearest-centre distance per candidate, updated with the distances to
    each new pick (chunked matrix-vector products), never an (m, m) or (m, l) matrix.

    Parameters
    ----------
    candidates : ndarray of shape (m, d), float32
        Embeddings of the rows that may be picked (used as given: normalise beforehand
        if cosine geometry is wanted).
    centers : ndarray of shape (l, d), float32, or None
        Embeddings of the already labeled rows. ``None`` or ``l = 0``: the first pick is
        one uniform draw from ``rng``.
    budget : int
        Number of picks, ``1 <= budget <= m``.
    rng : numpy Generator
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
    """
    x = np.ascontiguousarray(candidates, dtype=np.float32)
    m = x.shape[0]
    sq = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    picks = np.empty(budget, dtype=np.int64)
    at_pick = np.empty(budget, dtype=np.float64)
    if centers is not None and centers.shape[0] > 0:
        dist, _ = _faiss.knn_search(centers, x, 1)
        min_d = np.maximum(dist[:, 0].astype(np.float64), 0.0)
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
    return picks, np.sqrt(min_d)


@register("coreset")
class CoreSet(Strategy):
    """Greedy k-centre CoreSet on L2-normalised features.

    Repeatedly takes the candidate farthest (Euclidean, on ``z = f / ||f||``) from its
    nearest labeled-or-already-selected row. With nothing labeled, the first pick is one
    seeded uniform draw, so the strategy also works in round 1 (it uses no labels).
    Initial distances to the labeled set come from an exact faiss search; then a running
    minimum-distance vector of length ``n_candidates`` is updated per pick.

    Parameters
    ----------
    random_state : None, int, numpy Generator or RandomState
        Seeds the first pick when nothing is labeled and breaks ties in distance.

    Utilities (``select(..., return_utilities=True)``): Euclidean distance (normalised
    features) of each candidate to its nearest labeled row or earlier pick: for a pick,
    when it was picked (``inf`` for a first pick drawn with nothing labeled); for the
    others, after the last pick. The picks hold the ``budget`` largest utilities.

    Notes
    -----
    Cost: ``O(budget * n * d)`` time, ``O(n * d)`` memory (one float32 copy of the
    normalised candidate features).

    References
    ----------
    O. Sener and S. Savarese, "Active Learning for Convolutional Neural Networks:
    A Core-Set Approach", ICLR 2018.
    """

    def _query(self, pool: Pool, budget: int, rng: np.random.Generator) -> np.ndarray:
        cand = pool.candidates
        z = l2_normalize(pool.features[cand], "features")
        centers = l2_normalize(pool.features[pool.labeled], "features") if pool.labeled.size else None
        picks, dist = k_center_greedy(z, centers, budget, rng, return_distances=True)
        return cand[picks], dist
