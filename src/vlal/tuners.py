"""Classifiers the active-learning loop tunes after every round (feature space, no torch).

The loop's tuner interface is two methods (see :class:`vlal.loop.Tuner`):

- ``fit(inputs, labels) -> self`` — tune on *all* labels so far, always starting again
  from the zero-shot state (the paper reloads zero-shot CLIP every round);
- ``predict_proba(inputs) -> (m, K)`` probabilities; before any ``fit`` these are the
  zero-shot probabilities.

The CLIP prompt tuners of :mod:`vlal.clip` implement the same two methods.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax

from ._validation import check_features, check_positive_int, l2_normalize, rows_per_chunk
from .exceptions import VlalInputError

__all__ = ["ZeroShotClassifier", "FeatureSpaceTuner", "cosine_softmax"]


def cosine_softmax(features, class_embeddings, temperature: float = 0.01) -> np.ndarray:
    """CLIP's class probabilities (paper Eq. 1): ``softmax(cos(f(x), t_i) / T)``.

    Parameters
    ----------
    features : array-like (m, d)
        Image features (normalised internally).
    class_embeddings : array-like (K, d)
        One embedding per class (text embeddings, or prototypes); normalised internally.
    temperature : float, default 0.01
        ``T`` of Eq. 1 (CLIP's learned logit scale is 1 / 0.01 = 100).

    Returns
    -------
    ndarray (m, K), float32

    Raises
    ------
    ValueError
        Non-finite or zero-norm rows, mismatched ``d``, ``temperature <= 0``.
    """
    x = l2_normalize(check_features(features, "features"), "features")
    w = l2_normalize(check_features(class_embeddings, "class_embeddings"), "class_embeddings")
    if x.shape[1] != w.shape[1]:
        raise VlalInputError(f"features has d={x.shape[1]} but class_embeddings has d={w.shape[1]}")
    if not temperature > 0:
        raise VlalInputError(f"temperature must be > 0; got {temperature}")
    out = np.empty((x.shape[0], w.shape[0]), dtype=np.float32)
    step = rows_per_chunk(w.shape[0])
    for s in range(0, x.shape[0], step):
        out[s : s + step] = softmax((x[s : s + step] @ w.T).astype(np.float64) / temperature, axis=1)
    return out


class ZeroShotClassifier:
    """Zero-shot CLIP on features: Eq. 1 with fixed class embeddings; ``fit`` changes nothing.

    Parameters
    ----------
    class_embeddings : array-like (K, d)
        Text embeddings of the class prompts (or the zero-shot proxy's prototypes).
    temperature : float, default 0.01
    """

    def __init__(self, class_embeddings, temperature: float = 0.01):
        self.class_embeddings = l2_normalize(check_features(class_embeddings, "class_embeddings"), "class_embeddings")
        self.temperature = float(temperature)

    @property
    def n_classes(self) -> int:
        return int(self.class_embeddings.shape[0])

    def fit(self, features, labels):
        return self

    def predict_proba(self, features) -> np.ndarray:
        return cosine_softmax(features, self.class_embeddings, self.temperature)


class FeatureSpaceTuner(ZeroShotClassifier):
    """Feature-space stand-in for CoOp: tune the class embeddings themselves.

    Class embeddings ``W`` start at the zero-shot ``W0``; logits are
    ``normalise(z) normalise(W)^T / T``; the mean cross-entropy on the labeled
    features is minimised with L-BFGS (scipy) for at most ``max_iter`` iterations.
    Every :meth:`fit` restarts from ``W0`` (the paper reloads zero-shot CLIP each round).
    Like CoOp, the classifier keeps CLIP's cosine / temperature form, and classes with
    no labels move only through the softmax's negative terms.

    Parameters
    ----------
    class_embeddings : array-like (K, d)
        ``W0``, the zero-shot class embeddings.
    temperature : float, default 0.01
    max_iter : int, default 100
        L-BFGS iterations (the stand-in for CoOp's epoch budget).
    l2 : float, default 0.0
        Optional penalty ``l2 * ||W - W0||^2`` that keeps ``W`` near zero-shot.

    Raises
    ------
    ValueError
        From :meth:`fit`: labels out of ``[0, K)``, or features/labels of different lengths.
    """

    def __init__(self, class_embeddings, temperature: float = 0.01, max_iter: int = 100, l2: float = 0.0):
        super().__init__(class_embeddings, temperature)
        self.initial_embeddings = self.class_embeddings.copy()
        self.max_iter = check_positive_int(max_iter, "max_iter")
        self.l2 = float(l2)

    def fit(self, features, labels):
        self.class_embeddings = self.initial_embeddings.copy()
        y = np.asarray(labels)
        if y.size == 0:
            return self
        x = l2_normalize(check_features(features, "features"), "features").astype(np.float64)
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise VlalInputError(f"labels must have shape ({x.shape[0]},) to match features; got {y.shape}")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= self.n_classes:
            raise VlalInputError(f"labels must be integer class ids in [0, {self.n_classes}); got {y.min()}..{y.max()}")
        w0 = self.initial_embeddings.astype(np.float64)
        K, d = w0.shape
        T, m, lam = self.temperature, x.shape[0], self.l2
        onehot = np.zeros((m, K))
        onehot[np.arange(m), y] = 1.0

        def loss_grad(flat):
            w = flat.reshape(K, d)
            norms = np.linalg.norm(w, axis=1, keepdims=True)
            wn = w / norms
            logits = x @ wn.T / T
            logp = log_softmax(logits, axis=1)
            loss = -(logp * onehot).sum() / m
            g_logits = (np.exp(logp) - onehot) / (m * T)
            g_wn = g_logits.T @ x
            # backprop through w / ||w||
            g_w = (g_wn - wn * (g_wn * wn).sum(axis=1, keepdims=True)) / norms
            if lam:
                diff = w - w0
                loss += lam * (diff * diff).sum()
                g_w += 2 * lam * diff
            return loss, g_w.ravel()

        res = minimize(loss_grad, w0.ravel(), jac=True, method="L-BFGS-B", options={"maxiter": self.max_iter})
        self.class_embeddings = l2_normalize(res.x.reshape(K, d), "class_embeddings")
        return self
