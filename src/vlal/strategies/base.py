"""The abstract :class:`Strategy`: one ``select`` for every query strategy."""

from __future__ import annotations

import abc
import inspect
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .._validation import check_budget, check_labeled, check_labels, check_pool, rng_from

__all__ = ["Strategy", "Pool", "ProbabilisticModel"]


class ProbabilisticModel(Protocol):
    """Anything with ``predict_proba(features (m, d)) -> probs (m, K)``: the current classifier."""

    def predict_proba(self, features: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Pool:
    """The validated inputs of one query, as a strategy's :meth:`Strategy._query` sees them.

    Attributes
    ----------
    features : ndarray (n, d)
        The caller's pool features (validated, not copied; read them, never write).
    probs : ndarray (n, K)
        The current model's class probabilities for every pool row.
    candidates : ndarray (m,), int64
        Sorted pool positions of the unlabeled rows (those that may be queried).
    labeled : ndarray (l,), int64
        Pool positions of the labeled rows, in the caller's order.
    labels : ndarray (l,), int64 or None
        Classes of ``labeled`` (aligned), when the caller gave them.
    model : ProbabilisticModel or None
        The current classifier, for strategies that probe it (ALFA-Mix).
    """

    features: np.ndarray
    probs: np.ndarray
    candidates: np.ndarray
    labeled: np.ndarray
    labels: np.ndarray | None
    model: Any = None

    @property
    def n(self) -> int:
        return int(self.features.shape[0])


class Strategy(abc.ABC):
    """Base class of all query strategies.

    ``random_state`` follows numpy/scikit-learn conventions: an int gives identical
    draws on every call (same inputs -> same indices); a ``numpy.random.Generator``
    advances with each call. In a multi-round loop pass a Generator
    (``np.random.default_rng(seed)``): with an int, every round repeats the same
    random draws, which correlates the rounds' queries.

    ``__init__`` only stores parameters (including ``random_state``); all work happens
    in :meth:`select`, which validates the inputs once and hands a :class:`Pool` to the
    subclass' :meth:`_query`. Subclasses set ``requires_labels = True`` when they need
    a labeled set; with none, they fall back to uniform random sampling (as in the
    paper, Sec. 6).
    """

    #: Strategies that need labeled rows (and their labels) set this; with an empty
    #: labeled set they fall back to :class:`~vlal.Random`.
    requires_labels: bool = False

    def __init__(self, random_state=None):
        self.random_state = random_state

    def select(self, features, probs, budget: int, *, labeled=None, labels=None, model=None) -> np.ndarray:
        """Choose ``budget`` pool rows to send for labeling.

        Parameters
        ----------
        features : array-like of shape (n, d)
            Image features of the whole pool (labeled rows included), any float dtype;
            float16, non-contiguous and memory-mapped arrays are accepted and never modified.
        probs : array-like of shape (n, K)
            Class probabilities of the current model for every pool row (not logits).
        budget : int
            Number of rows to query, ``1 <= budget <=`` number of unlabeled rows.
        labeled : array-like of int or bool, optional
            Rows already labeled, as indices or a boolean mask of length ``n``; never returned.
        labels : array-like of int, optional
            Classes of the labeled rows, one per labeled row in the order of ``labeled``
            (of ``np.flatnonzero(labeled)`` for a mask). Needed by label-aware strategies.
        model : object with ``predict_proba``, optional
            The current classifier; used by strategies that probe it (ALFA-Mix).

        Returns
        -------
        ndarray of shape (budget,), int64
            Distinct row positions into ``features``, none of them labeled.

        Raises
        ------
        ValueError
            Bad shapes, NaN/inf, probabilities that are not probabilities, a budget
            that is not a positive int, invalid ``labeled`` / ``labels``.
        BudgetExceededError
            ``budget`` exceeds the number of unlabeled rows.
        """
        f, p = check_pool(features, probs)
        n = f.shape[0]
        labeled_idx = check_labeled(labeled, n)
        lab = check_labels(labels, labeled_idx, n, n_classes=p.shape[1])
        mask = np.ones(n, dtype=bool)
        mask[labeled_idx] = False
        candidates = np.flatnonzero(mask).astype(np.int64)
        b = check_budget(budget, candidates.size)
        pool = Pool(f, p, candidates, labeled_idx, lab, model)
        rng = rng_from(self.random_state)
        if self.requires_labels and (labeled_idx.size == 0 or lab is None):
            chosen = rng.choice(candidates, size=b, replace=False)
        else:
            chosen = self._query(pool, b, rng)
        chosen = np.asarray(chosen, dtype=np.int64)
        self._check_result(chosen, b, mask)
        return chosen

    @abc.abstractmethod
    def _query(self, pool: Pool, budget: int, rng: np.random.Generator) -> np.ndarray:
        """Return ``budget`` distinct pool positions taken from ``pool.candidates``."""

    @staticmethod
    def _check_result(chosen: np.ndarray, budget: int, candidate_mask: np.ndarray) -> None:
        # An internal guard: a strategy bug must never reach the caller as a silent wrong answer.
        if chosen.shape != (budget,):
            raise RuntimeError(f"strategy returned shape {chosen.shape}, expected ({budget},)")
        if np.unique(chosen).size != budget:
            raise RuntimeError("strategy returned duplicated indices")
        if chosen.min() < 0 or chosen.max() >= candidate_mask.size or not candidate_mask[chosen].all():
            raise RuntimeError("strategy returned an index outside the unlabeled pool")

    def check_dependencies(self) -> None:
        """Raise ``ImportError`` naming the missing extra if :meth:`select` could not run.

        Harnesses call it before a long run; strategies with optional dependencies
        (GCNAL: torch) override it.
        """

    def get_params(self) -> dict:
        """The constructor parameters (as stored), e.g. for logging."""
        sig = inspect.signature(type(self).__init__)
        return {k: getattr(self, k) for k in sig.parameters if k != "self" and hasattr(self, k)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"
