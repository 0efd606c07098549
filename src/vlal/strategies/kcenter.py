"""The k-centre template: an embedding, then greedy k-centre selection (CoreSet, GCNAL)."""

from __future__ import annotations

import abc

import numpy as np

from .._validation import check_hook_output
from ..scoring import _k_center_greedy
from .base import Pool, Strategy

__all__ = ["KCenterStrategy"]


class KCenterStrategy(Strategy):
    """Template of the k-centre strategies: embed, then greedy k-centre.

    :meth:`_embedding` returns the embeddings of the candidates (m, e) and of the labeled
    rows (l, e) (or None with nothing labeled); :func:`vlal.scoring.k_center_greedy` then
    repeatedly takes the candidate farthest from its nearest labeled row or earlier pick
    (the first pick one seeded uniform draw when there is no labeled row). A NaN or inf in
    an embedding raises ``VlalInputError`` (a distance to it could not be ranked).

    Utilities (``select(..., return_utilities=True)``): Euclidean distance in the
    embedding of each candidate to its nearest labeled row or earlier pick: for a pick,
    when it was picked (``inf`` for a first pick drawn with nothing labeled); for the
    others, after the last pick.
    """

    @abc.abstractmethod
    def _embedding(self, pool: Pool, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
        """``(candidates (m, e), labeled (l, e) or None)``, rows aligned with
        ``pool.candidates`` and ``pool.labeled``."""

    def _query(self, pool: Pool, budget: int, rng: np.random.Generator):
        emb, centers = self._embedding(pool, rng)
        emb = check_hook_output(emb, pool.candidates.size, self, "_embedding", ndim=2)
        if centers is not None:
            centers = check_hook_output(centers, pool.labeled.size, self, "_embedding", ndim=2)
        picks, dist = _k_center_greedy(emb, centers, budget, rng, return_distances=True)
        return pool.candidates[picks], dist
