"""Exact (weighted) K-Means: faiss' Lloyd iterations on all rows.

Imports only :mod:`.config` and :mod:`.device`.
"""

from __future__ import annotations

import contextlib
import warnings

import faiss
import numpy as np

from .config import DEFAULT_CONFIG, FaissConfig
from .device import as_f32, single_thread

__all__ = ["kmeans"]


def kmeans(
    x: np.ndarray,
    n_clusters: int,
    weights: np.ndarray | None,
    seed: int,
    n_iter: int = 20,
    use_gpu: bool = False,
    config: FaissConfig = DEFAULT_CONFIG,
) -> np.ndarray:
    """faiss K-Means (Lloyd) on all rows, with optional per-sample weights.

    Returns the centres, shape (n_clusters, d), float32. ``use_gpu`` runs the
    assignment on all GPUs (``faiss.Kmeans(gpu=True)``). Problems with fewer than
    ``config.small_kmeans_work`` row x centre x iteration steps run on one thread.
    """
    x = as_f32(x)
    km = faiss.Kmeans(
        x.shape[1],
        int(n_clusters),
        niter=int(n_iter),
        seed=int(seed),
        verbose=False,
        gpu=bool(use_gpu),
        # Use every point: with per-sample weights, faiss' default subsampling
        # (256 points per centroid) would drop weight mass at random.
        max_points_per_centroid=max(256, (x.shape[0] + n_clusters - 1) // n_clusters),
        min_points_per_centroid=1,
    )
    w = None if weights is None else np.ascontiguousarray(weights, dtype=np.float32)
    # Small problems run faster on one thread (no OpenMP start-up and barrier waits,
    # which dominate when other processes compete for the cores).
    small = not use_gpu and x.shape[0] * n_clusters * n_iter < config.small_kmeans_work
    with single_thread() if small else contextlib.nullcontext():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            km.train(x, weights=w)
    return np.asarray(km.centroids, dtype=np.float32)
