"""Typed exceptions raised by vlal.

All of them subclass :class:`ValueError`, so ``except ValueError`` keeps working
for callers who do not care about the specific kind.
"""

from __future__ import annotations

__all__ = ["VlalInputError", "BudgetExceededError", "WeightsNotFoundError"]


class VlalInputError(ValueError):
    """An argument has the wrong shape, dtype or values (the message names it)."""


class BudgetExceededError(VlalInputError):
    """The query budget is larger than the number of unlabeled (candidate) rows.

    Attributes
    ----------
    budget : int
        The requested number of samples.
    n_candidates : int
        How many unlabeled rows the pool still has.
    """

    def __init__(self, budget: int, n_candidates: int, *, restricted: bool = False):
        self.budget = int(budget)
        self.n_candidates = int(n_candidates)
        if restricted:  # the caller passed ``candidates``
            msg = (f"budget={self.budget} exceeds the number of candidates ({self.n_candidates}, unlabeled "
                   "rows among candidates); lower the budget or pass more candidates")
        elif self.n_candidates == 0:
            msg = f"budget={self.budget}, but every row of the pool is labeled: there is nothing left to query"
        else:
            msg = (f"budget={self.budget} exceeds the number of unlabeled rows in the pool "
                   f"({self.n_candidates}); lower the budget")
        super().__init__(msg)


class WeightsNotFoundError(FileNotFoundError):
    """CLIP weights are not available locally (no network is used to fetch them)."""
