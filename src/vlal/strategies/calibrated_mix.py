"""CalibratedMix: calibrated uncertainty mixed with typicality, the best-scored row of each weighted cluster."""

from __future__ import annotations

import math

import numbers

import numpy as np

from .._validation import check_choice, check_features, check_param, check_positive_int, copy_groups, l2_normalize, rows_per_chunk, seed_int
from .._warnings import warn_caller
from ..exceptions import VlalInputError
from ..scoring import (
    _build_knn_index,
    _calibrate_block,
    _calibrated_entropy,
    _contextual_prior,
    _drop_self,
    _neighbor_uncertainty,
    _weighted_kmeans,
)
from .base import Pool, Strategy
from ._register import register

__all__ = ["CalibratedMix", "typicality", "pseudo_label_purity", "class_typicality", "budget_mix_weight", "rank01", "unique_rows"]

_PICKS = ("score", "center", "typical")
_UNCERTAINTIES = ("entropy", "margin")
_INITS = ("k-means++", "random")
_DENSITIES = ("typicality", "purity", "class-typicality")


def _cluster(z, weights, n_clusters, seed, n_iter, init, use_gpu):
    """Weighted K-Means: scikit-learn with weighted k-means++ seeding while the work is small
    (``n * clusters <= KMEANS_EXACT_MAX_WORK``), else vlal's faiss path (uniform seeding)."""
    from ..scoring import KMEANS_EXACT_MAX_WORK

    if init == "random" or z.shape[0] * n_clusters > KMEANS_EXACT_MAX_WORK or n_clusters == z.shape[0]:
        return _weighted_kmeans(z, weights, n_clusters, seed, n_iter, "auto", use_gpu)
    from sklearn.cluster import KMeans

    import warnings

    from sklearn.exceptions import ConvergenceWarning

    km = KMeans(n_clusters, init="k-means++", n_init=1, max_iter=n_iter, random_state=seed)
    with warnings.catch_warnings():  # identical rows leave fewer distinct clusters: picks are still filled
        warnings.simplefilter("ignore", ConvergenceWarning)
        km.fit(z, sample_weight=weights)
    return km.cluster_centers_.astype(np.float32), km.labels_.astype(np.int64)


def typicality(features, k: int = 20, *, knn_index="auto", use_gpu="auto") -> np.ndarray:
    """TypiClust typicality: the inverse mean Euclidean distance to the ``k`` nearest other rows.

    ``Typ(x) = ( (1/k) sum_{x_i in kNN(x)} ||z_x - z_i|| )^-1`` (Hacohen et al., ICML 2022, Eq. 4),
    on the rows as given (pass L2-normalised features). ``k + 1`` neighbours are searched and
    the row's own hit dropped (or, when identical rows hide it, the farthest hit), the same
    rule as Eq. 6 (``vlal.scoring._drop_self``).

    Parameters
    ----------
    features : ndarray (n, d), float32
    k : int, default 20
        Neighbours; reduced to ``n - 1`` when fewer rows exist.
    knn_index : {"auto", "exact", "ivf", "hnsw"} or KnnIndex
        See :func:`vlal.scoring.build_knn_index`; a prebuilt index must hold ``features``.

    Returns
    -------
    ndarray (n,), float64
        Positive; ``1e12`` for a row whose ``k`` neighbours all coincide with it; ``1.0``
        for a single row.
    """
    n = features.shape[0]
    k = check_positive_int(k, "k")
    if n == 1:
        return np.ones(1, dtype=np.float64)
    k = min(k, n - 1)
    index = knn_index if not isinstance(knn_index, str) else _build_knn_index(
        check_features(features, "features"), knn_index, None, use_gpu)
    out = np.empty(n, dtype=np.float64)
    for rows, dist, idx in index.self_search(k + 1):
        dist, _ = _drop_self(rows, dist, idx, k)  # the k nearest other rows (the one self-exclusion rule)
        d = np.sqrt(np.maximum(dist.astype(np.float64), 0.0)).mean(axis=1)
        out[rows] = 1.0 / np.maximum(d, 1e-12)
    return out


