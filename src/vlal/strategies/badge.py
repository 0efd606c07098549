"""BADGE: k-means++ seeding on gradient embeddings (Ash et al., ICLR 2020)."""

from __future__ import annotations

import numpy as np

from .._validation import l2_normalize
from ..scoring import _grad_sq_dist_to, _gradient_residuals, _kmeanspp_seeding
from .base import Pool, Strategy
from ._register import register

__all__ = ["BADGE"]

_residuals = _gradient_residuals  # the name used before issue 10 (tests import it)


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
        r = _gradient_residuals(pool.probs[cand])
        picks, g_sq = _kmeanspp_seeding(r, h, budget, rng, return_norms=True)
        return cand[picks], g_sq
