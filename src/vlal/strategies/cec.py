"""CEC: Calibrated Entropy-weighted Clustering (Safaei & Patel, WACV 2025)."""

from __future__ import annotations

import numbers
from dataclasses import replace

import numpy as np

from .._validation import _is_lazy, check_bool, check_choice, check_features, check_param, check_pool, check_probs, l2_normalize, seed_int
from ..exceptions import VlalInputError
from ..scoring import (
    KMEANS_MODES,
    KNN_INDEXES,
    _build_knn_index,
    _calibrated_entropy,
    _entropy,
    _nearest_to_centers,
    _neighbor_uncertainty,
)
from .base import Pool
from .clustering import ClusteringStrategy
from ._register import register

__all__ = ["CEC"]

_CLUSTERING = ("weighted", "plain", "greedy")


@register("cec")
class CEC(ClusteringStrategy):
    """Calibrated Entropy-weighted Clustering (paper Sec. 4, Algorithm 1).

    On the unlabeled candidates:

    1. calibrated entropy ``H^`` (Eq. 2-5; prior from the ``top_n`` most confident rows per class),
    2. neighbour uncertainty ``H_NN`` over the ``k`` nearest other candidates (Eq. 6),
    3. ``U = H^ + H_NN`` (Eq. 7),
    4. K-Means with ``budget`` clusters on the L2-normalised features, weighted by ``U`` (Sec. 4.3),
    5. for each cluster the candidate closest to its centre, all distinct (Sec. 4.4).

    Duplicates: no two picks are copies of one image while a candidate of another image
    remains (web-scale pools hold many copies). Copies are the rows whose L2-normalised
    features lie within ``vlal._validation.COPY_TOL`` (2e-3)
    of each other, or are linked by a chain of such rows: the rule that keeps copies of
    labeled rows out of the candidates (:mod:`vlal.strategies._distinct`). A pick whose
    group of copies already holds an earlier pick is replaced by the nearest row to its
    centre whose group holds no pick. Distinct images (near-duplicate photos included,
    cosine 0.97-0.99) are never copies.

    Utilities (``select(..., return_utilities=True)``): ``U(x) = H^(x) + H_NN(x)`` of
    Eq. 7 for every candidate (the K-Means weights; ``H^`` alone with
    ``neighbor_term=False``, plain ``H`` with ``calibration=False``). The picks are not
    the top-``budget`` utilities: they are spread by the clustering.

    Parameters
    ----------
    k : int, default 20
        Neighbours in Eq. 6 (reduced, with a warning, when fewer candidates exist).
    alpha : float, default 0.1
        Bandwidth of Eq. 6.
    top_n : int, default 10
        ``N`` of the contextualised prior (Eq. 3).
    calibration : bool, default True
        Ablation switch (Fig. 3 left): ``False`` uses the plain entropy ``H`` for ``H^``.
    neighbor_term : bool, default True
        Ablation switch (Fig. 3 left): ``False`` uses ``U = H^``.
    clustering : {"weighted", "plain", "greedy"}, default "weighted"
        Ablation switch (Fig. 3 right): ``"plain"`` = unweighted K-Means, nearest to centre;
        ``"greedy"`` = unweighted K-Means, then the most uncertain candidate of each cluster
        (an empty cluster is served by the most uncertain candidate still free).
    n_iter : int, default 20
        K-Means iterations.
    knn_index : {"auto", "exact", "ivf", "hnsw"}, default "auto"
        Neighbour search of Eq. 6 and of the query step, built once per query (see
        :func:`vlal.scoring.build_knn_index`). ``"auto"``: exact up to 20,000 candidates,
        an IVF index above.
    kmeans_mode : {"auto", "exact", "fast"}, default "auto"
        K-Means path (see :func:`vlal.weighted_kmeans`). ``"auto"``: exact while
        ``candidates * budget <= vlal.scoring.KMEANS_EXACT_MAX_WORK`` (5e7), else the
        fast path (Lloyd on a weight-proportional sample, approximate assignments).
    use_gpu : "auto", bool, default "auto"
        Run kNN and K-Means on the GPUs when faiss has any (``"auto"``).
    random_state : None, int, numpy Generator or RandomState
        Seeds the K-Means initialisation and, with ``clustering="greedy"``, breaks ties
        in ``U`` (see :class:`~vlal.Strategy`). Among candidates at the same distance from
        a centre (exact copies) the nearest-to-centre step returns the lowest position;
        the duplicate rule above then keeps only one of them (the lowest position among
        the picks of a group of copies).

    Notes
    -----
    ``features`` and ``probs`` may be :class:`vlal.shards.ShardedFeatures` (float16 shards
    on disk). Up to ``vlal._scale.STREAM_MIN_BYTES`` (1 GiB as float32) they are read into
    memory and the result equals the in-memory one; above, CEC streams them
    (:func:`vlal._scale.cec_stream`: exact Eq. 2-5 in passes, Eq. 6 on an SQ8-compressed IVF
    index whose probe count is tuned to a measured recall@k >= 0.9, the fast weighted
    K-Means, and an exact re-rank of the query step); ``knn_index``, ``kmeans_mode`` and
    ``use_gpu`` do not apply there, ``clustering="greedy"`` is refused, and the stage
    times and measured recall are left in ``stream_stats_``. The duplicate rule holds there
    too (applied while the centres are served, closest first); among exact copies a centre
    gets the lowest position among those the compressed index returns, which need not be
    the lowest in the pool. See ``docs/scale.md``.

    References
    ----------
    B. Safaei and V. M. Patel, "Active Learning for Vision-Language Models", WACV 2025.
    """

    def __init__(
        self,
        k: int = 20,
        alpha: float = 0.1,
        top_n: int = 10,
        *,
        calibration: bool = True,
        neighbor_term: bool = True,
        clustering: str = "weighted",
        n_iter: int = 20,
        knn_index: str = "auto",
        kmeans_mode: str = "auto",
        use_gpu="auto",
        random_state=None,
    ):
        self.k = k
        self.alpha = alpha
        self.top_n = top_n
        self.calibration = calibration
        self.neighbor_term = neighbor_term
        self.clustering = clustering
        self.n_iter = n_iter
        self.knn_index = knn_index
        self.kmeans_mode = kmeans_mode
        self.use_gpu = use_gpu
        self.random_state = random_state

    def _check_params(self) -> None:
        check_choice(self.clustering, "clustering", _CLUSTERING)
        check_param(self.k, "k", numbers.Integral, min_val=1)
        check_param(self.top_n, "top_n", numbers.Integral, min_val=1)
        check_param(self.n_iter, "n_iter", numbers.Integral, min_val=1)
        check_param(self.alpha, "alpha", numbers.Real, min_val=0)
        check_choice(self.knn_index, "knn_index", KNN_INDEXES)
        check_choice(self.kmeans_mode, "kmeans_mode", KMEANS_MODES)
        if not (isinstance(self.use_gpu, str) and self.use_gpu == "auto") and not isinstance(self.use_gpu, (bool, np.bool_)):
            raise VlalInputError(f"use_gpu must be 'auto', True or False; got {self.use_gpu!r}")
        check_bool(self.calibration, "calibration")
        check_bool(self.neighbor_term, "neighbor_term")

    def uncertainty(self, features, probs) -> np.ndarray:
        """``U(x)`` of Eq. 7 for each row (the rows are taken as the candidate pool).

        Parameters
        ----------
        features : ndarray (m, d)
        probs : ndarray (m, K)

        Returns
        -------
        ndarray (m,), float64
        """
        self._validate_params()
        f, p = check_pool(features, probs)
        z = l2_normalize(f, "features", copy=False) if self.neighbor_term and f.shape[0] >= 2 else f
        return self._utilities(z, p, self.knn_index)

    def _utilities(self, z, probs, index) -> np.ndarray:
        """``U`` of Eq. 7 on validated inputs: ``z`` (m, d) unit-norm rows (when the neighbour
        term is on and ``m >= 2``), ``probs`` (m, K)."""
        h = _calibrated_entropy(probs, self.top_n) if self.calibration else _entropy(probs)
        if not self.neighbor_term or z.shape[0] < 2:
            return h
        return h + _neighbor_uncertainty(z, h, self.k, float(self.alpha), index, self.use_gpu)

    def _query(self, pool: Pool, budget: int, rng: np.random.Generator) -> np.ndarray:
        if _is_lazy(pool.features) or _is_lazy(pool.probs):
            from .. import _scale

            f, p = pool.features, pool.probs
            if self._streams(f, p):
                # Too large for memory: stream the shards, compressed kNN index (vlal._scale).
                self.stream_stats_ = {}
                return _scale.cec_stream(
                    f, p, budget, pool.candidates, k=self.k, alpha=float(self.alpha), top_n=self.top_n,
                    calibration=self.calibration, neighbor_term=self.neighbor_term, clustering=self.clustering,
                    n_iter=min(self.n_iter, 10), seed=seed_int(self.random_state, rng), stats=self.stream_stats_,
                )
            # Small enough: read into memory (features in the shards' own dtype), then exactly the
            # in-memory path.
            pool = replace(
                pool,
                features=check_features(np.asarray(f, dtype=f.dtype) if _is_lazy(f) else f, "features"),
                probs=check_probs(np.asarray(p, dtype=np.float32) if _is_lazy(p) else p, "probs"),
            )
        return super()._query(pool, budget, rng)

    def _streams(self, features, probs) -> bool:
        """Sharded inputs of which either, as float32, exceeds ``vlal._scale.STREAM_MIN_BYTES``
        (1 GiB) are streamed; smaller ones are read into memory."""
        if not (_is_lazy(features) or _is_lazy(probs)):
            return False
        from .. import _scale

        n = features.shape[0]
        return n * max(features.shape[1], probs.shape[1]) * 4 > _scale.STREAM_MIN_BYTES

    def _index(self, z: np.ndarray):
        # One index over the candidates serves Eq. 6 and the query step (Sec. 4.4).
        need_nn = self.neighbor_term and z.shape[0] >= 2
        need_query = self.clustering != "greedy"
        if need_nn and need_query:
            return _build_knn_index(z, self.knn_index, None, self.use_gpu)
        return self.knn_index

    def _cluster_weights(self, u: np.ndarray):
        return u if self.clustering == "weighted" else None

    def _pick(self, z, centers, assign, u, index, rng: np.random.Generator) -> np.ndarray:
        if self.clustering == "greedy":
            return _most_uncertain_per_cluster(u, assign, centers.shape[0], rng)
        return _nearest_to_centers(z, centers, index, self.use_gpu)


def _most_uncertain_per_cluster(
    u: np.ndarray, assign: np.ndarray, n_clusters: int, rng: np.random.Generator
) -> np.ndarray:
    """Row of largest ``u`` in each cluster; empty clusters take the most uncertain rows left.

    Ties in ``u`` are broken by ``rng`` (not by row position)."""
    order = np.lexsort((rng.random(u.size), -u))  # most uncertain first, ties at random
    picked = np.full(n_clusters, -1, dtype=np.int64)
    for row in order:
        c = assign[row]
        if picked[c] < 0:
            picked[c] = row
    empty = np.flatnonzero(picked < 0)
    if empty.size:
        used = np.zeros(u.size, dtype=bool)
        used[picked[picked >= 0]] = True
        spare = order[~used[order]][: empty.size]
        picked[empty] = spare
    return picked