def _check_pseudo_labels(pseudo_labels, n: int) -> np.ndarray:
    """``pseudo_labels`` as an (n,) array, or VlalInputError naming it."""
    y = np.asarray(pseudo_labels)
    if y.shape != (n,):
        raise VlalInputError(f"pseudo_labels must have shape ({n},); got {y.shape}")
    return y


def pseudo_label_purity(features, pseudo_labels, k: int = 20, *, knn_index="auto", use_gpu="auto") -> np.ndarray:
    """Share of a row's ``k`` nearest other rows whose pseudo-label equals the row's own.

    ``Pur(x) = (1/k) sum_{x_i in kNN(x)} [y~(x_i) = y~(x)]`` on the rows as given (pass
    L2-normalised features), ``y~`` = e.g. the calibrated zero-shot argmax (Eq. 5). A label at
    ``x`` pulls the tuned embedding of its class towards ``x``; rows near ``x`` of other classes
    are what it can take over (the diagnosis in ``docs/calibrated_mix.md``), so a pure
    neighbourhood marks a label whose effect stays within one class.

    Parameters
    ----------
    features : ndarray (n, d), float32
    pseudo_labels : ndarray (n,), int
    k : int, default 20
        Neighbours; reduced to ``n - 1`` when fewer rows exist.
    knn_index : {"auto", "exact", "ivf", "hnsw"} or KnnIndex
        A prebuilt index must hold ``features``.

    Returns
    -------
    ndarray (n,), float64
        In [0, 1]; ``1.0`` for a single row.

    Raises
    ------
    vlal.VlalInputError
        ``pseudo_labels`` not of length ``n``, or bad ``k``.
    """
    n = features.shape[0]
    k = check_positive_int(k, "k")
    y = _check_pseudo_labels(pseudo_labels, n)
    if n == 1:
        return np.ones(1, dtype=np.float64)
    k = min(k, n - 1)
    index = knn_index if not isinstance(knn_index, str) else _build_knn_index(
        check_features(features, "features"), knn_index, None, use_gpu)
    out = np.empty(n, dtype=np.float64)
    for rows, dist, idx in index.self_search(k + 1):
        rows = np.asarray(rows)
        _, nb = _drop_self(rows, np.asarray(dist), np.asarray(idx), k)  # the k nearest other rows (Eq. 6's rule)
        out[rows] = (y[nb] == y[rows][:, None]).mean(axis=1)
    return out


def class_typicality(features, pseudo_labels, k: int = 20, *, use_gpu="auto") -> np.ndarray:
    """TypiClust typicality (Eq. 4 of Hacohen et al., 2022) within each pseudo-class.

    For row ``x`` with pseudo-label ``c``: the inverse mean Euclidean distance to its ``k``
    nearest other rows *of pseudo-class c* (``k`` reduced to the class size minus one). A
    row alone in its pseudo-class gets 0 (least typical). A row typical of its calibrated
    pseudo-class sits among rows that its label can move together.

    Parameters
    ----------
    features : ndarray (n, d), float32 (pass L2-normalised rows)
    pseudo_labels : ndarray (n,), int
    k : int, default 20

    Returns
    -------
    ndarray (n,), float64, >= 0

    Raises
    ------
    vlal.VlalInputError
        ``pseudo_labels`` not of length ``n``, or bad ``k``.
    """
    n = features.shape[0]
    k = check_positive_int(k, "k")
    y = _check_pseudo_labels(pseudo_labels, n)
    out = np.zeros(n, dtype=np.float64)
    order = np.argsort(y, kind="stable")
    bounds = np.flatnonzero(np.diff(y[order])) + 1
    for members in np.split(order, bounds):
        if members.size >= 2:
            out[members] = typicality(np.ascontiguousarray(features[members]), min(k, members.size - 1), use_gpu=use_gpu)
    return out


