"""Uniform random sampling."""

from __future__ import annotations

import numpy as np

from .base import Pool, Strategy
from ._register import register

__all__ = ["Random"]


@register("random")
class Random(Strategy):
    """``budget`` uniform draws without replacement from the candidates.

    Utilities: 0.0 for every candidate (no candidate is preferred).

    Parameters
    ----------
    random_state : None, int, numpy Generator or RandomState
    """

    def _query(self, pool: Pool, budget: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(pool.candidates, size=budget, replace=False)
