"""Any vlal strategy as a modAL query strategy.

>>> from modAL.models import ActiveLearner
>>> from sklearn.linear_model import LogisticRegression
>>> from vlal.integrations.modal import ModalStrategy
>>> learner = ActiveLearner(LogisticRegression(), query_strategy=ModalStrategy("cec", classes=range(10)),
...                         X_training=X0, y_training=y0)  # doctest: +SKIP
>>> idx, rows = learner.query(X_pool, n_instances=20)  # doctest: +SKIP

The adapter itself needs only vlal; modAL (``pip install -e ".[integrations]"`` in the vlal checkout) is what
calls it.
"""

from __future__ import annotations

import numpy as np

from ..exceptions import VlalInputError
from ._common import AlignedModel, align_classes, check_count, embed, resolve_strategy

__all__ = ["ModalStrategy"]


class ModalStrategy:
    """A vlal strategy as a modAL query strategy ``(classifier, X_pool, n_instances)``.

    Pass it as ``query_strategy`` to ``modAL.models.ActiveLearner``; ``learner.query(X_pool,
    n_instances=b)`` then returns ``(indices into X_pool, X_pool[indices])`` as with
    modAL's own strategies.

    Parameters
    ----------
    strategy : vlal.Strategy or str, default "cec"
        The vlal strategy, as an instance (cloned once, on the first call; the caller's
        object is never modified) or a name understood by :func:`vlal.make_strategy`.
    classes : array-like, optional
        Every class of the task. A scikit-learn classifier fitted on the labels so far
        has ``predict_proba`` columns only for the classes it has seen
        (``classifier.classes_``); with ``classes`` they are aligned to all of them
        (:func:`vlal.align_probs`; unseen classes get probability 0), so the strategy
        always sees the same ``K``. Default: the classifier's classes (plus any labeled
        class it lacks).
    embedding : callable or None, default None
        Features for the strategy: ``None`` uses the samples themselves (e.g. CLIP
        features); a callable maps samples to features ``(n, d)``.
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState, optional
        Replaces the strategy's own ``random_state`` when given. A Generator or
        RandomState advances from call to call (each round draws afresh); an int repeats
        the same draws on every call.
    use_labeled : bool, default True
        Give the strategy the learner's labeled set (``learner.X_training``,
        ``learner.y_training``) as labeled rows of its pool: label-aware strategies (PCB,
        ALFA-Mix) read the labels, and CEC/CoreSet see the labeled samples as context.
        Rows of ``X_pool`` are never treated as labeled: remove queried rows from
        ``X_pool`` as modAL's examples do.

    Notes
    -----
    An unfitted classifier (a learner started without data) gives uniform probabilities
    over ``classes`` (one column without ``classes``); CEC then clusters by features
    alone, as in the paper's first round without a model.
    """

    def __init__(self, strategy="cec", *, classes=None, embedding=None, random_state=None, use_labeled=True):
        self.strategy = strategy
        self.classes = classes
        self.embedding = embedding
        self.random_state = random_state
        self.use_labeled = use_labeled
        self._strategy = None

    def __repr__(self) -> str:
        return f"ModalStrategy(strategy={self.strategy!r})"

    def _resolved(self):
        if self._strategy is None:
            self._strategy = resolve_strategy(
                self.strategy, random_state=self.random_state, set_random_state=self.random_state is not None
            )
        return self._strategy

    def __call__(self, classifier, X_pool, n_instances=1, **kwargs):
        """Choose ``n_instances`` rows of ``X_pool`` (the modAL query-strategy protocol).

        Parameters
        ----------
        classifier : modAL learner or scikit-learn classifier
            Anything with ``predict_proba``; a modAL learner's ``estimator.classes_`` and
            ``X_training`` / ``y_training`` are used when present.
        X_pool : array-like of shape (m, ...)
            The unlabeled samples to choose from.
        n_instances : int, default 1
            How many to choose, ``<= m``.
        **kwargs
            Not accepted (a ``TypeError`` names them), so that a misspelled option is not
            silently ignored.

        Returns
        -------
        query_idx : ndarray of shape (n_instances,), int64
            Positions into ``X_pool``.
        utilities : ndarray of shape (n_instances,), float64
            The strategy's utility of each chosen row (modAL's "metrics": what
            ``learner.query(..., return_metrics=True)`` returns).

        Raises
        ------
        TypeError
            Unknown keyword arguments, ``n_instances`` not an int, a classifier without
            ``predict_proba``.
        ValueError
            ``n_instances`` < 1 or above the number of rows of ``X_pool``, a label the
            ``classes`` do not list, and every input error of ``strategy.select``.
        """
        if kwargs:
            raise TypeError(f"ModalStrategy got unexpected keyword arguments {sorted(kwargs)}")
        n_instances = check_count(n_instances, "n_instances")
        if not callable(getattr(classifier, "predict_proba", None)):
            raise TypeError(f"classifier must have predict_proba; got {type(classifier).__name__}")
        m = X_pool.shape[0] if hasattr(X_pool, "shape") else len(X_pool)
        if n_instances > m:
            raise VlalInputError(f"n_instances={n_instances} exceeds the {m} rows of X_pool")

        X_lab, y_lab = None, np.empty(0)
        if self.use_labeled and getattr(classifier, "X_training", None) is not None:
            y_train = getattr(classifier, "y_training", None)
            if y_train is not None and len(y_train):
                X_lab, y_lab = classifier.X_training, np.asarray(y_train).ravel()

        estimator = getattr(classifier, "estimator", classifier)
        clf_classes = getattr(estimator, "classes_", None)
        parts = [X_pool] if X_lab is None else [X_lab, X_pool]
        feats = np.concatenate([embed(self.embedding, part) for part in parts], axis=0)
        if clf_classes is None:  # not fitted: uniform over the known classes
            known = self.classes if self.classes is not None else (np.unique(y_lab) if y_lab.size else [0])
            clf_classes = np.asarray(known)
            probs = np.full((feats.shape[0], len(clf_classes)), 1.0 / len(clf_classes))
            model = None
        else:
            probs = np.concatenate([np.asarray(classifier.predict_proba(part)) for part in parts], axis=0)
            model = classifier
        probs, codes, classes, positions = align_classes(probs, clf_classes, y_lab, self.classes)
        if model is not None:
            model = AlignedModel(model, len(classes), positions) if self.embedding is None else None

        offset = 0 if X_lab is None else feats.shape[0] - m
        picked, util = self._resolved().select(
            feats, probs, n_instances,
            labeled=np.arange(offset, dtype=np.int64), labels=codes if offset else None, model=model,
            candidates=np.arange(offset, offset + m, dtype=np.int64), return_utilities=True,
        )
        picked = np.asarray(picked, dtype=np.int64)
        return picked - offset, np.asarray(util, dtype=np.float64)[picked]
