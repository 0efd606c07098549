"""Top-b uncertainty sampling: the template for score-based strategies."""

from __future__ import annotations

import abc

import numpy as np

from .._validation import check_hook_output
from ..scoring import _entropy
from .base import Pool, Strategy
from ._register import register

__all__ = ["UncertaintyStrategy", "Entropy"]


class UncertaintyStrategy(Strategy):
    """Takes the ``budget`` candidates with the highest :meth:`score`.

    Subclasses implement only ``score(probs) -> (n,)`` (``probs`` already validated by
    :meth:`select`). Ties are broken at random (seeded), so identical scores do not favour
    low indices; a NaN or inf score raises ``VlalInputError`` (never silently ranked).

    Utilities (``select(..., return_utilities=True)``): the score of every candidate;
    the picks are the ``budget`` largest.
    """

    @abc.abstractmethod
    def score(self, probs: np.ndarray) -> np.ndarray:
        """Uncertainty of each row of ``probs`` (n, K); higher = more informative."""

    def _query(self, pool: Pool, budget: int, rng: np.random.Generator) -> np.ndarray:
        cand = pool.candidates
        scores = check_hook_output(self.score(pool.probs[cand]), cand.size, self, "score")
        tiebreak = rng.random(cand.size)
        order = np.lexsort((tiebreak, -scores))
        return cand[order[:budget]], scores


@register("entropy")
class Entropy(UncertaintyStrategy):
    """The ``budget`` candidates of largest (uncalibrated) entropy, Eq. 2 (Shannon [48]).

    Utilities: the entropy ``H(x)`` in nats (higher = more uncertain).

    Parameters
    ----------
    random_state : None, int, numpy Generator or RandomState
        Only breaks ties.
    """

    def score(self, probs: np.ndarray) -> np.ndarray:
        return _entropy(np.asarray(probs))
