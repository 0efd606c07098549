"""Pieces shared by the adapters: strategy resolution, label encoding, column alignment."""

from __future__ import annotations

import numbers

import numpy as np

from ..exceptions import VlalInputError


def resolve_strategy(strategy, *, name: str = "strategy", random_state=None, set_random_state: bool = False):
    """A fresh vlal strategy from an instance (cloned, never modified) or a registry name.

    With ``set_random_state=True`` every ``random_state`` parameter (a wrapped strategy's
    included) is set to ``random_state``.
    """
    from sklearn.base import clone

    from ..registry import make_strategy
    from ..strategies import Strategy

    if isinstance(strategy, str):
        out = make_strategy(strategy)
    elif isinstance(strategy, Strategy):
        out = clone(strategy)
    else:
        raise TypeError(
            f"{name} must be a vlal strategy (e.g. vlal.CEC()) or a name known to vlal.make_strategy "
            f"(e.g. 'cec'); got {type(strategy).__name__}"
        )
    if set_random_state:
        keys = [k for k in out.get_params(deep=True) if k == "random_state" or k.endswith("__random_state")]
        out.set_params(**{k: random_state for k in keys})
    return out


def embed(embedding, X, name: str = "embedding") -> np.ndarray:
    """``X`` itself (``embedding=None``) or ``embedding(X)`` checked to be (n, d) numbers."""
    if embedding is None:
        feats = np.asarray(X)
    else:
        if not callable(embedding):
            raise TypeError(f"{name} must be None or a callable X -> features (n, d); got {type(embedding).__name__}")
        feats = np.asarray(embedding(X))
    n = len(X) if not hasattr(X, "shape") else X.shape[0]
    if feats.ndim != 2 or feats.shape[0] != n:
        what = "X" if embedding is None else f"{name}(X)"
        raise VlalInputError(f"{what} must be a 2-D array with one row per sample ({n} rows); got shape {feats.shape}")
    if not (np.issubdtype(feats.dtype, np.floating) or np.issubdtype(feats.dtype, np.integer)):
        what = "X" if embedding is None else f"{name}(X)"
        raise VlalInputError(f"{what} must hold real numbers to serve as vlal features; got dtype {feats.dtype}")
    return feats


def class_index(classes) -> dict:
    """``{class value: column}`` for a 1-D array of classes (1 and 1.0 map alike)."""
    return {c: i for i, c in enumerate(np.asarray(classes).tolist())}


def align_classes(probs: np.ndarray, clf_classes, labels, classes=None, *, name: str = "classes"):
    """Map a classifier's ``predict_proba`` columns and the raw labels onto vlal's classes.

    vlal strategies expect column ``c`` of ``probs`` to be class ``c`` and integer labels
    in ``[0, K)``. The task's classes are ``classes`` when given (e.g. every class of the
    task, whether the classifier has seen it yet or not), else the classifier's
    ``clf_classes`` followed by any labeled class it has not seen (a classifier fitted
    earlier on other rows). Columns of classes the classifier has not seen get
    probability 0 (:func:`vlal.align_probs`).

    Returns
    -------
    probs : ndarray (n, K)
    codes : ndarray (l,), int64
        Column of each label.
    classes : ndarray (K,)
    positions : ndarray (c,), int64 or None
        Column of each of ``clf_classes`` (None when they are columns ``0 .. K-1``).

    Raises
    ------
    ValueError
        ``classes`` misses a class of the classifier or of the labels.
    """
    clf_classes = np.asarray(clf_classes)
    labels = np.asarray(labels)
    if classes is None:
        index = class_index(clf_classes)
        unseen = [v for v in dict.fromkeys(labels.tolist()) if v not in index]
        classes = clf_classes if not unseen else np.array(clf_classes.tolist() + unseen, dtype=object)
    else:
        classes = np.asarray(classes)
        if classes.ndim != 1 or classes.size == 0:
            raise VlalInputError(f"{name} must be a non-empty 1-D list of the task's classes; got shape {classes.shape}")
        if len(class_index(classes)) != classes.size:
            raise VlalInputError(f"{name} holds duplicated classes")
    index = class_index(classes)
    for what, values in (("the classifier's classes_", clf_classes), ("the labels", labels)):
        missing = [v for v in dict.fromkeys(values.tolist()) if v not in index]
        if missing:
            raise VlalInputError(f"{what} hold {missing[:5]!r}, which {name}={classes.tolist()[:10]!r} does not list")
    positions = np.array([index[c] for c in clf_classes.tolist()], dtype=np.int64)
    if positions.size == len(classes) and np.array_equal(positions, np.arange(len(classes))):
        positions = None
    else:
        from ..alignment import align_probs

        probs = align_probs(probs, positions, len(classes))
    codes = np.array([index[v] for v in labels.tolist()], dtype=np.int64)
    return probs, codes, classes, positions


class AlignedModel:
    """``predict_proba`` of a classifier with its columns aligned to the task's classes
    (what ALFA-Mix probes with feature mixes)."""

    def __init__(self, clf, n_classes: int, positions: np.ndarray | None):
        self.clf = clf
        self.n_classes = int(n_classes)
        self.positions = positions

    def predict_proba(self, x):
        p = np.asarray(self.clf.predict_proba(x))
        if self.positions is None:
            return p
        from ..alignment import align_probs

        return align_probs(p, self.positions, self.n_classes)


def check_count(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer; got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value}")
    return int(value)
