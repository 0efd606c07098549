"""ALFA-Mix: feature mixing with class anchors (Parvaneh et al., CVPR 2022)."""

from __future__ import annotations

import numbers

import numpy as np

from .._validation import PROB_ATOL, check_param, l2_normalize, rows_per_chunk, seed_int
from ..exceptions import VlalInputError
from ..scoring import _zero_shot_probs
from .._validation import copy_groups
from ._distinct import replace_duplicates
from .base import Pool, Strategy
from .clustering import cluster_nearest
from ._register import register

__all__ = ["ALFAMix"]


def _class_anchors(z_lab: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labeled classes (sorted) and the mean normalised labeled feature of each, (C, d) float32."""
    classes, inv = np.unique(labels, return_inverse=True)
    sums = np.zeros((classes.size, z_lab.shape[1]), dtype=np.float64)
    np.add.at(sums, inv, z_lab)
    anchors = sums / np.bincount(inv, minlength=classes.size)[:, None]
    return classes, anchors.astype(np.float32)


def _predict(model, x: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """``argmax model.predict_proba(x)`` with the output checked.

    The output must be an (m, n_classes) matrix of class probabilities: finite,
    non-negative, rows summing to 1 (an all-zero row is refused).
    """
    p = np.asarray(model.predict_proba(x))
    want = "n_classes" if n_classes is None else n_classes
    if p.ndim != 2 or p.shape[0] != x.shape[0] or (n_classes is not None and p.shape[1] != n_classes):
        hint = ""
        if p.ndim == 2 and n_classes is not None and p.shape[1] < n_classes:
            hint = (
                "; a classifier fitted on a subset of the classes must be wrapped so that its "
                "predict_proba returns vlal.align_probs(clf.predict_proba(x), clf.classes_, n_classes)"
            )
        raise VlalInputError(
            f"model.predict_proba returned shape {p.shape} for {x.shape[0]} rows; expected "
            f"({x.shape[0]}, {want}), one column per column of probs{hint}"
        )
    if not np.issubdtype(p.dtype, np.number) or not np.isfinite(p).all():
        raise VlalInputError("model.predict_proba returned NaN, inf or non-numbers")
    if (p < 0).any():
        raise VlalInputError("model.predict_proba returned negative values; class probabilities are expected")
    sums = p.sum(axis=1, dtype=np.float64)
    off = np.abs(sums - 1.0) > PROB_ATOL
    if off.any():
        row = int(np.flatnonzero(off)[0])
        raise VlalInputError(
            f"model.predict_proba returned a row summing to {sums[row]:.6g}, not 1 (e.g. all zeros); "
            "class probabilities are expected"
        )
    return p.argmax(axis=1)


def _model_flips(model, z: np.ndarray, anchors: np.ndarray, a: float, n_classes: int | None = None) -> np.ndarray:
    """Per row, how many mixes ``(1 - a) z + a * anchor`` change the predicted class (int64)."""
    m = z.shape[0]
    flips = np.zeros(m, dtype=np.int64)
    step = rows_per_chunk(max(z.shape[1], n_classes or 1))
    for s in range(0, m, step):
        zc = z[s : s + step]
        base = _predict(model, zc, n_classes)
        for anchor in anchors:
            mixed = (1.0 - a) * zc + a * anchor
            flips[s : s + zc.shape[0]] += _predict(model, mixed.astype(np.float32), n_classes) != base
    return flips


def _prototype_flips(z: np.ndarray, anchors: np.ndarray, a: float) -> np.ndarray:
    """Flip counts under the fallback classifier: cosine to the normalised anchors, softmax T=0.01.

    Softmax and the norm of the mixed feature do not change the argmax, and the logits
    are linear in the mix: ``(1 - a) <z, p_c> + a <anchor, p_c>``, so no mix is built.
    """
    protos = anchors / np.maximum(np.linalg.norm(anchors, axis=1, keepdims=True), 1e-12)
    anchor_logits = anchors @ protos.T  # (C, C)
    m = z.shape[0]
    flips = np.zeros(m, dtype=np.int64)
    step = rows_per_chunk(protos.shape[0])
    for s in range(0, m, step):
        logits = np.asarray(z[s : s + step] @ protos.T, dtype=np.float64)
        base = logits.argmax(axis=1)
        for row in anchor_logits:
            mixed = (1.0 - a) * logits + a * row
            flips[s : s + logits.shape[0]] += mixed.argmax(axis=1) != base
    return flips


class _PrototypeClassifier:
    """Cosine similarity to class prototypes, softmax with temperature ``T``.

    The fallback classifier written out as a model (the reference that the shortcut in
    :func:`_prototype_flips` is tested against).
    """

    def __init__(self, prototypes: np.ndarray, temperature: float = 0.01):
        self.prototypes = prototypes / np.maximum(np.linalg.norm(prototypes, axis=1, keepdims=True), 1e-12)
        self.temperature = temperature

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        z = np.asarray(features, dtype=np.float64)
        z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        return _zero_shot_probs(z, self.prototypes, self.temperature, dtype=np.float64)  # Eq. 1


@register("alfamix")
class ALFAMix(Strategy):
    """Active Learning by FeAture Mixing.

    For every candidate ``z`` (L2-normalised feature) and every anchor (mean normalised
    labeled feature of one labeled class) the mix ``(1 - a) z + a * anchor`` is classified;
    a candidate whose predicted class differs from that of ``z`` for at least one anchor is
    a *flip*. The flips are clustered with K-Means into ``budget`` clusters (unweighted,
    :func:`vlal.weighted_kmeans`) and the flip nearest to each centre is queried
    (:func:`vlal.nearest_to_centers`). With at most ``budget`` flips all of them are taken
    and the rest is filled with seeded uniform draws from the other candidates (no duplicates).
    With nothing labeled it falls back to :class:`~vlal.Random` (paper Sec. 6); labeled
    rows without ``labels`` are an error (the anchors need the classes), and every label
    must be a column of ``probs`` (see :func:`vlal.align_probs`).

    Duplicates: as CEC, no two picks that are copies of one image (normalised rows within
    the copy tolerance) while a candidate of another image remains (see :class:`~vlal.CEC`).

    Utilities (``select(..., return_utilities=True)``): for each candidate, the number
    of anchors (labeled classes) whose mix changes its predicted class; the flips are
    the candidates with utility > 0 (0 everywhere in the random first round).

    Interpolation weight: one scalar ``a = alpha_cap`` for every dimension (the authors'
    cap, 1/32 by default). The authors' gradient-based closed form needs the loss gradient
    w.r.t. the feature, which a black-box ``predict_proba`` does not expose. For a linear
    (or cosine) classifier the set of ``a`` on ``[0, 1]`` where the prediction stays that of
    ``z`` is an interval containing 0, so "flips for some ``a <= alpha_cap``" is the same as
    "flips at ``a = alpha_cap``".

    Classifier: ``select(..., model=obj)`` with ``obj.predict_proba(features (m, d)) -> (m, K)``,
    probed with the normalised features and the mixes. With ``model=None`` a fallback is
    used: cosine similarity to the normalised class anchors (prototypes), softmax with
    temperature 0.01 (the CLIP temperature), i.e. the nearest-prototype class among the
    labeled classes.

    Parameters
    ----------
    alpha_cap : float, default 1/32
        Interpolation weight ``a``, in ``(0, 1]``.
    n_iter : int, default 20
        K-Means iterations.
    random_state : None, int, numpy Generator or RandomState
        Seeds K-Means, the filling draws and the round-1 random fallback.

    Raises
    ------
    ValueError
        (from :meth:`select`) ``alpha_cap`` outside ``(0, 1]``; labeled rows without
        ``labels``; ``model.predict_proba`` returns a wrongly shaped array (not one
        column per column of ``probs``), NaN / inf, negative values or rows that do not
        sum to 1 (e.g. all zeros).

    References
    ----------
    A. Parvaneh, E. Abbasnejad, D. Teney, G. Haffari, A. van den Hengel and J. Q. Shi,
    "Active Learning by Feature Mixing", CVPR 2022.
    """

    requires_labeled = True
    reads_labels = True

    def __init__(self, alpha_cap: float = 1 / 32, n_iter: int = 20, *, random_state=None):
        self.alpha_cap = alpha_cap
        self.n_iter = n_iter
        self.random_state = random_state

    def _check_params(self) -> None:
        check_param(self.alpha_cap, "alpha_cap", numbers.Real, min_val=0, max_val=1, include_boundaries="right")
        check_param(self.n_iter, "n_iter", numbers.Integral, min_val=1)

    def flips(self, z_cand: np.ndarray, z_lab: np.ndarray, labels: np.ndarray, model=None) -> np.ndarray:
        """Boolean mask (m,) of the candidates whose prediction changes under some mix.

        Parameters
        ----------
        z_cand : ndarray (m, d), float32
            Normalised candidate features.
        z_lab : ndarray (l, d), float32
            Normalised labeled features.
        labels : ndarray (l,), int
            Their classes.
        model : object with ``predict_proba``, optional
            The classifier; ``None`` -> nearest class prototype (see the class docstring).
        """
        self._check_params()
        return self._flip_counts(z_cand, z_lab, labels, model) > 0

    def _flip_counts(self, z_cand, z_lab, labels, model, n_classes=None) -> np.ndarray:
        _, anchors = _class_anchors(z_lab, labels)
        a = float(self.alpha_cap)
        if model is None:
            return _prototype_flips(z_cand, anchors, a)
        if not callable(getattr(model, "predict_proba", None)):
            raise VlalInputError(f"model must have a predict_proba(features) method; got {type(model).__name__}")
        return _model_flips(model, z_cand, anchors, a, n_classes)

    def _query(self, pool: Pool, budget: int, rng: np.random.Generator):
        cand = pool.candidates
        z = l2_normalize(pool.features[cand], "features")
        z_lab = l2_normalize(pool.features[pool.labeled], "features")
        counts = self._flip_counts(z, z_lab, pool.labels, pool.model, pool.probs.shape[1])
        flip = np.flatnonzero(counts > 0)
        util = counts.astype(np.float64)
        groups = copy_groups(z)  # copies of one image (the duplicate rule)
        if flip.size <= budget:
            rest = np.flatnonzero(counts == 0)
            fill = rng.choice(rest, size=budget - flip.size, replace=False)
            picks = replace_duplicates(z, np.concatenate([flip, fill]), None, rng, groups=groups)
            return cand[picks], util
        seed = seed_int(self.random_state, rng)
        zf = z[flip]
        near, centers, _ = cluster_nearest(zf, None, budget, seed, self.n_iter)  # the clustering template's step
        picks = flip[replace_duplicates(zf, near, centers, groups=groups[flip])]
        # flips exhausted but duplicates left: the nearest distinct non-flips serve the rest
        return cand[replace_duplicates(z, picks, centers, groups=groups)], util
