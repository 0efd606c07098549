"""Classifiers the active-learning loop tunes after every round (feature space, no torch).

The loop's tuner interface is two methods (see :class:`vlal.loop.Tuner`):

- ``fit(inputs, labels) -> self`` — tune on *all* labels so far, always starting again
  from the zero-shot state (the paper reloads zero-shot CLIP every round);
- ``predict_proba(inputs) -> (m, K)`` probabilities; before any ``fit`` these are the
  zero-shot probabilities.

The CLIP prompt tuners of :mod:`vlal.clip` implement the same two methods.

Feature-space tuners (no CLIP weights needed; all start at the zero-shot class
embeddings ``W0`` and are deterministic):

========================  ==============================================================
registry name             class
========================  ==============================================================
``anchored`` (default)    :class:`AnchoredTuner` -- evidence-following zero-shot anchor
``coop-shared``           :class:`SharedTransformTuner` -- CoOp-like, parameters shared
``kgcoop``                :class:`KgCoOpTuner` -- shared + KgCoOp penalty
``tip-adapter``           :class:`TipAdapter` -- training-free cache
``tip-adapter-f``         :class:`TipAdapterF` -- cache keys fine-tuned
``clap``                  :class:`CLAPTuner` -- class-adaptive constrained linear probe
``free``                  :class:`FreeEmbeddingTuner` -- free per-class embeddings
``zero-shot``             :class:`ZeroShotClassifier` -- no adaptation
========================  ==============================================================

See :func:`make_tuner` / :func:`available_tuners`.
"""

from __future__ import annotations

import abc
import inspect

import numpy as np
from scipy.optimize import minimize
from dataclasses import dataclass
from typing import Callable

from scipy.special import log_softmax, softmax

from ._validation import check_features, check_positive_int, check_temperature, l2_normalize, rows_per_chunk
from .exceptions import VlalInputError
from .scoring import _zero_shot_probs

__all__ = [
    "Tuner",
    "ZeroShotClassifier", "FeatureSpaceTuner", "FreeEmbeddingTuner", "AnchoredTuner", "SharedTransformTuner",
    "KgCoOpTuner", "TipAdapter", "TipAdapterF", "CLAPTuner", "cosine_softmax", "TunerSpec", "TUNERS",
    "DEFAULT_TUNER", "TUNER_ALIASES", "available_tuners", "make_tuner",
]


def cosine_softmax(features, class_embeddings, temperature: float = 0.01) -> np.ndarray:
    """CLIP's class probabilities (paper Eq. 1): ``softmax(cos(f(x), t_i) / T)``.

    The tuners' name for :func:`vlal.scoring.zero_shot_probs` (same kernel).

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
        Non-finite or zero-norm rows, mismatched ``d``, ``temperature`` not a finite number > 0.
    """
    x = l2_normalize(check_features(features, "features"), "features")
    w = l2_normalize(check_features(class_embeddings, "class_embeddings"), "class_embeddings")
    if x.shape[1] != w.shape[1]:
        raise VlalInputError(f"features has d={x.shape[1]} but class_embeddings has d={w.shape[1]}")
    return _zero_shot_probs(x, w, check_temperature(temperature))


class Tuner(abc.ABC):
    """What the loop and the harness need of a tuner: ``fit`` then ``predict_proba``.

    Attributes
    ----------
    inputs : {"features", "images"}
        What ``fit`` / ``predict_proba`` consume: cached image features (n, d), or images
        (paths or an image source; the CLIP prompt tuners VPT and MaPLe).
    """

    inputs: str = "features"

    @abc.abstractmethod
    def fit(self, inputs, labels) -> "Tuner":
        """Adapt to the labeled ``(inputs, labels)`` (all of them, from the start); returns ``self``.

        No labels: back to zero-shot. A fit that raises (bad labels or inputs) leaves the
        tuner as it was."""

    @abc.abstractmethod
    def predict_proba(self, inputs) -> np.ndarray:
        """Class probabilities, shape (n, K), rows summing to 1."""


