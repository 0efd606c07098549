"""Exact kNN (brute force) and the wrapper around a built faiss index.

Imports only :mod:`.config` and :mod:`.device`.
"""

from __future__ import annotations

import faiss
import numpy as np

from .config import DEFAULT_CONFIG, KNN_KINDS, FaissConfig
from .device import as_f32

__all__ = ["knn_search", "resolve_knn_kind", "repair", "ExactSearch", "FaissSearch"]


def knn_search(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours of ``queries`` in ``base`` (squared L2), on the CPU.

    ``faiss.knn`` works on the arrays directly, so no index (and no copy of ``base``)
    is built; results equal ``IndexFlatL2.search``.

    Returns
    -------
    sq_dist : ndarray of shape (n_queries, k), float32
        Squared Euclidean distances, ascending.
    idx : ndarray of shape (n_queries, k), int64
        Row positions into ``base``.
    """
    queries, base = as_f32(queries), as_f32(base)
    dist, idx = faiss.knn(queries, base, int(k))
    return np.maximum(dist, 0.0), idx


def resolve_knn_kind(kind: str, n_base: int, n_queries: int, gpu: bool = False,
                     exact_max_pairs: float | None = None, config: FaissConfig = DEFAULT_CONFIG) -> str:
    """The concrete index kind ``"auto"`` stands for (other kinds are returned as given).

    ``"exact"`` while ``n_base * n_queries <= exact_max_pairs`` (default
    ``config.knn_exact_max_rows ** 2``; ``config.knn_gpu_exact_max_rows ** 2`` on GPUs),
    else ``"ivf"``.

    Raises
    ------
    ValueError
        ``kind`` is not one of ``KNN_KINDS``.
    """
    if kind not in KNN_KINDS:
        raise ValueError(f"knn_index must be one of {KNN_KINDS}; got {kind!r}")
    if kind != "auto":
        return kind
    if gpu:
        limit = float(config.knn_gpu_exact_max_rows) ** 2
    else:
        limit = float(config.knn_exact_max_rows) ** 2 if exact_max_pairs is None else exact_max_pairs
    return "exact" if float(n_base) * float(n_queries) <= limit else "ivf"


def repair(base, queries, rows, dist, idx, k):
    """Redo exactly the rows where an approximate search returned fewer than k hits (-1)."""
    bad = np.flatnonzero((idx < 0).any(axis=1))
    if bad.size:
        q = queries[bad] if rows is None else queries[np.asarray(rows)[bad]]
        dist[bad], idx[bad] = knn_search(base, q, k)
    return dist, idx


class ExactSearch:
    """Chunked search of ``base`` by a block function (brute force on the CPU by default).

    Subclasses replace :meth:`_search_block`. ``search`` gathers ``queries[rows]``
    chunk by chunk (never as a whole) and repairs ``-1`` hits exactly.
    """

    def __init__(self, base: np.ndarray, config: FaissConfig = DEFAULT_CONFIG):
        self.base = as_f32(base)
        self.n, self.d = self.base.shape
        self.config = config

    def _search_block(self, q: np.ndarray, k: int):
        return knn_search(self.base, q, k)

    def search(self, queries, k: int, rows=None) -> tuple[np.ndarray, np.ndarray]:
        k = min(int(k), self.n)
        m = queries.shape[0] if rows is None else len(rows)
        step = self.config.search_chunk_rows
        dist = np.empty((m, k), dtype=np.float32)
        idx = np.empty((m, k), dtype=np.int64)
        for s in range(0, m, step):
            e = min(m, s + step)
            q = as_f32(queries[s:e] if rows is None else queries[rows[s:e]])
            dist[s:e], idx[s:e] = self._search_block(q, k)
        return repair(self.base, queries, rows, dist, idx, k)

    def self_search(self, k: int):
        """Yield ``(rows, sq_dist, idx)`` blocks covering every base row once."""
        k = min(int(k), self.n)
        step = self.config.search_chunk_rows
        for s in range(0, self.n, step):
            rows = np.arange(s, min(self.n, s + step))
            dist, idx = self._search_block(self.base[s : rows[-1] + 1], k)
            dist, idx = repair(self.base, self.base, rows, dist, idx, k)
            yield rows, dist, idx


class FaissSearch(ExactSearch):
    """Search through a built faiss index (GPU flat or IVF, HNSW); k above the GPU limit
    is searched exactly on the CPU."""

    def __init__(self, base: np.ndarray, index, *, gpu: bool, hnsw: bool = False,
                 config: FaissConfig = DEFAULT_CONFIG):
        super().__init__(base, config)
        self.index = index
        self.gpu = gpu
        self.hnsw = hnsw

    def _search_block(self, q: np.ndarray, k: int):
        if self.gpu and k > self.config.gpu_max_k:
            return knn_search(self.base, q, k)
        if self.hnsw:
            self.index.hnsw.efSearch = max(self.config.hnsw_ef_search, k + 1)
        dist, idx = self.index.search(q, k)
        return np.maximum(dist, 0.0), idx
