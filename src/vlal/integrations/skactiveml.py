"""Any vlal strategy as a scikit-activeml pool query strategy.

>>> from skactiveml.classifier import SklearnClassifier
>>> from sklearn.linear_model import LogisticRegression
>>> from vlal.integrations.skactiveml import SkactivemlStrategy
>>> qs = SkactivemlStrategy("cec", random_state=0)
>>> clf = SklearnClassifier(LogisticRegression(), classes=range(10))
>>> idx = qs.query(X, y, clf, batch_size=20)  # doctest: +SKIP

Needs ``pip install -e ".[integrations]"`` in the vlal checkout (scikit-activeml); importing this module
imports scikit-activeml, ``import vlal`` does not.
"""

from __future__ import annotations

import numpy as np

try:
    from skactiveml.base import SingleAnnotatorPoolQueryStrategy, SkactivemlClassifier
    from skactiveml.utils import MISSING_LABEL, check_equal_missing_label, check_type, is_labeled
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "vlal.integrations.skactiveml needs scikit-activeml: pip install -e \".[integrations]\" in the vlal checkout "
        f"(or pip install scikit-activeml); import failed with: {err}"
    ) from err

from sklearn.base import clone
from sklearn.utils.validation import check_array, check_consistent_length

from ..exceptions import VlalInputError
from ._common import AlignedModel, align_classes, embed, resolve_strategy

__all__ = ["SkactivemlStrategy"]