class ZeroShotClassifier(Tuner):
    """Zero-shot CLIP on features: Eq. 1 with fixed class embeddings; ``fit`` changes nothing.

    Parameters
    ----------
    class_embeddings : array-like (K, d)
        Text embeddings of the class prompts (or the zero-shot proxy's prototypes).
    temperature : float, default 0.01
    """

    def __init__(self, class_embeddings, temperature: float = 0.01):
        self.class_embeddings = l2_normalize(check_features(class_embeddings, "class_embeddings"), "class_embeddings")
        self.temperature = check_temperature(temperature)

    @property
    def n_classes(self) -> int:
        """Number of classes ``K`` (rows of the class embeddings)."""
        return int(self.class_embeddings.shape[0])

    def fit(self, features, labels):
        _check_fit(features, labels, self.n_classes)  # checked as every tuner's, then ignored
        return self

    def predict_proba(self, features) -> np.ndarray:
        return cosine_softmax(features, self.class_embeddings, self.temperature)


class FeatureSpaceTuner(ZeroShotClassifier):
    """Free per-class embeddings (the benchmark's first CoOp stand-in; registry name ``free``).

    Not a faithful CoOp stand-in on real zero-shot CLIP: on ``imagenet_real_even`` it falls
    from 74 % to 25-54 % after 25 labels (free per-class embeddings let a labeled class move
    towards the image features and win on every image; see ``tuner_validation.md``).
    Kept for comparison; :class:`FreeEmbeddingTuner` is the same class under its honest name.

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
        x, y = _check_fit(features, labels, self.n_classes)  # before any change: a fit that raises changes nothing
        self.class_embeddings = self.initial_embeddings.copy()
        if y.size == 0:
            return self
        w0 = self.initial_embeddings.astype(np.float64)
        n_classes, d = w0.shape
        T, m, lam = self.temperature, x.shape[0], self.l2
        onehot = np.zeros((m, n_classes))
        onehot[np.arange(m), y] = 1.0

        def loss_grad(flat):
            w = flat.reshape(n_classes, d)
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
        self.class_embeddings = l2_normalize(res.x.reshape(n_classes, d), "class_embeddings")
        return self


FreeEmbeddingTuner = FeatureSpaceTuner
"""Honest name of :class:`FeatureSpaceTuner` (free per-class embeddings, registry name ``free``)."""


# --------------------------------------------------------------------------- shared helpers

def _check_fit(features, labels, n_classes: int):
    """Validated ``(x, y)`` for ``fit``: unit rows in float64 and int64 labels in ``[0, K)``.

    Empty ``labels`` give ``(None, empty)`` (the tuner then stays at zero-shot).
    """
    y = np.asarray(labels)
    if y.size == 0:
        return None, np.empty(0, dtype=np.int64)
    x = l2_normalize(check_features(features, "features"), "features").astype(np.float64)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise VlalInputError(f"labels must have shape ({x.shape[0]},) to match features; got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise VlalInputError(f"labels must be integer class ids in [0, {n_classes}); got dtype {y.dtype}")
    if y.min() < 0 or y.max() >= n_classes:
        raise VlalInputError(f"labels must be integer class ids in [0, {n_classes}); got {y.min()}..{y.max()}")
    return x, y.astype(np.int64)


def _check_nonneg(value, name: str) -> float:
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise VlalInputError(f"{name} must be a finite number >= 0; got {value!r}")
    return v


def _check_fraction(value, name: str) -> float:
    """``value`` as a float in ``[0, 1)``; anything else (bools, strings, NaN) raises naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise VlalInputError(f"{name} must be a number in [0, 1); got {value!r}")
    v = float(value)
    if not (0.0 <= v < 1.0):
        raise VlalInputError(f"{name} must be a number in [0, 1); got {value!r}")
    return v


