"""PCB: class-balanced selection around any base strategy (Bang et al., CVPR 2024)."""

from __future__ import annotations

import copy
import math
import numbers

import numpy as np

from .._validation import check_param
from ..exceptions import VlalInputError
from .base import Pool, Strategy
from ._register import register

__all__ = ["PCB"]


def balanced_picks(proposal_classes: np.ndarray, counts: np.ndarray, budget: int) -> np.ndarray:
    """Pick ``budget`` proposals one by one, always serving the least-labeled class.

    Each step takes, among the classes that still have proposals, the one with the fewest
    labels so far (``counts``, updated with the predicted class of every pick; ties go to
    the lowest class index) and the first remaining proposal predicted as that class.
    A class with no proposal left is skipped rather than served with an arbitrary
    proposal, so the picks keep balancing the classes the proposals cover.

    Parameters
    ----------
    proposal_classes : ndarray (m,), int
        Predicted class of each proposal, in the base strategy's proposal order.
    counts : ndarray (K,), int
        Labels per class so far (not modified).
    budget : int
        ``1 <= budget <= m``.

    Returns
    -------
    ndarray (budget,), int64
        Distinct positions into ``proposal_classes``, in pick order.
    """
    counts = np.array(counts, dtype=np.int64, copy=True)
    n_classes = counts.size
    queues = [list(np.flatnonzero(proposal_classes == c)[::-1]) for c in range(n_classes)]  # pop() = first
    left = np.array([len(q) for q in queues], dtype=np.int64)
    picks = np.empty(budget, dtype=np.int64)
    for t in range(budget):
        c = int(np.argmin(np.where(left > 0, counts, np.iinfo(np.int64).max)))
        picks[t] = queues[c].pop()
        left[c] -= 1
        counts[c] += 1
    return picks


@register("pcb", wrapper=True)
class PCB(Strategy):
    """PCB: a class-balancing wrapper around any base strategy.

    1. The base strategy proposes ``max(budget, ceil(gamma * n_candidates))`` candidates
       (capped at ``n_candidates``), with its own ``select`` (so its validation and its
       round-1 random fallback apply).
    2. ``budget`` of them are picked one by one: each time the class with the fewest labels
       so far (true labels of the labeled set + predicted labels, ``argmax probs``, of the
       picks so far; ties -> lowest class index), among the classes that still have
       proposals, is served with the first proposal, in the base's order, predicted as that
       class. (method.md's fallback "any remaining candidate" would serve a class with no
       proposals by the base's order forever; skipping it keeps the balancing going.)

    Works with nothing labeled (all counts start at 0). Labeled rows given without
    ``labels`` are an error (the counts need them), and every label must be a column of
    ``probs`` (see :func:`vlal.align_probs`).

    Utilities (``select(..., return_utilities=True)``): those of the base strategy.

    Parameters
    ----------
    base_strategy : Strategy
        Proposes the candidates. Never modified (when ``random_state`` is set, a shallow
        copy carrying it is queried).
    gamma : float, default 0.1
        Proposal fraction of the candidate pool, in ``(0, 1]``.
    random_state : None, int, numpy Generator or RandomState
        When not None it is passed on to (the copy of) the base strategy, replacing the
        base's own ``random_state``; PCB itself draws nothing.

    Raises
    ------
    ValueError
        (from :meth:`select`) ``base_strategy`` is not a :class:`Strategy`, or ``gamma``
        is outside ``(0, 1]``.

    References
    ----------
    J. Bang, S. Ahn and J.-G. Lee, "Active Prompt Learning in Vision Language Models",
    CVPR 2024.
    """

    reads_labels = True

    def __init__(self, base_strategy: Strategy, gamma: float = 0.1, *, random_state=None):
        self.base_strategy = base_strategy
        self.gamma = gamma
        self.random_state = random_state

    def _check_params(self) -> None:
        if not isinstance(self.base_strategy, Strategy):
            raise VlalInputError(f"base_strategy must be a vlal Strategy; got {type(self.base_strategy).__name__}")
        check_param(self.gamma, "gamma", numbers.Real, min_val=0, max_val=1, include_boundaries="right")
        self.base_strategy._validate_params()

    def check_dependencies(self) -> None:
        self.base_strategy.check_dependencies()

    def n_proposals(self, budget: int, n_candidates: int) -> int:
        """``min(n_candidates, max(budget, ceil(gamma * n_candidates)))``."""
        return min(n_candidates, max(budget, math.ceil(float(self.gamma) * n_candidates)))

    def _query(self, pool: Pool, budget: int, rng: np.random.Generator):
        base = self.base_strategy
        if self.random_state is not None:
            base = copy.copy(base)
            base.random_state = self.random_state
        n_prop = self.n_proposals(budget, pool.candidates.size)
        proposals, util = base.select(
            pool.features, pool.probs, n_prop, labeled=pool.labeled, labels=pool.labels, model=pool.model,
            candidates=pool.candidates, return_utilities=True,
        )
        n_classes = pool.probs.shape[1]
        counts = np.zeros(n_classes, dtype=np.int64)
        if pool.labels is not None and pool.labels.size:
            counts += np.bincount(pool.labels, minlength=n_classes)  # labels < n_classes: checked by select
        pred = np.asarray(pool.probs[proposals]).argmax(axis=1)
        return proposals[balanced_picks(pred, counts, budget)], util[pool.candidates]
