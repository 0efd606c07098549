"""Align a classifier's probability columns with the full class list."""

from __future__ import annotations

import numbers

import numpy as np

from ._validation import check_probs
from .exceptions import VlalInputError

__all__ = ["align_probs"]


def align_probs(probs, classes, n_classes: int) -> np.ndarray:
    """Expand ``predict_proba`` columns for a subset of classes to all ``n_classes`` columns.

    A scikit-learn classifier fitted on the labels so far has one column per class it
    has seen (``clf.classes_``, sorted). vlal strategies expect column ``c`` to hold
    class ``c`` for ``c = 0 .. n_classes - 1``. Column ``j`` of ``probs`` is copied to
    column ``classes[j]`` of the result; classes the classifier has not seen get
    probability 0 (the classifier gives them none), so each row still sums to 1.

    Parameters
    ----------
    probs : array-like of shape (n, c)
        Class probabilities as returned by ``clf.predict_proba`` (rows sum to 1).
    classes : array-like of shape (c,), int
        The class of each column, e.g. ``clf.classes_``: distinct integers in
        ``[0, n_classes)`` (integral floats such as ``2.0`` are accepted).
    n_classes : int
        Number of classes of the task, ``>= c``.

    Returns
    -------
    ndarray of shape (n, n_classes)
        A new array, dtype of ``probs`` (float32 for integer or bool input); ``probs`` is not
        modified.

    Raises
    ------
    ValueError
        ``probs`` is not a valid probability matrix; ``classes`` is not 1-D, does not
        match the number of columns, holds non-integers, duplicates or classes outside
        ``[0, n_classes)``; ``n_classes`` is not a positive int.

    Examples
    --------
    >>> import numpy as np
    >>> align_probs(np.array([[0.25, 0.75]]), classes=[1, 3], n_classes=4)
    array([[0.  , 0.25, 0.  , 0.75]])
    """
    if isinstance(n_classes, (bool, np.bool_)) or not isinstance(n_classes, numbers.Integral) or n_classes < 1:
        raise VlalInputError(f"n_classes must be a positive integer; got {n_classes!r}")
    p = check_probs(probs, "probs")
    c = np.asarray(classes)
    if c.ndim != 1:
        raise VlalInputError(f"classes must be 1-D (one class per column of probs); got shape {c.shape}")
    if c.shape[0] != p.shape[1]:
        raise VlalInputError(
            f"classes has {c.shape[0]} entries but probs has {p.shape[1]} columns; pass the classifier's classes_"
        )
    if not np.issubdtype(c.dtype, np.integer):
        if np.issubdtype(c.dtype, np.floating) and np.isfinite(c).all() and np.all(np.mod(c, 1) == 0):
            c = c.astype(np.int64)
        else:
            raise VlalInputError(
                f"classes must be integer class ids 0..n_classes-1; got dtype {c.dtype} "
                "(encode string labels as integers first, e.g. with sklearn.preprocessing.LabelEncoder "
                "fitted on the full class list)"
            )
    c = c.astype(np.int64)
    bad = (c < 0) | (c >= n_classes)
    if bad.any():
        raise VlalInputError(f"classes holds {int(c[bad][0])}, outside [0, {int(n_classes)}) (n_classes={int(n_classes)})")
    if np.unique(c).size != c.size:
        vals, counts = np.unique(c, return_counts=True)
        raise VlalInputError(f"classes holds class {int(vals[counts > 1][0])} more than once")
    dtype = p.dtype if np.issubdtype(p.dtype, np.floating) else np.float64
    out = np.zeros((p.shape[0], int(n_classes)), dtype=dtype)
    out[:, c] = p
    return out
