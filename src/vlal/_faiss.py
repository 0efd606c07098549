"""Thin wrappers around faiss: exact kNN search and (weighted) K-Means.

Kept apart from the scoring functions so that index choices (exact, IVF, HNSW,
GPU) live in one place. All inputs are C-contiguous float32, as faiss requires.
"""

from __future__ import annotations

import faiss
import numpy as np

__all__ = ["knn_search", "kmeans"]


def _as_f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


def knn_search(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of ``queries`` in ``base`` (squared L2).

    Returns
    -------
    sq_dist : ndarray of shape (n_queries, k), float32
        Squared Euclidean distances, ascending.
    idx : ndarray of shape (n_queries, k), int64
        Row positions into ``base``.
    """
    base = _as_f32(base)
    index = faiss.IndexFlatL2(base.shape[1])
    index.add(base)
    dist, idx = index.search(_as_f32(queries), int(k))
    return np.maximum(dist, 0.0), idx.astype(np.int64, copy=False)


def kmeans(
    x: np.ndarray,
    n_clusters: int,
    weights: np.ndarray | None,
    seed: int,
    n_iter: int = 20,
) -> np.ndarray:
    """faiss K-Means (Lloyd) with optional per-sample weights; returns centres (n_clusters, d) float32."""
    x = _as_f32(x)
    km = faiss.Kmeans(
        x.shape[1],
        int(n_clusters),
        niter=int(n_iter),
        seed=int(seed),
        verbose=False,
        # Use every point: with per-sample weights, faiss' default subsampling
        # (256 points per centroid) would drop weight mass at random.
        max_points_per_centroid=max(256, (x.shape[0] + n_clusters - 1) // n_clusters),
        min_points_per_centroid=1,
    )
    w = None if weights is None else np.ascontiguousarray(weights, dtype=np.float32)
    km.train(x, weights=w)
    return np.asarray(km.centroids, dtype=np.float32)
