"""The clustering template: utilities -> (weighted) K-Means -> the candidate nearest each centre."""

from __future__ import annotations

import abc

import numpy as np

from .._validation import check_hook_output, l2_normalize, seed_int
from ..scoring import _nearest_to_centers, _weighted_kmeans
from ._distinct import replace_duplicates
from .base import Pool, Strategy

__all__ = ["ClusteringStrategy", "cluster_nearest"]


def cluster_nearest(z: np.ndarray, weights, budget: int, seed: int, n_iter: int = 20, *, kmeans_mode: str = "auto",
                    use_gpu="auto", knn_index="auto") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """K-Means with ``budget`` clusters (weighted by ``weights`` when given), then for each
    centre the closest row not already taken (paper Sec. 4.3-4.4).

    Parameters
    ----------
    z : ndarray (m, d), float32
        Rows to cluster (strategies pass L2-normalised candidate features).
    weights : ndarray (m,), float64 or None
        Finite, non-negative K-Means weights (checked by the caller); None = plain K-Means.
    budget : int
        Number of clusters, ``1 <= budget <= m``.
    seed : int
        Seed of the K-Means initialisation.
    n_iter, kmeans_mode, use_gpu, knn_index
        As :func:`vlal.weighted_kmeans` and :func:`vlal.nearest_to_centers`.

    Returns
    -------
    picks : ndarray (budget,), int64
        Distinct positions into ``z``; ``picks[j]`` serves centre ``j``.
    centers : ndarray (budget, d), float32
    assign : ndarray (m,), int64
        Each row's cluster.
    """
    centers, assign = _weighted_kmeans(z, weights, budget, seed, n_iter, kmeans_mode, use_gpu)
    return _nearest_to_centers(z, centers, knn_index, use_gpu), centers, assign


class ClusteringStrategy(Strategy):
    """Template of the clustering strategies (CEC and its ablations).

    On the candidates: ``z`` = L2-normalised features; ``u = _utilities(z, probs, index)``
    (one finite score per candidate; a NaN or inf raises ``VlalInputError``, it is never
    ranked); K-Means with ``budget`` clusters weighted by ``_cluster_weights(u)`` (default
    ``u``; ``None`` = plain K-Means; negative weights raise); ``_pick`` chooses one
    candidate per cluster (default: the one nearest each centre, all distinct); then the
    duplicate rule of :mod:`vlal.strategies._distinct` (no two picks that are copies of one
    image, normalised rows within the copy tolerance, while a candidate of another image remains).

    Utilities (``select(..., return_utilities=True)``): ``u``.

    Subclasses implement :meth:`_utilities`; they may override :meth:`_cluster_weights`,
    :meth:`_pick` and :meth:`_index` (a kNN index over ``z`` shared by the utilities and
    the query step). K-Means reads the attributes ``n_iter`` (20), ``kmeans_mode``
    (``"auto"``) and ``use_gpu`` (``"auto"``) when the subclass has them.
    """

    @abc.abstractmethod
    def _utilities(self, z: np.ndarray, probs: np.ndarray, index) -> np.ndarray:
        """Score (m,) of each candidate; ``z`` (m, d) unit-norm float32, ``probs`` (m, K);
        ``index``: what :meth:`_index` returned."""

    def _index(self, z: np.ndarray):
        """The kNN index (or index kind) handed to :meth:`_utilities` and :meth:`_pick`."""
        return getattr(self, "knn_index", "auto")

    def _cluster_weights(self, u: np.ndarray):
        """K-Means weights from the utilities (default: ``u``; ``None`` = unweighted)."""
        return u

    def _pick(self, z, centers, assign, u, index, rng: np.random.Generator) -> np.ndarray:
        """One distinct position into ``z`` per centre (default: nearest to the centre)."""
        return _nearest_to_centers(z, centers, index, getattr(self, "use_gpu", "auto"))

    def _query(self, pool: Pool, budget: int, rng: np.random.Generator):
        cand = pool.candidates
        everyone = cand.size == pool.n  # no labeled rows: no gathered copies of the pool
        z = l2_normalize(pool.features, "features", rows=None if everyone else cand, copy=False)
        probs = pool.probs if everyone else pool.probs[cand]
        index = self._index(z)
        u = check_hook_output(self._utilities(z, probs, index), z.shape[0], self, "_utilities")
        seed = seed_int(self.random_state, rng)
        weights = self._cluster_weights(u)
        if weights is not None:
            weights = check_hook_output(weights, z.shape[0], self, "_cluster_weights", nonnegative=True)
        centers, assign = _weighted_kmeans(z, weights, budget, seed, getattr(self, "n_iter", 20),
                                           getattr(self, "kmeans_mode", "auto"), getattr(self, "use_gpu", "auto"))
        picks = self._pick(z, centers, assign, u, index, rng)
        return cand[replace_duplicates(z, picks, centers)], u
