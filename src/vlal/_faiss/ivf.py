"""Query-grouped IVF-Flat search on the CPU, the GPU IVF, and index construction.

Imports :mod:`.config`, :mod:`.device`, :mod:`.exact` and :mod:`.lloyd` only. The coarse
quantizer of a :class:`GroupedIVF` is built by :func:`assignment_index` of this module
(exact, or itself a smaller ``GroupedIVF`` over the centroids), never by the facade.

On CPU the search is *query-grouped*: queries are grouped by their nearest list ``c``
and each group is searched by one BLAS call against the rows of the ``nprobe`` lists
whose centroids are nearest to centroid ``c``. Compared with faiss' ``IndexIVFFlat``
(which probes per query and scans lists one vector at a time) this costs slightly more
distance computations but runs them as matrix products, and it stores only a row
permutation, never a second copy of the base. Groups run side by side in a thread pool
(one OpenMP thread each, limited through threadpoolctl).
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np

from .config import DEFAULT_CONFIG, FaissConfig
from .device import as_f32, max_threads, resolve_use_gpu, single_thread, to_gpus
from .exact import ExactSearch, FaissSearch, knn_search, repair, resolve_knn_kind
from .lloyd import kmeans

__all__ = ["GroupedIVF", "assignment_index", "build_index", "default_nlist", "train_rows"]


def default_nlist(n: int, config: FaissConfig = DEFAULT_CONFIG) -> int:
    """IVF list count for ``n`` base rows: ``round(ivf_lists_per_sqrt_n * sqrt(n))``, in ``[1, n]``."""
    return int(max(1, min(n, round(config.ivf_lists_per_sqrt_n * math.sqrt(n)))))


def train_rows(n: int, nlist: int, seed: int, config: FaissConfig = DEFAULT_CONFIG) -> np.ndarray:
    """Sorted rows sampled (without replacement) to train an IVF coarse quantizer."""
    m = min(n, nlist * config.ivf_train_rows_per_list)
    rows = np.random.default_rng(seed).choice(n, size=m, replace=False)
    return np.sort(rows)


def parallel_map(tasks):
    """Run ``fn(*args)`` for each ``(fn, *args)`` of ``tasks``, results in order.

    Many small group searches run faster side by side, one OpenMP thread each, than one
    after another with faiss' OpenMP threads splitting every small matrix product (and
    far faster when other processes compete for the cores). faiss releases the GIL.
    At most ``2 * workers`` tasks are in flight, so results never pile up.
    """
    workers = max_threads()
    if workers == 1:
        for fn, *args in tasks:
            yield fn(*args)
        return
    with single_thread(), ThreadPoolExecutor(workers) as ex:
        pending = deque()
        for fn, *args in tasks:
            pending.append(ex.submit(fn, *args))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class GroupedIVF:
    """Query-grouped IVF-Flat search on the CPU (see the module docstring)."""

    def __init__(self, base: np.ndarray, nlist: int, nprobe: int, seed: int,
                 config: FaissConfig = DEFAULT_CONFIG):
        self.base = as_f32(base)
        self.config = config
        n, d = self.base.shape
        self.n = n
        self.nlist = nlist
        self.nprobe = min(nprobe, nlist)
        if nlist == 1:
            self.centroids = self.base[:1].copy()
        else:
            self.centroids = kmeans(self.base[train_rows(n, nlist, seed, config)], nlist, None, seed,
                                    config.ivf_train_iter, config=config)
        # Coarse assignment: exact, or with many lists and rows itself a (smaller) grouped IVF
        # over the centroids (approximate nearest list; any consistent partition is valid).
        self._quantizer = assignment_index(self.centroids, n, False, seed, config)
        self.assign = self._coarse(self.base, None)
        self.order = np.argsort(self.assign, kind="stable")
        self.bounds = np.searchsorted(self.assign[self.order], np.arange(nlist + 1))
        # Probe lists per group: the lists whose centroids are nearest the group's centroid.
        # Keep a few spare ones to fall back on when the probed lists hold fewer than k rows.
        self.probe = knn_search(self.centroids, self.centroids, min(nlist, 4 * self.nprobe))[1]

    def _coarse(self, x, rows) -> np.ndarray:
        return self._quantizer.search(x, 1, rows=rows)[1][:, 0]

    def _candidates(self, c: int, k: int) -> np.ndarray:
        lists = self.probe[c]
        parts, total = [], 0
        for j, lst in enumerate(lists):
            if lst < 0:
                break
            part = self.order[self.bounds[lst] : self.bounds[lst + 1]]
            parts.append(part)
            total += part.size
            if j + 1 >= self.nprobe and total >= k:
                break
        return np.sort(np.concatenate(parts))  # sorted rows: friendlier gathers

    def _groups(self, assign: np.ndarray):
        order = np.argsort(assign, kind="stable")
        bounds = np.searchsorted(assign[order], np.arange(self.nlist + 1))
        for c in range(self.nlist):
            if bounds[c + 1] > bounds[c]:
                yield c, order[bounds[c] : bounds[c + 1]]

    def _search_group(self, q: np.ndarray, cand: np.ndarray, k: int):
        kk = min(k, cand.size)
        dist, idx = knn_search(self.base[cand], q, kk)
        idx = np.where(idx >= 0, cand[np.maximum(idx, 0)], -1)
        if kk < k:  # fewer candidates than k: pad, repaired exactly below
            dist = np.pad(dist, ((0, 0), (0, k - kk)), constant_values=np.inf)
            idx = np.pad(idx, ((0, 0), (0, k - kk)), constant_values=-1)
        return dist, idx

    def search(self, queries, k: int, rows=None):
        """k nearest base rows of ``queries`` (or ``queries[rows]``); no ``-1`` in the result."""
        k = min(int(k), self.n)
        m = queries.shape[0] if rows is None else len(rows)
        rows = None if rows is None else np.asarray(rows)
        step = self.config.search_chunk_rows
        dist = np.empty((m, k), dtype=np.float32)
        idx = np.empty((m, k), dtype=np.int64)

        def task(c, pos):
            q = as_f32(queries[pos] if rows is None else queries[rows[pos]])
            return pos, self._search_group(q, self._candidates(c, k), k)

        tasks = (
            (task, c, pos[s : s + step])
            for c, pos in self._groups(self._coarse(queries, rows))
            for s in range(0, pos.size, step)
        )
        for pos, (d, i) in parallel_map(tasks):
            dist[pos], idx[pos] = d, i
        return repair(self.base, queries, rows, dist, idx, k)

    def self_search(self, k: int):
        """Yield ``(rows, sq_dist, idx)`` blocks covering every base row once."""
        k = min(int(k), self.n)
        step = self.config.search_chunk_rows

        def task(c, rows):
            return (rows, *self._search_group(self.base[rows], self._candidates(c, k), k))

        tasks = (
            (task, c, members[s : s + step])
            for c in range(self.nlist)
            for members in [self.order[self.bounds[c] : self.bounds[c + 1]]]
            for s in range(0, members.size, step)
        )
        for rows, dist, idx in parallel_map(tasks):
            dist, idx = repair(self.base, self.base, rows, dist, idx, k)
            yield rows, dist, idx


def build_index(base: np.ndarray, kind: str, *, gpu: bool, seed: int = 0, nlist: int | None = None,
                nprobe: int | None = None, config: FaissConfig = DEFAULT_CONFIG):
    """The search backend for a resolved ``kind`` (``"exact"``, ``"ivf"`` or ``"hnsw"``).

    Returns an object with ``search(queries, k, rows=None)`` and ``self_search(k)``:
    :class:`~.exact.ExactSearch` (exact on CPU), :class:`~.exact.FaissSearch` (GPU flat,
    GPU ``IndexIVFFlat``, HNSW) or :class:`GroupedIVF` (IVF on CPU).
    """
    base = as_f32(base)
    n, d = base.shape
    if kind == "exact":
        if not gpu:
            return ExactSearch(base, config)
        index = to_gpus(faiss.IndexFlatL2(d))
        index.add(base)
        return FaissSearch(base, index, gpu=True, config=config)
    if kind == "ivf":
        nl = default_nlist(n, config) if nlist is None else max(1, min(int(nlist), n))
        npb = config.ivf_nprobe if nprobe is None else max(1, int(nprobe))
        if not gpu:
            return GroupedIVF(base, nl, npb, seed, config)
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nl)
        ivf.cp.seed = int(seed)
        ivf.cp.niter = int(config.ivf_train_iter)
        ivf.cp.min_points_per_centroid = 1
        ivf.clustering_index = to_gpus(faiss.IndexFlatL2(d))  # train the coarse centroids on the GPUs too
        ivf.train(base[train_rows(n, nl, seed, config)])
        ivf.nprobe = min(npb, nl)
        index = to_gpus(ivf)
        index.add(base)
        return FaissSearch(base, index, gpu=True, config=config)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, config.hnsw_m)
        index.hnsw.efConstruction = config.hnsw_ef_construction
        index.add(base)
        return FaissSearch(base, index, gpu=False, hnsw=True, config=config)
    raise ValueError(f"unknown resolved index kind {kind!r}")


def assignment_index(centers: np.ndarray, n_queries: int, use_gpu=False, seed: int = 0,
                     config: FaissConfig = DEFAULT_CONFIG):
    """Index for nearest-centre (1-NN) assignments of ``n_queries`` rows.

    Exact while ``n_centres * n_queries <= config.kmeans_assign_exact_max_pairs`` (or fewer
    than ``config.ivf_min_base`` centres), else IVF probing ``config.ivf_coarse_nprobe``
    lists: an occasional second-nearest centre costs a Lloyd step little, while exact
    assignment of many rows to thousands of centres dominates the run time.
    """
    gpu = resolve_use_gpu(use_gpu)
    limit = np.inf if len(centers) < config.ivf_min_base else config.kmeans_assign_exact_max_pairs
    kind = resolve_knn_kind("auto", len(centers), n_queries, gpu, limit, config)
    return build_index(centers, kind, gpu=gpu, seed=seed, nprobe=config.ivf_coarse_nprobe, config=config)
