"""Uniform random sampling."""

from __future__ import annotations

import numpy as np

from .base import Pool, Strategy

__all__ = ["Random"]


class Random(Strategy):
    """``budget`` uniform draws without replacement from the unlabeled pool.

    Parameters
    ----------
    random_state : int, numpy Generator or None
    """

    def _query(self, pool: Pool, budget: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(pool.candidates, size=budget, replace=False)
