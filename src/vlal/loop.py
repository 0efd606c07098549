"""The active-learning loop: query, label, re-tune from zero-shot, evaluate.

One round (paper Algorithm 1 and Sec. 5): the current model's probabilities on the
pool -> ``strategy.select`` -> the oracle labels the queried rows -> the tuner is
re-tuned *from the zero-shot state* on all labels so far -> test accuracy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from ._validation import check_features, check_positive_int, integer_class_ids
from .exceptions import VlalInputError
from ._warnings import warn_caller
from .strategies.base import Strategy
from .tuners import Tuner as _VlalTuner

__all__ = ["Tuner", "RoundResult", "LoopResult", "run_active_learning", "round_budget", "BelowZeroShotWarning",
           "ZERO_SHOT_MARGIN"]

#: Default margin (percentage points of test accuracy) below zero-shot that triggers
#: :class:`BelowZeroShotWarning`.
ZERO_SHOT_MARGIN = 3.0


class BelowZeroShotWarning(UserWarning):
    """A round of the loop ended more than the stated margin below zero-shot accuracy."""


@runtime_checkable
class Tuner(Protocol):
    """What the loop needs of a classifier.

    ``fit(inputs, labels)`` tunes on all labels so far, starting again from the
    zero-shot state every call; ``predict_proba(inputs)`` returns (m, K) probabilities
    (zero-shot ones before any fit). ``inputs`` are whatever the tuner consumes:
    cached features for feature-space tuners and CoOp, images for VPT / MaPLe.
    """

    def fit(self, inputs, labels):
        """Tune on all ``(inputs, labels)`` so far, from the zero-shot state; returns self."""

    def predict_proba(self, inputs) -> np.ndarray:
        """Class probabilities ``(m, K)``, rows summing to 1."""


@dataclass
class RoundResult:
    """One round of the loop. Round 0 is the zero-shot model before any query.

    ``accuracy`` is the test accuracy in **percent** (0-100), as in ``vlal bench``'s
    records and tables; ``queried`` holds positions in the ``pool_features`` given to
    :func:`run_active_learning`.
    """

    round: int
    n_labeled: int
    accuracy: float
    queried: np.ndarray = field(repr=False)
    select_seconds: float = 0.0
    fit_seconds: float = 0.0
    #: True when this round's accuracy is more than the loop's ``zero_shot_margin`` below round 0.
    below_zero_shot: bool = False


@dataclass
class LoopResult:
    """All rounds, plus the final labeled set and its labels.

    ``labeled`` holds row positions in the ``pool_features`` passed to
    :func:`run_active_learning`, in query order. When that pool is a subset of a file
    (e.g. ``ds.pool_features[keep]`` after :func:`vlal.data.zero_shot_proxy`), the file's
    rows are ``np.flatnonzero(keep)[result.labeled]`` (``vlal bench`` stores them so in its
    run files, as ``labeled_file_rows``). ``accuracies`` are in percent.
    """

    rounds: list[RoundResult]
    labeled: np.ndarray
    labels: np.ndarray

    @property
    def accuracies(self) -> np.ndarray:
        """Test accuracy (percent) of every round, round 0 (zero-shot) first, shape (rounds + 1,)."""
        return np.array([r.accuracy for r in self.rounds])


def round_budget(n_pool: int, fraction: float = 0.01) -> int:
    """Per-round budget: ``fraction`` of the initial pool, at least 1 (paper: 1 %)."""
    if not 0 < fraction <= 1:
        raise VlalInputError(f"budget fraction must be in (0, 1]; got {fraction}")
    return max(1, int(round(fraction * n_pool)))


def _take(inputs, idx: np.ndarray):
    if isinstance(inputs, np.ndarray):
        return inputs[idx]
    return [inputs[i] for i in idx]


def _accuracy(tuner, inputs, labels: np.ndarray) -> float:
    pred = np.asarray(tuner.predict_proba(inputs)).argmax(axis=1)
    return 100.0 * float(np.mean(pred == labels))  # percent, the convention of the loop and the bench


def _check_class_ids(values, name: str, n_classes: int, length: int | None = None) -> np.ndarray:
    """``values`` as int64 class ids in ``[0, n_classes)``; a clear error naming ``name`` otherwise."""
    arr = np.asarray(values)
    if arr.ndim != 1 or (length is not None and arr.shape[0] != length):
        raise VlalInputError(f"{name} must have shape ({length if length is not None else 'n'},); got {arr.shape}")
    arr = integer_class_ids(arr, name, f" in [0, {n_classes})")
    if arr.size and (arr.min() < 0 or arr.max() >= n_classes):
        bad = int(arr.min()) if arr.min() < 0 else int(arr.max())
        raise VlalInputError(f"{name}: class {bad} is outside [0, {n_classes}) (the tuner's "
                             f"{n_classes} classes)")
    return arr


def check_strategy_tuner(strategies: Sequence, tuner_inputs: str) -> None:
    """Refuse strategy/tuner pairs that cannot work, before any work starts.

    ALFA-Mix probes the model with feature vectors (``model.predict_proba(features)``,
    the anchors' mixes). Image-level tuners (VPT, MaPLe; ``tuner_inputs="paths"``) take
    images, not features, so no model exists that ALFA-Mix could probe: the pair is
    refused rather than failing in round 2 (or silently using another classifier).
    ``strategies``: names or :class:`~vlal.strategies.base.Strategy` objects.

    Raises
    ------
    vlal.VlalInputError
        Naming the strategies and the way out (a feature tuner: ``feature`` or ``coop``).
    """
    if tuner_inputs != "paths":
        return
    from .registry import make_strategy
    from .strategies.alfamix import ALFAMix

    bad = [n if isinstance(n, str) else type(n).__name__ for n in strategies
           if isinstance(make_strategy(n) if isinstance(n, str) else n, ALFAMix)]
    if bad:
        raise VlalInputError(
            f"strategy {', '.join(bad)} probes the model with feature vectors, but image-level tuners "
            "(VPT, MaPLe) take images: use a feature-space tuner (--tuner anchored, the default) or --tuner coop with it, or drop it from --strategies"
        )


def run_active_learning(
    strategy: Strategy,
    tuner: Tuner,
    pool_features,
    oracle,
    test_inputs,
    test_labels,
    *,
    n_rounds: int = 6,
    budget: int | None = None,
    pool_inputs=None,
    progress: bool = False,
    callback: Callable[[RoundResult], None] | None = None,
    zero_shot_margin: float | None = ZERO_SHOT_MARGIN,
) -> LoopResult:
    """Run ``n_rounds`` of active learning and return the accuracy after each.

    Parameters
    ----------
    strategy : Strategy
        The query strategy.
    tuner : Tuner
        The classifier (zero-shot before any fit; re-tuned from zero-shot each round). A
        vlal tuner (:class:`vlal.tuners.Tuner`, the CLIP prompt tuners included) is first
        fitted on no labels, so round 0 is zero-shot even when the object was fitted before;
        any other tuner must be passed in its zero-shot state (round 0 is read from it).
    pool_features : array-like (n, d)
        Image features of the unlabeled pool, given to the strategy.
    oracle : array-like (n,) of int, or callable ``indices -> labels``
        Supplies the classes of queried rows.
    test_inputs, test_labels : evaluation set
        ``test_inputs`` in the tuner's input form; ``test_labels`` (m,) ints.
    n_rounds : int, default 6
    budget : int, optional
        Queries per round; default 1 % of the pool, at least 1. The last round
        takes what is left if the pool runs out, and the loop stops there.
    pool_inputs : optional
        What the tuner consumes for the pool rows (default: ``pool_features``), e.g.
        a list of image paths for image-level tuners; indexed with integer arrays.
    progress : bool
        Show a tqdm bar over rounds.
    callback : callable, optional
        Called with each :class:`RoundResult` as it completes.
    zero_shot_margin : float or None, default 3.0
        Guard (percentage points, like ``accuracy``): a round whose test accuracy is more
        than this below zero-shot (round 0) gets ``below_zero_shot=True`` and raises a
        :class:`BelowZeroShotWarning` (a ``UserWarning``) pointing at the caller: the tuner
        is then damaging the model rather than adapting it. ``None`` turns the guard off.

    Returns
    -------
    LoopResult
        ``rounds[0]`` is zero-shot (0 labels); ``rounds[r]`` follows the r-th query.
        Accuracies are in percent; ``labeled`` indexes ``pool_features`` (see
        :class:`LoopResult`).

    Raises
    ------
    ValueError
        Bad shapes, oracle labels of the wrong length, non-positive ``n_rounds``/``budget``.
    """
    feats = check_features(pool_features, "pool_features")
    n = feats.shape[0]
    n_rounds = check_positive_int(n_rounds, "n_rounds")
    b = round_budget(n) if budget is None else check_positive_int(budget, "budget")
    inputs = feats if pool_inputs is None else pool_inputs
    if len(inputs) != n:
        raise VlalInputError(f"pool_inputs has {len(inputs)} rows but pool_features has {n}")
    if pool_inputs is not None and getattr(np.asarray(pool_inputs[:1]), "ndim", 0) != 2:
        check_strategy_tuner([strategy], "paths")  # ALFA-Mix probes the model with features: refuse now
    if not hasattr(test_inputs, "__len__") or np.ndim(test_inputs) == 0:
        raise VlalInputError(f"test_inputs must be the evaluation set (an (m, d) array, or m image paths); "
                             f"got {type(test_inputs).__name__}")
    if len(test_inputs) == 0:
        raise VlalInputError("test_inputs must be non-empty (the evaluation set)")
    if pool_inputs is None:  # features on both sides: same width, named here rather than by the tuner
        t_arr = check_features(test_inputs, "test_inputs")
        if t_arr.shape[1] != feats.shape[1]:
            raise VlalInputError(f"test_inputs has d={t_arr.shape[1]} but pool_features has d={feats.shape[1]}; "
                                 "embed both with the same model")
    if isinstance(tuner, _VlalTuner):  # a tuner fitted before (a reused object) starts from zero-shot again
        tuner.fit(_take(inputs, np.empty(0, dtype=np.int64)), np.empty(0, dtype=np.int64))
    p_test = np.asarray(tuner.predict_proba(test_inputs))  # zero-shot: round 0, and the number of classes
    n_classes = int(p_test.shape[1])
    if callable(oracle):
        ask = oracle
    else:
        oracle_arr = _check_class_ids(oracle, "oracle", n_classes, n)  # shape (n,), ids in [0, K)
        ask = lambda idx: oracle_arr[idx]  # noqa: E731
    y_test = _check_class_ids(test_labels, "test_labels", n_classes, len(test_inputs))
    if zero_shot_margin is not None and not (np.isfinite(zero_shot_margin) and 0 <= zero_shot_margin <= 100):
        raise VlalInputError(f"zero_shot_margin must be in [0, 100] (percentage points) or None; got {zero_shot_margin!r}")

    labeled = np.empty(0, dtype=np.int64)
    labels = np.empty(0, dtype=np.int64)
    rounds = [RoundResult(0, 0, 100.0 * float(np.mean(p_test.argmax(axis=1) == y_test)), np.empty(0, dtype=np.int64))]
    if callback:
        callback(rounds[0])
    iterator = range(1, n_rounds + 1)
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(iterator, desc=type(strategy).__name__, leave=False)
    for r in iterator:
        remaining = n - labeled.size
        if remaining == 0:
            warn_caller(f"the pool ({n} rows) is fully labeled after {r - 1} of the {n_rounds} rounds asked "
                        f"for (budget {b} per round); the remaining rounds are not run", UserWarning)
            break
        probs = np.asarray(tuner.predict_proba(inputs))
        t0 = time.perf_counter()
        idx = strategy.select(feats, probs, min(b, remaining), labeled=labeled, labels=labels, model=tuner)
        t1 = time.perf_counter()
        answer = ask(idx)
        if answer is None:
            raise VlalInputError(f"the oracle returned None for {idx.size} queries; it must return their labels")
        if not hasattr(answer, "__len__") and not hasattr(answer, "__iter__"):
            raise VlalInputError(f"the oracle must return a sequence of labels; got {type(answer).__name__}")
        new = np.asarray(list(answer) if not hasattr(answer, "__len__") else answer)  # generators too
        if new.shape != idx.shape:
            raise VlalInputError(f"oracle returned {new.shape} labels for {idx.shape} queries")
        new = _check_class_ids(new, "the oracle's labels", n_classes)
        labeled = np.concatenate([labeled, idx])
        labels = np.concatenate([labels, new])
        tuner.fit(_take(inputs, labeled), labels)
        t2 = time.perf_counter()
        res = RoundResult(r, int(labeled.size), _accuracy(tuner, test_inputs, y_test), idx, t1 - t0, t2 - t1)
        zs = rounds[0].accuracy
        if zero_shot_margin is not None and res.accuracy < zs - zero_shot_margin:
            res.below_zero_shot = True
            warn_caller(
                f"round {r} ({res.n_labeled} labels): test accuracy {res.accuracy:.2f} % is "
                f"{zs - res.accuracy:.2f} points below zero-shot ({zs:.2f} %), more than the "
                f"{zero_shot_margin:g}-point margin: the tuner ({type(tuner).__name__}) is damaging the model",
                BelowZeroShotWarning)
        rounds.append(res)
        if callback:
            callback(res)
    return LoopResult(rounds, labeled, labels)
