"""The abstract :class:`Strategy`: one ``select`` for every query strategy."""

from __future__ import annotations

import abc
import copy as _copy
import inspect
import numbers
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .._validation import (
    _is_lazy,
    check_budget,
    check_candidates,
    check_finite,
    check_labeled,
    check_labels,
    check_nonzero_rows,
    check_pool,
    check_probs,
    copies_of_rows,
    rng_from,
)
from ..exceptions import VlalInputError

__all__ = ["Strategy", "Pool", "ProbabilisticModel"]


class ProbabilisticModel(Protocol):
    """Anything with ``predict_proba(features (m, d)) -> probs (m, K)``: the current classifier."""

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities ``(m, K)`` of feature rows ``(m, d)``, rows summing to 1."""


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
        Sorted pool positions of the rows that may be queried (unlabeled, and among the
        caller's ``candidates`` when given).
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
        """Number of pool rows (labeled and unlabeled)."""
        return int(self.features.shape[0])


class Strategy(abc.ABC):
    """Base class of all query strategies.

    Strategies follow scikit-learn's estimator conventions: ``__init__`` only stores its
    arguments, unchanged; they are checked when :meth:`select` runs (and by
    :func:`vlal.make_strategy`); :meth:`get_params` / :meth:`set_params` and
    ``sklearn.base.clone`` work (nested parameters of a wrapped strategy, e.g. PCB's
    ``base_strategy__k``, included), and ``repr`` shows the parameters that differ from
    their defaults.

    ``random_state`` (per call of :meth:`select`):

    - ``None``: fresh randomness on every call;
    - an int ``>= 0``: the same draws on every call (same inputs -> same indices);
    - a ``numpy.random.Generator``: advances with each call;
    - a ``numpy.random.RandomState`` (scikit-learn convention): one seed is drawn from
      it per call, so it advances too.

    In a multi-round loop pass a Generator or RandomState: with an int every round
    repeats the same random draws, which correlates the rounds' queries. A strategy
    never reads or changes the global random states (numpy, Python ``random``, torch),
    so concurrent calls from several threads give the picks of sequential calls (each
    thread needs its own Generator / RandomState, or an int).

    Subclasses implement :meth:`_query` (and :meth:`_check_params` for their
    parameters). Class attributes say what a strategy reads:

    - ``requires_labeled``: it needs a labeled set; with none it falls back to uniform
      random sampling (as in the paper, Sec. 6);
    - ``reads_labels``: it reads the label values; labeled rows without ``labels`` are
      then an error, and each label must be a column of ``probs``.

    Strategies that do not read ``labels`` do not check them against ``probs``.
    """

    #: Needs labeled rows; with none, uniform random sampling (paper Sec. 6).
    requires_labeled: bool = False
    #: Reads the classes of the labeled rows (``labels``); they must index ``probs`` columns.
    reads_labels: bool = False

    def __init__(self, random_state=None):
        self.random_state = random_state

    # ``requires_labels = True`` (vlal 0.1 subclasses) meant both attributes below
    def _needs_labeled(self) -> bool:
        return bool(self.requires_labeled or getattr(self, "requires_labels", False))

    def _reads_labels(self) -> bool:
        return bool(self.reads_labels or getattr(self, "requires_labels", False))

    def _streams(self, features, probs) -> bool:
        """True when this strategy streams sharded inputs (checking each block as it reads it)
        instead of reading them into memory; only CEC does, for large pools."""
        return False

    # ------------------------------------------------------------------ scikit-learn protocol

    @classmethod
    def _get_param_names(cls) -> list[str]:
        init = cls.__init__
        if init is object.__init__:
            return []
        params = [p for p in inspect.signature(init).parameters.values() if p.name != "self"]
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise RuntimeError(
                    f"{cls.__name__}.__init__ must name its parameters explicitly (no *args / **kwargs) "
                    "so that get_params, set_params and clone work"
                )
        return sorted(p.name for p in params)

    def get_params(self, deep: bool = True) -> dict:
        """Parameters of this strategy, as stored by ``__init__`` (scikit-learn protocol).

        Parameters
        ----------
        deep : bool, default True
            Also return the parameters of nested strategies (``base_strategy__k``).

        Returns
        -------
        dict
            Parameter name -> value.
        """
        out = {}
        for key in self._get_param_names():
            value = getattr(self, key)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{key}__{k}", v) for k, v in value.get_params(deep=True).items())
            out[key] = value
        return out

    def set_params(self, **params) -> "Strategy":
        """Set parameters (scikit-learn protocol), nested ones as ``base_strategy__k=5``.

        Values are checked when :meth:`select` runs.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            An unknown parameter name (the message lists the valid ones).
        """
        if not params:
            return self
        valid = self.get_params(deep=True)
        nested: dict[str, dict] = {}
        for key, value in params.items():
            name, sep, sub = key.partition("__")
            if name not in valid or (sep and not hasattr(valid[name], "set_params")):
                raise VlalInputError(
                    f"invalid parameter {name!r} for {type(self).__name__}; valid parameters: "
                    f"{self._get_param_names()}"
                )
            if sep:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
                valid[name] = value
        for name, sub_params in nested.items():
            valid[name].set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__).parameters
        parts = []
        for key, value in self.get_params(deep=False).items():
            default = sig[key].default
            try:
                same = default is not inspect.Parameter.empty and type(default) is type(value) and bool(default == value)
            except Exception:  # noqa: BLE001 - arrays and odd objects: show them
                same = False
            if not same:
                parts.append(f"{key}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def _check_params(self) -> None:
        """Validate the stored parameters (override; raise ``VlalInputError`` naming the parameter)."""

    def _validate_params(self) -> None:
        """Check every parameter, ``random_state`` included; called by :meth:`select`."""
        rs = self.random_state
        if not (
            rs is None
            or isinstance(rs, (np.random.Generator, np.random.RandomState, np.random.SeedSequence))
            or (isinstance(rs, numbers.Integral) and not isinstance(rs, (bool, np.bool_)) and rs >= 0)
        ):
            rng_from(rs)  # raises with the message naming random_state
        try:
            self._check_params()
        except VlalInputError as err:
            if type(self).__name__ in str(err):
                raise
            raise VlalInputError(f"{type(self).__name__}: {err}") from None

    # ------------------------------------------------------------------ the query

    def select(
        self,
        features,
        probs,
        budget: int,
        *,
        labeled=None,
        labels=None,
        model=None,
        candidates=None,
        return_utilities: bool = False,
    ):
        """Choose ``budget`` pool rows to send for labeling.

        Parameters
        ----------
        features : array-like of shape (n, d)
            Image features of the whole pool (labeled rows included), any float dtype;
            float16, non-contiguous and memory-mapped arrays are accepted and never modified.
            No row may be all zeros (one rule for every strategy).
        probs : array-like of shape (n, K)
            Class probabilities of the current model for every pool row (not logits).
            Column ``c`` is class ``c``; for a classifier fitted on a subset of the classes
            use :func:`vlal.align_probs`.
        budget : int
            Number of rows to query, ``1 <= budget <=`` number of candidates.
        labeled : array-like of int or bool, optional
            Rows already labeled, as indices or a boolean mask of length ``n``; never returned.
        labels : array-like of int, optional
            Classes of the labeled rows, one per labeled row in the order of ``labeled``
            (of ``np.flatnonzero(labeled)`` for a mask). Needed by strategies that read
            them (``reads_labels``: PCB, ALFA-Mix, ``CalibratedMix(balance=True)``), ignored by
            the others.
        model : object with ``predict_proba``, optional
            The current classifier; used by strategies that probe it (ALFA-Mix).
        candidates : array-like of int or bool, optional
            Rows that may be queried, as indices or a boolean mask of length ``n``;
            default: every unlabeled row. A labeled row among them is an error. Rows whose
            features are a copy of a labeled row's (L2-normalised rows within
            ``vlal._validation.COPY_TOL`` = 2e-3, every dtype: the same image up to
            float round-off, or a scaled copy) are not candidates while at least ``budget`` others remain (their
            utilities are then NaN); otherwise every other candidate is taken and the
            strategy picks only the shortfall among the copies. The returned indices are
            still pool positions. What a strategy computes over the
            unlabeled pool (CEC's neighbours, prior and clusters, k-centre distances, PCB's
            proposals) is computed over the candidates; the labeled set is used as given.
        return_utilities : bool, default False
            Also return the utility of every pool row (defined in each strategy's
            docstring; higher = more wanted unless stated). The picks are the same
            with and without it.

        Returns
        -------
        indices : ndarray of shape (budget,), int64
            Distinct row positions into ``features``, all among the candidates.
        utilities : ndarray of shape (n,), float64
            Only with ``return_utilities=True``: NaN exactly for the rows that were not
            candidates (labeled rows, rows outside ``candidates``, dropped copies of
            labeled rows).

        Raises
        ------
        ValueError
            Bad shapes, NaN/inf, a zero feature row, probabilities that are not
            probabilities, a budget that is not a positive int, invalid ``labeled`` /
            ``labels`` / ``candidates``, invalid parameters of the strategy, labeled rows
            without ``labels`` for a strategy that reads them.
        BudgetExceededError
            ``budget`` exceeds the number of candidates.
        """
        self._validate_params()
        if not isinstance(return_utilities, (bool, np.bool_)):
            raise VlalInputError(f"return_utilities must be True or False; got {return_utilities!r}")
        f, p = check_pool(features, probs)
        n = f.shape[0]
        labeled_idx = check_labeled(labeled, n)
        if (_is_lazy(f) or _is_lazy(p)) and not self._streams(f, p):
            # sharded inputs that will be read into memory: their values, block by block, now (a
            # streaming strategy checks each block as it reads it)
            check_finite(f, "features")
            check_probs(p, "probs")
        check_nonzero_rows(f, "features")
        if self._reads_labels():
            lab = check_labels(labels, labeled_idx, n, n_classes=p.shape[1])
        else:
            lab = check_labels(labels, labeled_idx, n, n_classes=None)
        cand = check_candidates(candidates, n, labeled_idx)
        b = check_budget(budget, cand.size, restricted=candidates is not None)
        if self._reads_labels() and labeled_idx.size and lab is None:
            raise VlalInputError(
                f"{type(self).__name__} reads the classes of the labeled rows: labeled marks "
                f"{labeled_idx.size} rows but labels was not given; pass labels=<one class per labeled row>"
            )
        rng = rng_from(self.random_state)

        def query(rows: np.ndarray, size: int, gen: np.random.Generator = rng):
            if self._needs_labeled() and labeled_idx.size == 0:
                return gen.choice(rows, size=size, replace=False), np.zeros(rows.size)
            out = self._query(Pool(f, p, rows, labeled_idx, lab, model), size, gen)
            picks, util = out if isinstance(out, tuple) else (out, None)
            return np.asarray(picks, dtype=np.int64), util

        # Never spend budget on a copy of an image already labeled (vlal._validation.COPY_TOL):
        # copies leave the candidates; when the other rows cannot fill the budget, they are all
        # taken and the strategy picks only the shortfall among the copies.
        copy = copies_of_rows(f, labeled_idx)[cand] if labeled_idx.size else np.zeros(cand.size, dtype=bool)
        fresh = cand[~copy]
        if not copy.any() or fresh.size == 0:
            chosen, util = query(cand, b)
        elif fresh.size >= b:
            cand = fresh
            chosen, util = query(cand, b)
        else:
            fill, _ = query(cand[copy], b - fresh.size)
            chosen = np.concatenate([fresh, fill])
            # the strategy's view of all candidates, drawn on a copy of the generator: asking for the
            # utilities never changes what the caller's generator draws next
            util = query(cand, b, _copy.deepcopy(rng))[1] if return_utilities else None
        mask = np.zeros(n, dtype=bool)
        mask[cand] = True
        self._check_result(chosen, b, mask)
        if not return_utilities:
            return chosen
        utilities = np.full(n, np.nan, dtype=np.float64)
        utilities[cand] = 0.0 if util is None else np.asarray(util, dtype=np.float64)
        return chosen, utilities

    @abc.abstractmethod
    def _query(self, pool: Pool, budget: int, rng: np.random.Generator):
        """Return ``budget`` distinct pool positions taken from ``pool.candidates``,
        or ``(positions, utilities)`` with ``utilities`` (m,) aligned with ``pool.candidates``."""

    @staticmethod
    def _check_result(chosen: np.ndarray, budget: int, candidate_mask: np.ndarray) -> None:
        # An internal guard: a strategy bug must never reach the caller as a silent wrong answer.
        if chosen.shape != (budget,):
            raise RuntimeError(f"strategy returned shape {chosen.shape}, expected ({budget},)")
        if np.unique(chosen).size != budget:
            raise RuntimeError("strategy returned duplicated indices")
        if chosen.min() < 0 or chosen.max() >= candidate_mask.size or not candidate_mask[chosen].all():
            raise RuntimeError("strategy returned an index outside the candidates")

    def check_dependencies(self) -> None:
        """Raise ``ImportError`` naming the missing extra if :meth:`select` could not run.

        Harnesses call it before a long run; strategies with optional dependencies
        (GCNAL: torch) override it.
        """
