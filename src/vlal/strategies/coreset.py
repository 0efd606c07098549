"""CoreSet: greedy k-centre selection (Sener & Savarese, ICLR 2018)."""

from __future__ import annotations

import numpy as np

from .._validation import l2_normalize
from ..scoring import k_center_greedy  # noqa: F401  (its home before issue 10)
from .base import Pool
from .kcenter import KCenterStrategy
from ._register import register

__all__ = ["CoreSet", "k_center_greedy"]


@register("coreset")
class CoreSet(KCenterStrategy):
    """Greedy k-centre CoreSet on L2-normalised features.

    Repeatedly takes the candidate farthest (Euclidean, on ``z = f / ||f||``) from its
    nearest labeled-or-already-selected row. With nothing labeled, the first pick is one
    seeded uniform draw, so the strategy also works in round 1 (it uses no labels).
    Initial distances to the labeled set come from an exact faiss search; then a running
    minimum-distance vector of length ``n_candidates`` is updated per pick.

    Utilities (``select(..., return_utilities=True)``): Euclidean distance (normalised
    features) of each candidate to its nearest labeled row or earlier pick: for a pick,
    when it was picked (``inf`` for a first pick drawn with nothing labeled); for the
    others, after the last pick. The picks hold the ``budget`` largest utilities.

    Parameters
    ----------
    random_state : None, int, numpy Generator or RandomState
        Seeds the first pick when nothing is labeled and breaks ties in distance.

    Notes
    -----
    Cost: ``O(budget * n * d)`` time, ``O(n * d)`` memory (one float32 copy of the
    normalised candidate features).

    References
    ----------
    O. Sener and S. Savarese, "Active Learning for Convolutional Neural Networks:
    A Core-Set Approach", ICLR 2018.
    """

    def _embedding(self, pool: Pool, rng: np.random.Generator):
        z = l2_normalize(pool.features[pool.candidates], "features")
        centers = l2_normalize(pool.features[pool.labeled], "features") if pool.labeled.size else None
        return z, centers