def rank01(values) -> np.ndarray:
    """Ranks scaled to ``[0, 1]`` (ties share their mean rank); one row -> ``[1.0]``.

    Puts scores of different units (typicality, entropy) on one scale before mixing.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size <= 1:
        return np.ones(v.size)
    from scipy.stats import rankdata

    return (rankdata(v, method="average") - 1.0) / (v.size - 1.0)


def budget_mix_weight(n_labeled_after: int, n_classes: int, half_shots: float) -> float:
    """Weight ``lambda`` of uncertainty versus typicality for one query.

    ``s = n_labeled_after / K`` labels per class after the query; ``lambda = s / (s + s_half)``:
    near 0 (typical, covering picks) while the labeled set is far below one label per class
    (the low-budget regime of Hacohen et al., 2022), ``1/2`` at ``s = s_half``, towards 1
    (uncertain picks) as labels grow.
    """
    s = n_labeled_after / max(1, n_classes)
    return float(s / (s + half_shots)) if half_shots > 0 else 1.0


def unique_rows(z: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """Positions of the first row of each group of copies in ``z``, in row order, without
    the groups that hold a row of ``exclude`` (the duplicate rule of ``_distinct``: rows
    linked by L2-normalised rows within :data:`vlal._validation.COPY_TOL`)."""
    m = z.shape[0]
    both = z if exclude is None or not exclude.shape[0] else np.concatenate([z, np.asarray(exclude, z.dtype)])
    g = copy_groups(both)  # id = lowest row of the group
    first = np.flatnonzero(g[:m] == np.arange(m))
    if both.shape[0] > m:
        first = first[~np.isin(g[first], g[m:])]
    return first.astype(np.int64)


def _calibrated_argmax(probs, prior) -> np.ndarray:
    """Argmax of the calibrated probabilities (Eq. 5), chunk by chunk (no (n, K) float64 copy)."""
    out = np.empty(probs.shape[0], dtype=np.int64)
    step = rows_per_chunk(probs.shape[1])
    for s in range(0, probs.shape[0], step):
        out[s : s + step] = _calibrate_block(np.asarray(probs[s : s + step], dtype=np.float64), prior).argmax(axis=1)
    return out


@register("calibrated-mix")
class CalibratedMix(Strategy):
    """Calibrated uncertainty mixed with typicality; the best-scored row of each weighted cluster.

    On the L2-normalised unlabeled rows ``z`` (with ``cover=True`` the labeled rows too, as in TypiClust):

    1. score ``w(x) = (1 - lambda) r(Typ(x)) + lambda r(U(x))`` where ``Typ`` is TypiClust
       typicality (:func:`typicality`, Hacohen et al. 2022, Eq. 4), ``U = H^ + H_NN`` is CEC's
       calibrated uncertainty (Safaei & Patel 2025, Eq. 2-7; or the calibrated margin
       ``1 - (P^_1 - P^_2)`` with ``uncertainty="margin"``), ``r`` maps to ranks in [0, 1]
       (:func:`rank01`) so that the two scales mix. ``lambda = mix`` (default 0.8, fixed once on
       the dev sets), or with ``mix=None`` the budget-aware ``lambda = s / (s + half_shots)``,
       ``s`` = labels per class after this query (:func:`budget_mix_weight`);
    2. weighted K-Means (weights ``w``, weighted k-means++ seeding) with ``b`` clusters over the
       unlabeled rows; with ``cover=True`` (off by default: it cost 0.5 point at 5 %),
       ``|L| + b`` clusters over labeled and unlabeled rows instead;
    3. clusters are served largest score mass first; with ``cover=True`` fewest labeled rows
       first (TypiClust's "uncovered, large clusters first"; ProbCover's coverage idea);
    4. from each served cluster the unlabeled row of highest ``w`` (``pick="score"``), the one
       nearest the centre (``"center"``, as CEC) or the most typical (``"typical"``);
    5. ``balance=True``: a pick whose calibrated zero-shot pseudo-label (argmax of Eq. 5)
       already has ``ceil((|L| + b) / K)`` labels or picks is passed over for the next best
       row of its cluster (cf. PCB, Bang et al. CVPR 2024); the cap grows when nothing fits;
    6. ``dedupe=True``: a copy of a labeled row or of another candidate (the duplicate rule of
       the clustering strategies: L2-normalised rows within the copy tolerance, 2e-3) is never queried unless the budget needs it.

    Utilities (``select(..., return_utilities=True)``): the score ``w(x)`` of step 1, in
    [0, 1] (0 for a dropped duplicate copy); the picks are not simply the top-``budget``
    utilities: they are spread by the clustering.

    What each step is worth on the four dev sets is measured in ``docs/calibrated_mix.md``
    (``benchmarks/study_calibrated_mix.py``); the budget-aware shift of step 1 and the
    covered-cluster rule of steps 2-3 did not help there and are off by default.

    Parameters
    ----------
    k : int, default 20
        Neighbours for typicality and for ``H_NN`` (Eq. 6).
    alpha : float, default 0.1
        Bandwidth of Eq. 6.
    top_n : int, default 10
        ``N`` of the contextualised prior (Eq. 3).
    half_shots : float, default 1.0
        Used only with ``mix=None``: labels per class at which uncertainty and typicality
        weigh equally.
    mix : float in [0, 1] or None, default 0.8
        Fixed ``lambda`` (0 = typicality only, 1 = uncertainty only); None = budget-aware.
    cover : bool, default False
        Cluster labeled rows too and serve uncovered clusters first (steps 2-3).
    balance, dedupe, weighted : bool, default True
        Switches of steps 5, 6 and the K-Means weights (for ablations).
    pick : {"score", "center", "typical"}, default "score"
    uncertainty : {"entropy", "margin"}, default "entropy"
        ``U`` of step 1: CEC's ``H^ + H_NN``, or the calibrated margin plus its ``H_NN``.
    init : {"k-means++", "random"}, default "k-means++"
        K-Means seeding: weighted k-means++ (scikit-learn, ``sample_weight``) while
        ``n * clusters <= vlal.scoring.KMEANS_EXACT_MAX_WORK``; above that, or with
        ``"random"``, :func:`vlal.weighted_kmeans` (faiss, uniform seeding).
    n_iter : int, default 20
        K-Means iterations.
    density : {"typicality", "purity", "class-typicality"}, default "typicality"
        The density term mixed with uncertainty: :func:`typicality`, :func:`pseudo_label_purity`
        or :func:`class_typicality` (the last two use the calibrated pseudo-labels). The
        alternatives are ablations: neither beat ``"typicality"`` beyond seed noise
        (``docs/calibrated_mix.md``).
    density_k : int, "class" or None, default None
        Neighbours of the density term: None = ``k``; ``"class"`` = about one class's share of
        the rows (``n / K - 1``, at least 2, at most ``k``).
    use_gpu : "auto" or bool
    random_state : None, int, numpy SeedSequence, Generator or RandomState

    References
    ----------
    G. Hacohen, A. Dekel, D. Weinshall, "Active Learning on a Budget: Opposite Strategies Suit
    High and Low Budgets", ICML 2022 (TypiClust). O. Yehuda et al., "Active Learning Through a
    Covering Lens", NeurIPS 2022 (ProbCover). B. Safaei and V. M. Patel, "Active Learning for
    Vision-Language Models", WACV 2025 (CEC). J. Bang et al., "Active Prompt Learning in Vision
    Language Models", CVPR 2024 (PCB).
    """

    @property
    def reads_labels(self) -> bool:
        """``balance=True`` counts the labeled set's classes, so ``select`` then needs (and checks) ``labels``."""
        return bool(self.balance)

    def __init__(self, k: int = 20, alpha: float = 0.1, top_n: int = 10, *, half_shots=1.0, mix=0.8,
                 cover: bool = False, balance: bool = True, dedupe: bool = True, weighted: bool = True,
                 pick: str = "score", uncertainty: str = "entropy", init: str = "k-means++", n_iter: int = 20,
                 density: str = "typicality", density_k=None, use_gpu="auto", random_state=None):
        self.k = k
        self.alpha = alpha
        self.top_n = top_n
        self.half_shots = half_shots
        self.mix = mix
        self.cover = cover
        self.balance = balance
        self.dedupe = dedupe
        self.weighted = weighted
        self.pick = pick
        self.init = init
        self.uncertainty = uncertainty
        self.density = density
        self.density_k = density_k
        self.n_iter = n_iter
        self.use_gpu = use_gpu
        self.random_state = random_state

    def _check_params(self) -> None:
        check_positive_int(self.k, "k")
        check_positive_int(self.top_n, "top_n")
        check_positive_int(self.n_iter, "n_iter")
        check_param(self.alpha, "alpha", numbers.Real, min_val=0)
        if self.mix is None:
            check_param(self.half_shots, "half_shots", numbers.Real, min_val=0, include_boundaries="neither")
        else:
            check_param(self.mix, "mix", numbers.Real, min_val=0, max_val=1)
        for flag in ("cover", "balance", "dedupe", "weighted"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise VlalInputError(f"{flag} must be True or False; got {getattr(self, flag)!r}")
        # type-safe comparisons: an array value is an error naming the parameter, not numpy's
        # "truth value of an array is ambiguous"
        check_choice(self.pick, "pick", _PICKS)
        check_choice(self.uncertainty, "uncertainty", _UNCERTAINTIES)
        check_choice(self.density, "density", _DENSITIES)
        if self.density_k is not None and not (isinstance(self.density_k, str) and self.density_k == "class"):
            check_positive_int(self.density_k, "density_k")
        check_choice(self.init, "init", _INITS)
        if not ((isinstance(self.use_gpu, str) and self.use_gpu == "auto") or isinstance(self.use_gpu, (bool, np.bool_))):
            raise VlalInputError(f"use_gpu must be 'auto', True or False; got {self.use_gpu!r}")

    def _query(self, pool: Pool, budget: int, rng: np.random.Generator):
        self._check_params()
        cand, lab = pool.candidates, pool.labeled
        n_classes = pool.probs.shape[1]
        z_cand = l2_normalize(pool.features, "features", rows=cand)
        z_lab = l2_normalize(pool.features, "features", rows=lab) if lab.size else z_cand[:0]
        # Candidates considered: one row of each group of copies, none a copy of a labeled row.
        keep = unique_rows(z_cand, z_lab) if self.dedupe else np.arange(cand.size)
        if keep.size < budget:  # the budget needs duplicates: the unique rows first, then the rest
            rest = np.setdiff1d(np.arange(cand.size), keep)
            keep = np.concatenate([keep, rest[: budget - keep.size]])
        uc = cand[keep]
        rows = np.concatenate([lab, uc]) if self.cover else uc  # pool positions of the working set
        z = np.concatenate([z_lab, z_cand[keep]]) if self.cover else z_cand[keep]
        is_cand = np.zeros(rows.size, dtype=bool)
        is_cand[rows.size - uc.size:] = True
        probs = np.asarray(pool.probs[rows], dtype=np.float64)  # (rows, K) float64: the one full-size copy
        probs /= probs.sum(axis=1, keepdims=True)

        lam = (float(self.mix) if self.mix is not None
               else budget_mix_weight(lab.size + budget, n_classes, float(self.half_shots)))
        index = _build_knn_index(z, "auto", None, self.use_gpu) if z.shape[0] >= 2 else None
        score = np.zeros(rows.size)
        typ = None
        pseudo = None
        if self.balance or self.density == "purity":
            pseudo = _calibrated_argmax(probs, _contextual_prior(probs, int(self.top_n)))
        if lam < 1.0 or self.pick == "typical":
            if self.density_k is None:
                dk = int(self.k)
            elif self.density_k == "class":  # about one class's share of the rows: n / K - 1 others
                dk = int(max(2, min(int(self.k), round(rows.size / n_classes) - 1)))
            else:
                dk = int(self.density_k)
            if index is None:
                typ = np.ones(rows.size)
            elif self.density == "purity":
                typ = rank01(pseudo_label_purity(z, pseudo, dk, knn_index=index))
            elif self.density == "class-typicality":
                typ = rank01(class_typicality(z, pseudo, dk, use_gpu=self.use_gpu))
            else:
                typ = rank01(typicality(z, dk, knn_index=index))
        if lam < 1.0:
            score += (1.0 - lam) * typ
        if lam > 0.0:
            if self.uncertainty == "margin":
                p_cal = _calibrate_block(probs, _contextual_prior(probs, int(self.top_n)))
                top2 = -np.partition(-p_cal, 1, axis=1)[:, :2] if p_cal.shape[1] > 1 else np.hstack([p_cal, 0 * p_cal])
                h = 1.0 - (top2[:, 0] - top2[:, 1])
            else:
                h = _calibrated_entropy(probs, int(self.top_n))
            if index is not None:
                # k above the rows is reduced (to rows - 1) with a UserWarning there, as in CEC
                k = int(self.k)
                if k >= z.shape[0] and keep.size < cand.size:  # duplicates were dropped: say so, not "candidates"
                    warn_caller(f"k={k} >= number of distinct candidates ({keep.size} of {cand.size}: copies of an "
                                f"image are scored once); using k={z.shape[0] - 1}", UserWarning)
                    k = z.shape[0] - 1
                h = h + _neighbor_uncertainty(z, h, k, float(self.alpha), index, self.use_gpu)
            score += lam * rank01(h)

        n_clusters = min(rows.size, (lab.size + budget) if self.cover else budget)
        seed = seed_int(self.random_state, rng)
        weights = score + 1e-3 if self.weighted else None
        centers, assign = _cluster(z, weights, n_clusters, seed, self.n_iter, self.init, self.use_gpu)
        covered = np.bincount(assign[~is_cand], minlength=n_clusters)
        mass = np.bincount(assign[is_cand], weights=score[is_cand], minlength=n_clusters)
        has_cand = np.bincount(assign[is_cand], minlength=n_clusters) > 0
        order = np.lexsort((np.arange(n_clusters), -mass, covered))
        order = order[has_cand[order]]

        # Candidate order inside each cluster: best score first, or nearest the centre first.
        if self.pick == "score":
            key = -score
        elif self.pick == "typical":
            key = -typ
        else:
            key = ((z - centers[assign]) ** 2).sum(axis=1)
        ranked = np.lexsort((np.arange(rows.size), key))
        ranked = ranked[is_cand[ranked]]
        members = {c: [] for c in range(n_clusters)}
        for r in ranked:
            members[int(assign[r])].append(int(r))

        if self.balance:
            counts = np.bincount(pool.labels, minlength=n_classes) if lab.size else np.zeros(n_classes, np.int64)
            counts = counts.astype(np.int64)
            cap = max(1, math.ceil((lab.size + budget) / n_classes))
        chosen: list[int] = []
        taken = np.zeros(rows.size, dtype=bool)
        queue = list(order)
        while queue and len(chosen) < budget:
            deferred = []
            for c in queue:
                if len(chosen) >= budget:
                    break
                pick = None
                for r in members[c]:
                    if taken[r]:
                        continue
                    if not self.balance or counts[pseudo[r]] < cap:
                        pick = r
                        break
                if pick is None:
                    if self.balance and any(not taken[r] for r in members[c]):
                        deferred.append(c)
                    continue
                taken[pick] = True
                chosen.append(pick)
                if self.balance:
                    counts[pseudo[pick]] += 1
            queue = deferred
            if self.balance:
                cap += 1
        if len(chosen) < budget:  # more picks than served clusters: best remaining scores
            left = [r for r in ranked if not taken[r]] if self.pick == "score" else \
                [r for r in np.lexsort((np.arange(rows.size), -score)) if is_cand[r] and not taken[r]]
            chosen.extend(int(r) for r in left[: budget - len(chosen)])
        # Utilities (aligned with pool.candidates): the score w of step 1; a dropped duplicate
        # copy gets 0 (it is never queried while distinct rows remain).
        util = np.zeros(cand.size, dtype=np.float64)
        util[keep] = score[is_cand]
        return rows[np.asarray(chosen, dtype=np.int64)], util
