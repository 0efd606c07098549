"""Least-confidence sampling: the smallest maximum class probability first."""

from __future__ import annotations

import numpy as np

from ..scoring import _least_confidence
from .uncertainty import UncertaintyStrategy
from ._register import register

__all__ = ["LeastConfidence"]


@register("leastconf")
class LeastConfidence(UncertaintyStrategy):
    """The ``budget`` candidates whose most likely class is least probable.

    ``score = 1 - max_i P_i`` (float64, in ``[0, 1 - 1/K]``); higher = more informative.
    Ties are broken at random (seeded). Utilities: that ``score`` per candidate.

    Parameters
    ----------
    random_state : None, int, numpy Generator or RandomState
        Only breaks ties.

    References
    ----------
    D. D. Lewis and W. A. Gale, "A Sequential Algorithm for Training Text Classifiers",
    SIGIR 1994.
    """

    def score(self, probs: np.ndarray) -> np.ndarray:
        return _least_confidence(np.asarray(probs))