def _onehot(y: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((y.size, n_classes))
    out[np.arange(y.size), y] = 1.0
    return out


def _cosine_ce(v: np.ndarray, x: np.ndarray, onehot: np.ndarray, temperature: float):
    """Mean cross-entropy of ``softmax(x normalise(v)^T / T)`` and its gradient w.r.t. ``v``."""
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    wn = v / norms
    logp = log_softmax(x @ wn.T / temperature, axis=1)
    m = x.shape[0]
    loss = -(logp * onehot).sum() / m
    g_wn = (np.exp(logp) - onehot).T @ x / (m * temperature)
    g_v = (g_wn - wn * (g_wn * wn).sum(axis=1, keepdims=True)) / norms
    return loss, g_v, wn


# --------------------------------------------------------------------------- evidence-anchored (default)

class AnchoredTuner(ZeroShotClassifier):
    """Zero-shot-anchored class embeddings whose pull to zero-shot follows the evidence (default).

    The benchmark's default feature-space stand-in for prompt tuning (registry name
    ``anchored``). Class embeddings ``w_c = w0_c + D_c`` minimise

    ``mean_i CE(softmax(z_i normalise(W)^T / T), y_i) + sum_c lambda_c ||D_c||^2``,
    ``lambda_c = strength / (1 + n_c) ** power``

    with ``n_c`` the number of labels of class ``c`` (L-BFGS, at most ``max_iter``
    iterations, from ``D = 0`` at every :meth:`fit`). Two design choices, both from the
    measurements in ``benchmarks/results/tuner_validation.md`` (issue 11):

    - *The prior yields to evidence per class*: a class without labels keeps its zero-shot
      embedding under the full penalty ``strength``, a class with ``n_c`` labels is pulled back
      ``(1 + n_c) ** power`` times less. This plays the role of CLAP's class-adaptive
      constraint (Silva-Rodriguez et al., CVPR 2024) and of KgCoOp's pull to the hand-crafted
      prompt (Yao et al., CVPR 2023), but follows the number of labels of each class, which
      the active-learning loop always knows, instead of a per-dataset validation search.
    - *No class may gain on every image at once*: ``D`` is kept orthogonal to the leading
      ``n_common`` right singular vectors of the labeled features (their common direction).
      Free class embeddings on real CLIP move towards the image cone (the modality gap),
      raise their cosine with every image and take over the predictions; CoOp cannot do this
      because its class embeddings stay outputs of the text encoder.

    ``strength = 1, power = 3, n_common = 1`` are fixed for all data (chosen once on
    ``imagenet_real_even`` and DTD, see the validation report; no per-dataset tuning).

    Optional *label smoothing* (``label_smoothing = eps > 0``, off by default; issue 12):
    the cross-entropy targets become ``(1 - eps) onehot(y_i) + eps / K`` (Szegedy et al.,
    CVPR 2016, Sec. 7). Without it the loss keeps falling until a labeled image's own class
    takes nearly all its probability, so ``D_c`` keeps growing and class ``c`` also wins
    test images of unlabeled classes that zero-shot got right (the "take-over" of
    ``benchmarks/results/diag_calibrated_mix.md``). With it the loss is smallest where
    ``p_y(x_i) = 1 - eps + eps / K`` (a logit margin of about ``log((1 - eps) K / eps)``),
    so the fit stops pushing there. Measurements: ``benchmarks/results/tunerfix_*.md``.
    Caution: smoothing also *pulls a confident labeled image's class down* to ``1 - eps``, i.e.
    moves other classes towards it; on well-separated features this breaks the classifier
    (vlal's synthetic pool, zero-shot 57.6 %: six CEC rounds end at 45.4 % with eps = 0.1,
    54.2 % with ``smoothing_by_unlabeled``, 87.0 % without). Check it on held-out labels first.

    Parameters
    ----------
    class_embeddings : array-like (K, d)
        ``W0``, the zero-shot class embeddings.
    temperature : float, default 0.01
    strength : float, default 1.0
        Penalty on a class with no label.
    power : float, default 3.0
        How fast the penalty shrinks with the labels of a class.
    n_common : int, default 1
        Common directions of the labeled features that ``D`` must not move along (0 = none).
    max_iter : int, default 100
        L-BFGS iterations.
    label_smoothing : float in [0, 1), default 0.0
        ``eps`` of the smoothed targets above; 0 = plain cross-entropy (the default, unchanged).
    smoothing_by_unlabeled : bool, default False
        Use ``eps * u`` instead of ``eps``, with ``u`` the share of the ``K`` classes that have
        no label yet: the smoothing guards classes without labels and fades as every class is
        labeled (with ``eps = 0.1`` fixed, DTD at 5 % of the pool, every class labeled, lost 1-3
        points; ``tunerfix_summary.md``).

    Raises
    ------
    vlal.VlalInputError
        Negative ``strength`` / ``power`` / ``n_common``, ``label_smoothing`` outside
        ``[0, 1)``, ``smoothing_by_unlabeled`` not a bool; from :meth:`fit`, labels out of ``[0, K)`` or features and labels of
        different lengths.
    """

    def __init__(self, class_embeddings, temperature: float = 0.01, strength: float = 1.0, power: float = 3.0,
                 n_common: int = 1, max_iter: int = 100, label_smoothing: float = 0.0,
                 smoothing_by_unlabeled: bool = False):
        super().__init__(class_embeddings, temperature)
        self.initial_embeddings = self.class_embeddings.copy()
        self.strength = _check_nonneg(strength, "strength")
        self.power = _check_nonneg(power, "power")
        if isinstance(n_common, bool) or int(n_common) != n_common or n_common < 0:
            raise VlalInputError(f"n_common must be an integer >= 0; got {n_common!r}")
        self.n_common = int(n_common)
        self.max_iter = check_positive_int(max_iter, "max_iter")
        self.label_smoothing = _check_fraction(label_smoothing, "label_smoothing")
        if not isinstance(smoothing_by_unlabeled, (bool, np.bool_)):
            raise VlalInputError(f"smoothing_by_unlabeled must be True or False; got {smoothing_by_unlabeled!r}")
        self.smoothing_by_unlabeled = bool(smoothing_by_unlabeled)

    def smoothing(self, labels) -> float:
        """The ``eps`` that :meth:`fit` uses for these labels (``label_smoothing``, times the share of
        classes without a label when ``smoothing_by_unlabeled``)."""
        eps = self.label_smoothing
        if self.smoothing_by_unlabeled:
            seen = np.unique(np.asarray(labels, dtype=np.int64)).size
            eps *= (self.n_classes - seen) / self.n_classes
        return float(eps)

    def penalties(self, labels) -> np.ndarray:
        """``lambda_c = strength / (1 + n_c) ** power`` for every class, shape (K,), float64."""
        counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=self.n_classes)
        return self.strength / (1.0 + counts) ** self.power

    def fit(self, features, labels):
        x, y = _check_fit(features, labels, self.n_classes)  # before any change: a fit that raises changes nothing
        self.class_embeddings = self.initial_embeddings.copy()
        if y.size == 0:
            return self
        w0 = self.initial_embeddings.astype(np.float64)
        n_classes, d = w0.shape
        lam = self.penalties(y)[:, None]
        u = np.linalg.svd(x, full_matrices=False)[2][: self.n_common].T if self.n_common else np.zeros((d, 0))
        onehot = _onehot(y, n_classes)
        eps = self.smoothing(y)
        if eps:  # rows still sum to 1, so _cosine_ce's gradient (p - target) holds
            onehot = (1.0 - eps) * onehot + eps / n_classes
        T = self.temperature

        def project(a):
            return a - (a @ u) @ u.T

        def loss_grad(flat):
            dlt = project(flat.reshape(n_classes, d))
            loss, g, _ = _cosine_ce(w0 + dlt, x, onehot, T)
            loss += float((lam * dlt * dlt).sum())
            return loss, project(g + 2 * lam * dlt).ravel()

        res = minimize(loss_grad, np.zeros(n_classes * d), jac=True, method="L-BFGS-B", options={"maxiter": self.max_iter})
        self.class_embeddings = l2_normalize(w0 + project(res.x.reshape(n_classes, d)), "class_embeddings")
        return self


