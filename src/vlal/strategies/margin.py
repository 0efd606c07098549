"""Margin sampling: the smallest gap between the two most likely classes first."""

from __future__ import annotations

import numpy as np

from .._validation import CHUNK_ROWS
from .uncertainty import UncertaintyStrategy
from ._register import register

__all__ = ["Margin", "margin"]


def margin(probs) -> np.ndarray:
    """Gap between the largest and the second largest class probability of each row.

    Parameters
    ----------
    probs : array-like of shape (n, K)
        Class probabilities (validated by the caller), any float dtype.

    Returns
    -------
    ndarray of shape (n,), float64
        ``P_(1) - P_(2)`` in ``[0, 1]``; with ``K = 1`` the second probability is taken as 0.
    """
    p = np.asarray(probs)
    n, k = p.shape
    out = np.empty(n, dtype=np.float64)
    for s in range(0, n, CHUNK_ROWS):
        block = np.asarray(p[s : s + CHUNK_ROWS], dtype=np.float64)
        if k == 1:
            out[s : s + block.shape[0]] = block[:, 0]
            continue
        top2 = np.partition(block, (k - 2, k - 1), axis=1)[:, -2:]
        out[s : s + block.shape[0]] = top2[:, 1] - top2[:, 0]
    return out


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
        return 1.0 - margin(probs)