class SkactivemlStrategy(SingleAnnotatorPoolQueryStrategy):
    """A vlal strategy (CEC, Entropy, PCB, ...) as a scikit-activeml query strategy.

    A subclass of ``skactiveml.base.SingleAnnotatorPoolQueryStrategy``: use it wherever
    scikit-activeml expects a pool query strategy (its loops, its wrappers,
    ``sklearn.base.clone``). :meth:`query` fits (a clone of) the classifier, takes its
    ``predict_proba`` for the pool and hands the pool to ``strategy.select``.

    Parameters
    ----------
    strategy : vlal.Strategy or str, default "cec"
        The vlal strategy, as an instance (cloned for every query, never modified) or a
        name understood by :func:`vlal.make_strategy` (``"cec"``, ``"pcb(entropy)"``,
        ``"cec[k=10]"``). Its own ``random_state`` is replaced by this adapter's.
    embedding : callable or None, default None
        The features the strategy sees (kNN, clustering): ``None`` uses ``X`` itself
        (e.g. when ``X`` already holds CLIP image features); a callable
        ``embedding(X) -> (n_samples, d)`` maps samples to features (e.g. a CLIP image
        encoder when ``X`` holds images). Precomputed features can also be passed per
        call, see :meth:`query`.
    missing_label : scalar or str or np.nan or None, default np.nan
        The value marking unlabeled samples in ``y`` (scikit-activeml convention).
    random_state : None, int or numpy.random.RandomState, default None
        scikit-activeml convention: a seed for the wrapped strategy is drawn from a copy
        of this state combined with the number of unlabeled samples, so the same
        ``(X, y)`` gives the same query and every round of a loop draws afresh. ``None``
        gives fresh randomness on every call (the wrapped strategy gets
        ``random_state=None``).

    Notes
    -----
    Class columns: ``clf.predict_proba`` gives one column per ``clf.classes_`` (all the
    task's classes when the scikit-activeml classifier was built with ``classes=...``;
    else the classes labeled so far). vlal sees those columns as classes ``0 .. K-1``;
    labels of labeled samples are mapped to the same columns; a labeled class the
    classifier does not know (``fit_clf=False`` with a classifier fitted elsewhere) gets a
    probability-0 column (:func:`vlal.align_probs`).

    Batches: vlal strategies pick the whole batch at once (CEC clusters the pool), so
    the utilities of a batch are the strategy's per-sample utilities (see
    ``strategy.select(..., return_utilities=True)``, e.g. CEC's ``U`` of Eq. 7), repeated
    for every batch row, with the samples picked before row ``j`` set to NaN in row ``j``
    (the shape and NaN convention scikit-activeml uses). They are informative, not the
    rule the picks follow: the picks are not simply their top ``batch_size``.
    """

    def __init__(self, strategy="cec", embedding=None, missing_label=MISSING_LABEL, random_state=None):
        super().__init__(missing_label=missing_label, random_state=random_state)
        self.strategy = strategy
        self.embedding = embedding

    def query(
        self,
        X,
        y,
        clf,
        fit_clf=True,
        sample_weight=None,
        candidates=None,
        batch_size=1,
        return_utilities=False,
        features=None,
    ):
        """Choose the samples whose labels are to be queried.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            All samples, labeled and unlabeled (the classifier's input; also the
            strategy's features unless ``embedding`` or ``features`` is given).
        y : array-like of shape (n_samples,)
            Labels, ``missing_label`` for unlabeled samples.
        clf : skactiveml.base.SkactivemlClassifier
            The classifier (e.g. ``skactiveml.classifier.SklearnClassifier(LogisticRegression(),
            classes=...)``); never modified.
        fit_clf : bool, default True
            Fit a clone of ``clf`` on ``(X, y, sample_weight)`` first; ``False`` uses
            ``clf`` as fitted.
        sample_weight : array-like of shape (n_samples,), optional
            Weights for fitting ``clf``.
        candidates : None, array-like of int (n_candidates,), or array-like of samples (n_candidates, n_features)
            ``None``: every unlabeled sample may be queried. Indices: only those samples
            of ``X`` (all of them unlabeled, else ``ValueError``). Samples (not
            necessarily in ``X``): the strategy's pool is then the labeled samples of
            ``X`` followed by the candidates (the other unlabeled samples of ``X`` are
            not used), and the result indexes ``candidates``. Samples need
            ``embedding`` or ``X`` itself as the features, not ``features``.
        batch_size : int, default 1
            Number of samples to query; larger than the number of candidates: reduced
            to it with a warning (scikit-activeml convention).
        return_utilities : bool, default False
            Also return the utilities (see the class notes).
        features : array-like of shape (n_samples, d), optional
            Precomputed features of ``X`` for the strategy (e.g. CLIP image features when
            the classifier works on other inputs). Not together with ``embedding``.

        Returns
        -------
        query_indices : ndarray of shape (batch_size,), int
            Positions into ``X`` (``candidates`` None or indices) or into ``candidates``
            (samples).
        utilities : ndarray of shape (batch_size, n_samples) or (batch_size, n_candidates), float64
            Only with ``return_utilities=True``; NaN for samples that could not be
            queried (labeled, not among the candidates, picked earlier in the batch).

        Raises
        ------
        TypeError
            ``clf`` is not a scikit-activeml classifier, ``fit_clf`` / ``return_utilities``
            not a bool, ``batch_size`` not an int, ``strategy`` neither a vlal strategy
            nor a name.
        ValueError
            Inconsistent shapes, labeled samples among the ``candidates``, ``features``
            with the wrong number of rows or together with ``embedding`` or with sample
            candidates, and every input error of ``strategy.select``.
        """
        X, y, candidates, batch_size, return_utilities = self._validate_data(
            X, y, candidates, batch_size, return_utilities, reset=True
        )
        check_type(clf, "clf", SkactivemlClassifier)
        check_equal_missing_label(clf.missing_label, self.missing_label_)
        check_type(fit_clf, "fit_clf", bool)
        if sample_weight is not None:
            sample_weight = check_array(sample_weight, ensure_2d=False)
            check_consistent_length(y, sample_weight)
        if features is not None and self.embedding is not None:
            raise VlalInputError("give either embedding (when constructing) or features (per query), not both")

        X_cand, mapping = self._transform_candidates(candidates, X, y, allow_only_unlabeled=True)
        labeled_idx = np.flatnonzero(is_labeled(y, self.missing_label_))
        if mapping is not None:  # candidates are rows of X
            pool_X, offset, cand = X, 0, np.asarray(mapping, dtype=np.int64)
            labeled = labeled_idx
            if features is not None:
                feats = np.asarray(features)
                if feats.ndim != 2 or feats.shape[0] != X.shape[0]:
                    raise VlalInputError(
                        f"features must have shape (n_samples, d) = ({X.shape[0]}, d); got {feats.shape}"
                    )
            else:
                feats = embed(self.embedding, X)
        else:  # candidates are new samples: pool = labeled rows of X, then the candidates
            if features is not None:
                raise VlalInputError(
                    "candidates given as samples cannot be matched with precomputed features; pass "
                    "candidates as indices into X, or an embedding callable instead of features"
                )
            pool_X = np.concatenate([X[labeled_idx], X_cand], axis=0)
            offset = labeled_idx.size
            labeled = np.arange(offset, dtype=np.int64)
            cand = np.arange(offset, offset + X_cand.shape[0], dtype=np.int64)
            feats = embed(self.embedding, pool_X)
        n_out = X.shape[0] if mapping is not None else X_cand.shape[0]

        if batch_size == 0:  # no candidates left (scikit-activeml warned already)
            empty = np.empty(0, dtype=int)
            return (empty, np.empty((0, n_out))) if return_utilities else empty

        if fit_clf:
            clf = clone(clf)
            if sample_weight is None:
                clf.fit(X, y)
            else:
                clf.fit(X, y, sample_weight)
        probs, codes, classes, positions = align_classes(clf.predict_proba(pool_X), clf.classes_, y[labeled_idx])
        # ALFA-Mix probes the classifier with feature mixes: only meaningful when the
        # features are the classifier's inputs.
        model = AlignedModel(clf, len(classes), positions) if (self.embedding is None and features is None) else None

        seed = None if self.random_state is None else int(self.random_state_.randint(0, 2**31 - 1))
        strategy = resolve_strategy(self.strategy, random_state=seed, set_random_state=True)
        picked, util = strategy.select(
            feats, probs, batch_size, labeled=labeled, labels=codes, model=model,
            candidates=cand, return_utilities=True,
        )
        query_indices = (np.asarray(picked, dtype=np.int64) - offset).astype(int)
        if not return_utilities:
            return query_indices
        util = np.asarray(util, dtype=np.float64)[offset:]
        utilities = np.tile(util, (batch_size, 1))
        for j in range(1, batch_size):
            utilities[j, query_indices[:j]] = np.nan
        return query_indices, utilities