# --------------------------------------------------------------------------- CoOp-like, shared parameters

class SharedTransformTuner(ZeroShotClassifier):
    """CoOp-like stand-in: one transform shared by all classes, CoOp's optimisation budget.

    Class embeddings ``W = W0 (I + A)`` with a single ``(d, d)`` matrix ``A`` (zero at
    every :meth:`fit`, so ``W = W0`` before training), logits ``z normalise(W)^T / T``.
    Like CoOp's context vectors (Zhou et al., IJCV 2022), the parameters are shared by
    every class, so the labels of a few classes move all class embeddings together; and
    like CoOp they are trained with SGD at a small learning rate for a fixed number of
    epochs, not to convergence. Defaults are CoOp's: SGD, lr 0.002, momentum 0.9, weight
    decay 0.005, cosine schedule, 200 epochs, batch 32 (method.md, paper protocol).

    Differences from CoOp: the shared parameters act linearly on the text embeddings
    instead of through the text encoder; the number of SGD steps is capped at
    ``max_steps`` (CoOp's 200 epochs are meant for at most 16 shots per class).

    Parameters
    ----------
    class_embeddings : array-like (K, d)
    temperature : float, default 0.01
    lr, momentum, weight_decay : float, defaults 0.002, 0.9, 0.005
    epochs : int, default 200
    batch_size : int, default 32
    max_steps : int, default 1000
        Cap on SGD steps (each costs O(n_classes d^2)): 200 epochs of 32 up to 160 labels, fewer epochs above.
    random_state : int, default 0
        Seeds the mini-batch order (a local generator; no global RNG).

    Raises
    ------
    ValueError
        Non-positive ``lr`` / ``epochs`` / ``batch_size`` / ``max_steps``; from :meth:`fit`,
        bad labels.
    """

    #: KgCoOp's weight of the pull to zero-shot (0 here; see :class:`KgCoOpTuner`).
    knowledge_weight = 0.0

    def __init__(self, class_embeddings, temperature: float = 0.01, lr: float = 0.002, momentum: float = 0.9,
                 weight_decay: float = 0.005, epochs: int = 200, batch_size: int = 32, max_steps: int = 1000,
                 random_state: int = 0):
        super().__init__(class_embeddings, temperature)
        self.initial_embeddings = self.class_embeddings.copy()
        if not float(lr) > 0:
            raise VlalInputError(f"lr must be > 0; got {lr!r}")
        self.lr = float(lr)
        self.momentum = _check_nonneg(momentum, "momentum")
        self.weight_decay = _check_nonneg(weight_decay, "weight_decay")
        self.epochs = check_positive_int(epochs, "epochs")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.max_steps = check_positive_int(max_steps, "max_steps")
        self.random_state = random_state
        self.transform = None

    def _embeddings(self, w0, a):
        return w0 + w0 @ a

    def fit(self, features, labels):
        x, y = _check_fit(features, labels, self.n_classes)  # before any change: a fit that raises changes nothing
        self.class_embeddings = self.initial_embeddings.copy()
        self.transform = None
        if y.size == 0:
            return self
        x = x.astype(np.float32)
        w0 = self.initial_embeddings.astype(np.float32)
        n_classes, d = w0.shape
        a = np.zeros((d, d), dtype=np.float32)
        vel = np.zeros_like(a)
        rng = np.random.default_rng(self.random_state)
        m = y.size
        n_batches = -(-m // self.batch_size)
        total = min(self.epochs * n_batches, self.max_steps)
        kg = self.knowledge_weight
        step = 0
        while step < total:
            order = rng.permutation(m)
            for b in range(n_batches):
                if step >= total:
                    break
                idx = order[b * self.batch_size : (b + 1) * self.batch_size]
                v = self._embeddings(w0, a)
                _, g_v, wn = _cosine_ce(v, x[idx], _onehot(y[idx], n_classes), self.temperature)
                if kg:  # KgCoOp: kg * mean_c ||normalise(w_c) - w0_c||^2
                    g_wn = 2 * kg * (wn - w0) / n_classes
                    norms = np.linalg.norm(v, axis=1, keepdims=True)
                    g_v = g_v + (g_wn - wn * (g_wn * wn).sum(axis=1, keepdims=True)) / norms
                grad = w0.T @ g_v.astype(np.float32) + self.weight_decay * a
                rate = self.lr * 0.5 * (1 + np.cos(np.pi * step / total))
                vel = self.momentum * vel + grad
                a -= np.float32(rate) * vel
                step += 1
        self.transform = a
        self.class_embeddings = l2_normalize(self._embeddings(w0, a), "class_embeddings")
        return self


class KgCoOpTuner(SharedTransformTuner):
    """KgCoOp-style stand-in: :class:`SharedTransformTuner` plus a pull to zero-shot.

    Adds KgCoOp's knowledge-guided term ``lambda * mean_c ||w_c - w0_c||^2`` (Yao et al.,
    "Visual-Language Prompt Tuning with Knowledge-guided Context Optimization", CVPR 2023;
    ``w_c`` the normalised tuned class embedding, ``w0_c`` the zero-shot one), with the
    paper's ``lambda = 8.0``. Other parameters as :class:`SharedTransformTuner`.
    """

    def __init__(self, class_embeddings, temperature: float = 0.01, kg_weight: float = 8.0, **kwargs):
        super().__init__(class_embeddings, temperature, **kwargs)
        self.knowledge_weight = _check_nonneg(kg_weight, "kg_weight")


# --------------------------------------------------------------------------- Tip-Adapter

class TipAdapter(ZeroShotClassifier):
    """Tip-Adapter (Zhang et al., ECCV 2022), training-free: zero-shot logits plus a cache model.

    ``logits(x) = z W0^T / T + alpha * exp(-beta (1 - z K^T)) L`` with ``K`` the normalised
    labeled features (cache keys) and ``L`` their one-hot labels (cache values); the
    affinity ``exp(-beta (1 - cos))`` is the paper's Eq. 3. Defaults ``alpha = 1``,
    ``beta = 5.5`` are the paper's ImageNet setting (the paper searches both on a
    validation set per dataset; vlal does not). Before any fit (empty cache) it is zero-shot.

    Parameters
    ----------
    class_embeddings : array-like (K, d)
    temperature : float, default 0.01
        ``T`` (CLIP's logit scale 100).
    alpha, beta : float, defaults 1.0 and 5.5

    Raises
    ------
    ValueError
        Negative ``alpha`` / ``beta``; from :meth:`fit`, bad labels.
    """

    def __init__(self, class_embeddings, temperature: float = 0.01, alpha: float = 1.0, beta: float = 5.5):
        super().__init__(class_embeddings, temperature)
        self.alpha = _check_nonneg(alpha, "alpha")
        self.beta = _check_nonneg(beta, "beta")
        self.cache_keys = None
        self.cache_values = None

    def affinity(self, features) -> np.ndarray:
        """Eq. 3 of Tip-Adapter: ``exp(-beta (1 - z K^T))``, shape (m, n_cache), float64."""
        if self.cache_keys is None:
            raise VlalInputError("the cache is empty: call fit with at least one label first")
        x = l2_normalize(check_features(features, "features"), "features").astype(np.float64)
        if x.shape[1] != self.cache_keys.shape[1]:
            raise VlalInputError(f"features has d={x.shape[1]} but the cache keys have d={self.cache_keys.shape[1]}")
        return np.exp(-self.beta * (1.0 - x @ self.cache_keys.T))

    def fit(self, features, labels):
        x, y = _check_fit(features, labels, self.n_classes)
        if y.size == 0:
            self.cache_keys = self.cache_values = None
            return self
        self.cache_keys = x
        self.cache_values = _onehot(y, self.n_classes)
        return self

    def logits(self, features) -> np.ndarray:
        """``z W0^T / T + alpha * affinity(z) L``, shape (m, K), float64."""
        x = l2_normalize(check_features(features, "features"), "features").astype(np.float64)
        if x.shape[1] != self.class_embeddings.shape[1]:
            raise VlalInputError(f"features has d={x.shape[1]} but class_embeddings has d={self.class_embeddings.shape[1]}")
        out = x @ self.class_embeddings.T.astype(np.float64) / self.temperature
        if self.cache_keys is not None:
            out += self.alpha * np.exp(-self.beta * (1.0 - x @ self.cache_keys.T)) @ self.cache_values
        return out

    def predict_proba(self, features) -> np.ndarray:
        if self.cache_keys is None:
            return super().predict_proba(features)
        step = rows_per_chunk(max(self.n_classes, self.cache_keys.shape[0]))
        feats = check_features(features, "features")
        out = np.empty((feats.shape[0], self.n_classes), dtype=np.float32)
        for s in range(0, feats.shape[0], step):
            out[s : s + step] = softmax(self.logits(feats[s : s + step]), axis=1)
        return out


class TipAdapterF(TipAdapter):
    """Tip-Adapter-F (Zhang et al., ECCV 2022): Tip-Adapter with the cache keys fine-tuned.

    The keys start at the labeled features and are trained by cross-entropy on the
    labeled set (the cache values and ``W0`` stay fixed), with the paper's settings:
    AdamW, lr 0.001, eps 1e-4, weight decay 0.01 (PyTorch's AdamW default), cosine
    schedule, 20 epochs, batch 256; ``alpha = 1``, ``beta = 5.5`` (ImageNet setting, not
    searched). Mini-batch order from a local generator seeded by ``random_state``.
    """

    def __init__(self, class_embeddings, temperature: float = 0.01, alpha: float = 1.0, beta: float = 5.5,
                 lr: float = 0.001, epochs: int = 20, batch_size: int = 256, weight_decay: float = 0.01,
                 random_state: int = 0):
        super().__init__(class_embeddings, temperature, alpha, beta)
        if not float(lr) > 0:
            raise VlalInputError(f"lr must be > 0; got {lr!r}")
        self.lr = float(lr)
        self.epochs = check_positive_int(epochs, "epochs")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.weight_decay = _check_nonneg(weight_decay, "weight_decay")
        self.random_state = random_state

    def fit(self, features, labels):
        super().fit(features, labels)
        if self.cache_keys is None:
            return self
        x, y = self.cache_keys.copy(), np.argmax(self.cache_values, axis=1)
        keys = self.cache_keys.copy()
        values = self.cache_values
        zs = x @ self.class_embeddings.T.astype(np.float64) / self.temperature
        m = y.size
        rng = np.random.default_rng(self.random_state)
        n_batches = -(-m // self.batch_size)
        total = self.epochs * n_batches
        mom1, mom2 = np.zeros_like(keys), np.zeros_like(keys)
        b1, b2, eps = 0.9, 0.999, 1e-4
        step = 0
        for _ in range(self.epochs):
            order = rng.permutation(m)
            for b in range(n_batches):
                idx = order[b * self.batch_size : (b + 1) * self.batch_size]
                xb = x[idx]
                aff = np.exp(-self.beta * (1.0 - xb @ keys.T))
                logits = zs[idx] + self.alpha * aff @ values
                g_logits = softmax(logits, axis=1)
                g_logits[np.arange(idx.size), y[idx]] -= 1.0
                g_logits /= idx.size
                g_aff = self.alpha * (g_logits @ values.T) * aff * self.beta  # d aff / d (x.k) = beta * aff
                grad = g_aff.T @ xb
                rate = self.lr * 0.5 * (1 + np.cos(np.pi * step / total))
                step += 1
                keys *= 1 - rate * self.weight_decay  # decoupled weight decay (AdamW)
                mom1 = b1 * mom1 + (1 - b1) * grad
                mom2 = b2 * mom2 + (1 - b2) * grad * grad
                keys -= rate * (mom1 / (1 - b1**step)) / (np.sqrt(mom2 / (1 - b2**step)) + eps)
        self.cache_keys = keys
        return self


# --------------------------------------------------------------------------- CLAP

class CLAPTuner(ZeroShotClassifier):
    """CLAP: zero-shot-initialised linear probe with a class-adaptive constraint.

    Silva-Rodriguez, Hajimiri, Ben Ayed, Dolz, "A Closer Look at the Few-Shot Adaptation of
    Large Vision-Language Models", CVPR 2024. Class prototypes ``w_c`` start at ``W0``;
    logits ``z normalise(W)^T / T``; the objective is

    ``mean_i CE_i + mean_c alpha_c ||w_c - w0_c||^2``

    where ``alpha_c`` is the zero-shot model's mean probability of class ``c`` on the
    labeled examples of class ``c`` (CLAP's initialisation of the multipliers from
    zero-shot performance on the support set, kept fixed). A class with no label (which
    CLAP's few-shot setting never has) gets ``unlabeled_weight`` (default 1, the fully
    constrained value). Optimised with L-BFGS for at most ``max_iter`` iterations (CLAP
    trains with SGD, lr 0.1, batch 256, 300 epochs on un-normalised text embeddings; with
    unit-norm ``W0`` that learning rate diverges, so the constrained objective is solved
    directly instead).

    Parameters
    ----------
    class_embeddings : array-like (K, d)
    temperature : float, default 0.01
    max_iter : int, default 100
    unlabeled_weight : float, default 1.0
    """

    def __init__(self, class_embeddings, temperature: float = 0.01, max_iter: int = 100,
                 unlabeled_weight: float = 1.0):
        super().__init__(class_embeddings, temperature)
        self.initial_embeddings = self.class_embeddings.copy()
        self.max_iter = check_positive_int(max_iter, "max_iter")
        self.unlabeled_weight = _check_nonneg(unlabeled_weight, "unlabeled_weight")
        self.constraint_weights = None

    def fit(self, features, labels):
        x, y = _check_fit(features, labels, self.n_classes)  # before any change: a fit that raises changes nothing
        self.class_embeddings = self.initial_embeddings.copy()
        if y.size == 0:
            self.constraint_weights = None
            return self
        w0 = self.initial_embeddings.astype(np.float64)
        n_classes, d = w0.shape
        p0 = softmax(x @ w0.T / self.temperature, axis=1)[np.arange(y.size), y]
        counts = np.bincount(y, minlength=n_classes)
        alpha = np.full(n_classes, self.unlabeled_weight)
        seen = counts > 0
        alpha[seen] = np.bincount(y, weights=p0, minlength=n_classes)[seen] / counts[seen]
        self.constraint_weights = alpha
        lam = alpha[:, None] / n_classes
        onehot = _onehot(y, n_classes)

        def loss_grad(flat):
            v = flat.reshape(n_classes, d)
            loss, g, _ = _cosine_ce(v, x, onehot, self.temperature)
            diff = v - w0
            return loss + float((lam * diff * diff).sum()), (g + 2 * lam * diff).ravel()

        res = minimize(loss_grad, w0.ravel(), jac=True, method="L-BFGS-B", options={"maxiter": self.max_iter})
        self.class_embeddings = l2_normalize(res.x.reshape(n_classes, d), "class_embeddings")
        return self


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class TunerSpec:
    """One registry entry.

    Attributes
    ----------
    name : str
    factory : callable ``W0 -> tuner``, or None for the CLIP prompt tuners (built by the
        CLI from an open_clip model and class names).
    inputs : {"features", "images"}
        What ``fit`` / ``predict_proba`` consume.
    summary : str
    clip_class : str, optional
        For the CLIP prompt tuners: the class name in :mod:`vlal.clip` (a name, so that
        reading the registry imports no torch).
    """

    name: str
    factory: Callable | None
    inputs: str
    summary: str
    clip_class: str | None = None


TUNERS: dict[str, TunerSpec] = {s.name: s for s in [
    TunerSpec("anchored", AnchoredTuner, "features",
              "zero-shot-anchored embeddings, pull shrinking with labels per class (default stand-in)"),
    TunerSpec("coop-shared", SharedTransformTuner, "features",
              "CoOp-like: one transform of W0 shared by all classes, CoOp's SGD budget"),
    TunerSpec("kgcoop", KgCoOpTuner, "features", "coop-shared + KgCoOp pull to zero-shot (lambda 8)"),
    TunerSpec("tip-adapter", TipAdapter, "features", "training-free Tip-Adapter (alpha 1, beta 5.5)"),
    TunerSpec("tip-adapter-f", TipAdapterF, "features", "Tip-Adapter-F: cache keys fine-tuned"),
    TunerSpec("clap", CLAPTuner, "features", "CLAP: class-adaptive constrained linear probe"),
    TunerSpec("free", FreeEmbeddingTuner, "features", "free per-class embeddings (first stand-in; collapses on real CLIP)"),
    TunerSpec("zero-shot", ZeroShotClassifier, "features", "no adaptation"),
    TunerSpec("coop", None, "features", "CLIP CoOp (needs the [clip] extra and CLIP weights)", "CoOp"),
    TunerSpec("vpt", None, "images", "CLIP VPT (needs the [clip] extra, CLIP weights and image paths)", "VPT"),
    TunerSpec("maple", None, "images", "CLIP MaPLe (needs the [clip] extra, CLIP weights and image paths)", "MaPLe"),
]}

#: Old names still accepted by the CLI -> registry names.
TUNER_ALIASES: dict[str, str] = {"feature": "free", "zeroshot": "zero-shot"}

#: Registry name of the benchmark's default tuner.
DEFAULT_TUNER = "anchored"


def available_tuners(inputs: str | None = None, feature_only: bool = False) -> list[str]:
    """Registry names, in registry order; ``feature_only`` keeps those built from ``W0`` alone."""
    return [n for n, s in TUNERS.items()
            if (inputs is None or s.inputs == inputs) and (not feature_only or s.factory is not None)]


def make_tuner(name: str, class_embeddings, **kwargs):
    """Build the feature-space tuner ``name`` from the zero-shot class embeddings ``W0``.

    Raises
    ------
    ValueError
        Unknown name, a CLIP prompt tuner (``coop``, ``vpt``, ``maple``: build those with
        :mod:`vlal.clip`), or a parameter the tuner does not take.
    """
    spec = TUNERS.get(name)
    if spec is None:
        raise VlalInputError(f"unknown tuner {name!r}; choose from {available_tuners()}")
    if spec.factory is None:
        raise VlalInputError(f"tuner {name!r} is a CLIP prompt tuner: build it with vlal.clip "
                             f"(or `vlal bench --tuner {name}`), not from W0 alone")
    try:
        inspect.signature(spec.factory).bind(class_embeddings, **kwargs)
    except TypeError as err:  # an unknown or repeated parameter: name the tuner and what it takes
        params = [p for p in inspect.signature(spec.factory).parameters if p not in ("self", "class_embeddings")]
        raise VlalInputError(f"tuner {name!r}: {err}; its parameters: {params}") from None
    return spec.factory(class_embeddings, **kwargs)
