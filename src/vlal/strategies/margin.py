"""Margin sampling: the smallest gap between the two most likely classes first."""

from __future__ import annotations

import numpy as np

from ..scoring import _margin, margin
from .uncertainty import UncertaintyStrategy
from ._register import register

__all__ = ["Margin", "margin"]


@register("margin")
class Margin(UncertaintyStrategy):
    """The ``budget`` candidates with the smallest top-1 minus top-2 probability gap.

    ``score = 1 - (P_(1) - P_(2))``, so higher = more informative (see :func:`margin`).
    Ties are broken at random (seeded). Utilities: that ``score`` per candidate.

    Parameters
    ----------
    random_state : None, int, numpy Generator or RandomState
        Only breaks ties.

    References
    ----------
    T. Scheffer, C. Decomain and S. Wrobel, "Active Hidden Markov Models for Information
    Extraction", IDA 2001.
    """

    def score(self, probs: np.ndarray) -> np.ndarray:
        return 1.0 - _margin(probs)
