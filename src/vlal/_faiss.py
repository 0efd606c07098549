"""faiss wrappers: kNN indexes (exact, IVF, HNSW; CPU or GPU) and (weighted) K-Means.

Kept apart from the scoring functions so that index choices live in one place.
All arrays handed to faiss are C-contiguous float32, as faiss requires.

Index kinds (``kind`` of :class:`KnnIndex`)
-------------------------------------------
``"exact"``
    Brute force (``faiss.knn``, BLAS + heaps) over the caller's array: no copy of the
    base, results equal to ``IndexFlatL2``. On GPU: ``IndexFlatL2`` on all GPUs.
``"ivf"``
    Inverted file with flat (uncompressed) lists. The base is partitioned by a coarse
    K-Means into ``nlist = IVF_LISTS_PER_SQRT_N * sqrt(n)`` lists. On CPU the search is
    *query-grouped*: queries are grouped by their nearest list ``c`` and each group is
    searched by one BLAS call against the rows of the ``IVF_NPROBE`` lists whose
    centroids are nearest to centroid ``c``. Compared with faiss' ``IndexIVFFlat`` (which
    probes per query and scans lists one vector at a time) this costs slightly more
    distance computations but runs them as matrix products, and it stores only a row
    permutation, never a second copy of the base. Groups run side by side in a thread
    pool (one faiss thread each). Rows are assigned to lists through
    :func:`assignment_index` (itself an IVF over the centroids when there are many).
    On GPU: faiss ``IndexIVFFlat`` on all GPUs (per-query probing, ``nprobe = IVF_NPROBE``).
``"hnsw"``
    faiss ``IndexHNSWFlat`` (CPU only; keeps its own float32 copy of the base).

``"auto"`` resolves to ``"exact"`` when the brute-force work ``n_base * n_queries`` is at
most ``KNN_EXACT_MAX_ROWS ** 2`` (for an all-vs-all neighbour graph: ``n <=
KNN_EXACT_MAX_ROWS``), else to ``"ivf"``. On a GPU the exact limit is
``KNN_GPU_EXACT_MAX_ROWS``. The thresholds and parameters were measured with
``benchmarks/bench_select.py`` (see ``benchmarks/results/select_scaling.md``).
"""

from __future__ import annotations

import math
import threading
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np

__all__ = [
    "KNN_EXACT_MAX_ROWS",
    "KNN_GPU_EXACT_MAX_ROWS",
    "KNN_KINDS",
    "KnnIndex",
    "assignment_index",
    "knn_search",
    "kmeans",
    "kmeans_fast",
    "distances_computed",
    "num_gpus",
    "resolve_use_gpu",
    "resolve_knn_kind",
]

#: ``"auto"`` uses exact search while ``n_base * n_queries <= KNN_EXACT_MAX_ROWS**2``.
KNN_EXACT_MAX_ROWS = 20_000
#: The same limit when the search runs on GPUs (brute force is cheap there).
KNN_GPU_EXACT_MAX_ROWS = 2_000_000
#: faiss GPU indexes return at most this many neighbours; larger k is searched on the CPU.
GPU_MAX_K = 2048
#: Index kinds accepted by :class:`KnnIndex`.
KNN_KINDS = ("auto", "exact", "ivf", "hnsw")

#: IVF: number of lists is ``round(IVF_LISTS_PER_SQRT_N * sqrt(n))`` (at least 1).
IVF_LISTS_PER_SQRT_N = 2.0
#: IVF: lists probed for each query group (per query on GPU).
IVF_NPROBE = 12
#: IVF: lists probed when assigning rows to lists (when the list count itself needs an IVF)
#: and in the 1-NN assignments of fast K-Means.
IVF_COARSE_NPROBE = 8
#: IVF: rows sampled per list to train the coarse quantizer.
IVF_TRAIN_ROWS_PER_LIST = 32
#: IVF: Lloyd iterations of the coarse quantizer.
IVF_TRAIN_ITER = 10
#: HNSW: graph degree, construction and search beam widths.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = 128

#: ``kmeans_mode="auto"`` runs exact K-Means while ``n * n_clusters`` is at most this.
KMEANS_EXACT_MAX_WORK = 5e7
#: Fast K-Means: weighted draws per centre (the Lloyd sample is ``32 * n_clusters`` draws).
KMEANS_FAST_ROWS_PER_CENTROID = 32
#: Fast K-Means: at most this many Lloyd iterations.
KMEANS_FAST_MAX_ITER = 10
#: 1-NN assignments (fast K-Means, IVF lists) are exact while centres x rows is at most this.
KMEANS_ASSIGN_EXACT_MAX_PAIRS = 2.5e7
#: ... and always exact with fewer centres than this (nothing for an IVF to prune).
IVF_MIN_BASE = 1024

#: faiss K-Means with fewer than this many row x centre x iteration steps runs on one thread.
SMALL_KMEANS_WORK = 5e7

#: Query rows per faiss call (bounds the (rows, k) result blocks and gathered copies).
SEARCH_CHUNK_ROWS = 16384


_DISTANCES = [0]
_DISTANCES_LOCK = threading.Lock()


def distances_computed() -> int:
    """Squared distances evaluated by :func:`knn_search` since import (a diagnostic,
    used by ``benchmarks/bench_select.py`` to report achieved GFLOP/s)."""
    return _DISTANCES[0]


def _as_f32(x) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32)


# --------------------------------------------------------------------------- GPU dispatch


def num_gpus() -> int:
    """Number of GPUs faiss can use (0 for a CPU-only faiss build)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def resolve_use_gpu(use_gpu) -> bool:
    """Turn ``use_gpu`` (``"auto"``, ``True`` or ``False``) into a bool.

    ``"auto"`` means: use the GPUs when faiss has any. ``True`` without a GPU raises
    ``ValueError`` (from :class:`~vlal.VlalInputError` callers) rather than silently
    running on the CPU.
    """
    if isinstance(use_gpu, str):
        if use_gpu != "auto":
            raise ValueError(f"use_gpu must be 'auto', True or False; got {use_gpu!r}")
        return num_gpus() > 0
    if isinstance(use_gpu, (bool, np.bool_)):
        if use_gpu and num_gpus() == 0:
            raise ValueError("use_gpu=True but faiss sees no GPU (install faiss-gpu, or use use_gpu='auto')")
        return bool(use_gpu)
    raise ValueError(f"use_gpu must be 'auto', True or False; got {use_gpu!r}")


def resolve_knn_kind(kind: str, n_base: int, n_queries: int, gpu: bool = False,
                     exact_max_pairs: float | None = None) -> str:
    """The concrete index kind ``"auto"`` stands for (other kinds are returned as given).

    ``"exact"`` while ``n_base * n_queries <= exact_max_pairs`` (default
    ``KNN_EXACT_MAX_ROWS ** 2``; ``KNN_GPU_EXACT_MAX_ROWS ** 2`` on GPUs), else ``"ivf"``.
    """
    if kind not in KNN_KINDS:
        raise ValueError(f"knn_index must be one of {KNN_KINDS}; got {kind!r}")
    if kind != "auto":
        return kind
    if gpu:
        limit = float(KNN_GPU_EXACT_MAX_ROWS) ** 2
    else:
        limit = float(KNN_EXACT_MAX_ROWS) ** 2 if exact_max_pairs is None else exact_max_pairs
    return "exact" if float(n_base) * float(n_queries) <= limit else "ivf"


def _to_gpus(index):
    # All visible GPUs; faiss shards/replicates and copies the (trained) index over.
    return faiss.index_cpu_to_all_gpus(index)


# --------------------------------------------------------------------------- kNN


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
    queries, base = _as_f32(queries), _as_f32(base)
    with _DISTANCES_LOCK:
        _DISTANCES[0] += queries.shape[0] * base.shape[0]
    dist, idx = faiss.knn(queries, base, int(k))
    return np.maximum(dist, 0.0), idx


class KnnIndex:
    """A kNN index over ``base``, built once and searched many times.

    Parameters
    ----------
    base : ndarray of shape (n, d)
        Rows to search (float32, C-contiguous avoids a copy). The array is referenced,
        not copied (except by ``"hnsw"`` and GPU indexes, which hold their own copy);
        do not modify it while the index is in use.
    kind : {"auto", "exact", "ivf", "hnsw"}
        See the module docstring. ``"auto"`` is resolved with ``n_queries``.
    n_queries : int, optional
        Expected number of queries, used only to resolve ``"auto"`` (default ``n``:
        an all-vs-all neighbour graph).
    use_gpu : "auto", bool
        Run on the GPUs (``"auto"``: when faiss has any). ``"hnsw"`` always runs on the CPU.
    seed : int
        Seeds the IVF coarse quantizer (the index is deterministic for a given seed).
    nlist, nprobe : int, optional
        IVF overrides (defaults from the module constants).
    exact_max_pairs : float, optional
        Override of the ``"auto"`` limit (see :func:`resolve_knn_kind`).

    Attributes
    ----------
    kind : str
        The resolved kind.
    gpu : bool
        Whether the searches run on GPUs.
    """

    def __init__(self, base, kind: str = "auto", *, n_queries: int | None = None, use_gpu="auto",
                 seed: int = 0, nlist: int | None = None, nprobe: int | None = None,
                 exact_max_pairs: float | None = None):
        self.base = _as_f32(base)
        self.n, self.d = self.base.shape
        self.gpu = resolve_use_gpu(use_gpu)
        self.kind = resolve_knn_kind(kind, self.n, self.n if n_queries is None else n_queries, self.gpu,
                                     exact_max_pairs)
        if self.kind == "hnsw":
            self.gpu = False
        self._index = None
        self._ivf = None
        if self.kind == "exact" and self.gpu:
            self._index = _to_gpus(faiss.IndexFlatL2(self.d))
            self._index.add(self.base)
        elif self.kind == "ivf":
            nl = default_nlist(self.n) if nlist is None else max(1, min(int(nlist), self.n))
            npb = IVF_NPROBE if nprobe is None else max(1, int(nprobe))
            if self.gpu:
                quantizer = faiss.IndexFlatL2(self.d)
                ivf = faiss.IndexIVFFlat(quantizer, self.d, nl)
                ivf.cp.seed = int(seed)
                ivf.cp.min_points_per_centroid = 1
                ivf.train(self.base[_train_rows(self.n, nl, seed)])
                ivf.nprobe = min(npb, nl)
                self._index = _to_gpus(ivf)
                self._index.add(self.base)
            else:
                self._ivf = _GroupedIVF(self.base, nl, npb, seed)
        elif self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.d, HNSW_M)
            index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            index.add(self.base)
            self._index = index

    def search(self, queries, k: int, rows=None) -> tuple[np.ndarray, np.ndarray]:
        """k nearest base rows of each query (squared L2, ascending).

        Parameters
        ----------
        queries : ndarray of shape (m, d)
        k : int
        rows : ndarray of int, optional
            Search only ``queries[rows]`` (gathered chunk by chunk, never as a whole).

        Returns
        -------
        sq_dist : ndarray (len, k) float32
        idx : ndarray (len, k) int64
            ``-1`` never appears: rows an approximate index could not fill are
            searched exactly.
        """
        k = min(int(k), self.n)
        m = queries.shape[0] if rows is None else len(rows)
        if self._ivf is not None:
            dist, idx = self._ivf.search(queries, k, rows)
        else:
            dist = np.empty((m, k), dtype=np.float32)
            idx = np.empty((m, k), dtype=np.int64)
            for s in range(0, m, SEARCH_CHUNK_ROWS):
                e = min(m, s + SEARCH_CHUNK_ROWS)
                q = _as_f32(queries[s:e] if rows is None else queries[rows[s:e]])
                dist[s:e], idx[s:e] = self._search_block(q, k)
        return self._repair(queries, rows, dist, idx, k)

    def self_search(self, k: int):
        """Yield ``(rows, sq_dist, idx)`` blocks covering every base row once.

        Each base row's ``k`` nearest base rows (usually itself first). Blocks are in
        no particular row order; ``rows`` says which base rows a block holds.
        """
        k = min(int(k), self.n)
        if self._ivf is not None:
            for rows, dist, idx in self._ivf.self_search(k):
                dist, idx = self._repair(self.base, rows, dist, idx, k)
                yield rows, dist, idx
            return
        for s in range(0, self.n, SEARCH_CHUNK_ROWS):
            rows = np.arange(s, min(self.n, s + SEARCH_CHUNK_ROWS))
            dist, idx = self._search_block(self.base[s : rows[-1] + 1], k)
            dist, idx = self._repair(self.base, rows, dist, idx, k)
            yield rows, dist, idx

    def _search_block(self, q: np.ndarray, k: int):
        if self._index is None or (self.gpu and k > GPU_MAX_K):  # exact on CPU
            return knn_search(self.base, q, k)
        if self.kind == "hnsw":
            self._index.hnsw.efSearch = max(HNSW_EF_SEARCH, k + 1)
        dist, idx = self._index.search(q, k)
        return np.maximum(dist, 0.0), idx

    def _repair(self, queries, rows, dist, idx, k):
        # Approximate indexes may return fewer than k hits (-1): redo those rows exactly.
        bad = np.flatnonzero((idx < 0).any(axis=1))
        if bad.size:
            q = queries[bad] if rows is None else queries[np.asarray(rows)[bad]]
            dist[bad], idx[bad] = knn_search(self.base, q, k)
        return dist, idx


def default_nlist(n: int) -> int:
    """IVF list count for ``n`` base rows: ``round(IVF_LISTS_PER_SQRT_N * sqrt(n))``, in ``[1, n]``."""
    return int(max(1, min(n, round(IVF_LISTS_PER_SQRT_N * math.sqrt(n)))))


def _train_rows(n: int, nlist: int, seed: int) -> np.ndarray:
    m = min(n, nlist * IVF_TRAIN_ROWS_PER_LIST)
    rows = np.random.default_rng(seed).choice(n, size=m, replace=False)
    return np.sort(rows)


class _GroupedIVF:
    """Query-grouped IVF-Flat search on the CPU (see the module docstring)."""

    def __init__(self, base: np.ndarray, nlist: int, nprobe: int, seed: int):
        self.base = base
        n, d = base.shape
        self.nlist = nlist
        self.nprobe = min(nprobe, nlist)
        if nlist == 1:
            self.centroids = base[:1].copy()
        else:
            self.centroids = kmeans(base[_train_rows(n, nlist, seed)], nlist, None, seed, IVF_TRAIN_ITER)
        # Coarse assignment through a KnnIndex over the centroids: with many lists and rows
        # it is itself an IVF (approximate nearest list; any consistent partition is valid).
        self._quantizer = assignment_index(self.centroids, n, False, seed)
        self.assign = self._coarse(base, None)
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
        if kk < k:  # fewer candidates than k: pad, repaired exactly by the caller
            dist = np.pad(dist, ((0, 0), (0, k - kk)), constant_values=np.inf)
            idx = np.pad(idx, ((0, 0), (0, k - kk)), constant_values=-1)
        return dist, idx

    def search(self, queries, k: int, rows=None):
        m = queries.shape[0] if rows is None else len(rows)
        rows = None if rows is None else np.asarray(rows)
        dist = np.empty((m, k), dtype=np.float32)
        idx = np.empty((m, k), dtype=np.int64)

        def task(c, pos):
            q = _as_f32(queries[pos] if rows is None else queries[rows[pos]])
            return pos, self._search_group(q, self._candidates(c, k), k)

        tasks = (
            (task, c, pos[s : s + SEARCH_CHUNK_ROWS])
            for c, pos in self._groups(self._coarse(queries, rows))
            for s in range(0, pos.size, SEARCH_CHUNK_ROWS)
        )
        for pos, (d, i) in _parallel_map(tasks):
            dist[pos], idx[pos] = d, i
        return dist, idx

    def self_search(self, k: int):
        def task(c, rows):
            return (rows, *self._search_group(self.base[rows], self._candidates(c, k), k))

        tasks = (
            (task, c, members[s : s + SEARCH_CHUNK_ROWS])
            for c in range(self.nlist)
            for members in [self.order[self.bounds[c] : self.bounds[c + 1]]]
            for s in range(0, members.size, SEARCH_CHUNK_ROWS)
        )
        yield from _parallel_map(tasks)


def _parallel_map(tasks):
    """Run ``fn(*args)`` for each ``(fn, *args)`` of ``tasks``, results in order.

    Many small group searches run faster side by side, one faiss thread each, than one
    after another with faiss' OpenMP threads splitting every small matrix product (and
    far faster when other processes compete for the cores). faiss releases the GIL.
    At most ``2 * workers`` tasks are in flight, so results never pile up.
    """
    workers = max(1, faiss.omp_get_max_threads())
    if workers == 1:
        for fn, *args in tasks:
            yield fn(*args)
        return
    faiss.omp_set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as ex:
            pending = deque()
            for fn, *args in tasks:
                pending.append(ex.submit(fn, *args))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
    finally:
        faiss.omp_set_num_threads(workers)


# --------------------------------------------------------------------------- K-Means


def kmeans(
    x: np.ndarray,
    n_clusters: int,
    weights: np.ndarray | None,
    seed: int,
    n_iter: int = 20,
    use_gpu: bool = False,
) -> np.ndarray:
    """faiss K-Means (Lloyd) on all rows, with optional per-sample weights.

    Returns the centres, shape (n_clusters, d), float32. ``use_gpu`` runs the
    assignment on all GPUs (``faiss.Kmeans(gpu=True)``).
    """
    x = _as_f32(x)
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
    small = not use_gpu and x.shape[0] * n_clusters * n_iter < SMALL_KMEANS_WORK
    threads = faiss.omp_get_max_threads()
    if small:
        faiss.omp_set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            km.train(x, weights=w)
    finally:
        if small:
            faiss.omp_set_num_threads(threads)
    return np.asarray(km.centroids, dtype=np.float32)


def assignment_index(centers: np.ndarray, n_queries: int, use_gpu: bool = False, seed: int = 0) -> KnnIndex:
    """Index for nearest-centre (1-NN) assignments of ``n_queries`` rows.

    Exact while ``n_centres * n_queries <= KMEANS_ASSIGN_EXACT_MAX_PAIRS`` (or fewer than
    ``IVF_MIN_BASE`` centres), else IVF probing ``IVF_COARSE_NPROBE`` lists: an occasional
    second-nearest centre costs a Lloyd step little, while exact assignment of many rows to
    thousands of centres dominates the run time.
    """
    limit = np.inf if len(centers) < IVF_MIN_BASE else KMEANS_ASSIGN_EXACT_MAX_PAIRS
    return KnnIndex(centers, "auto", n_queries=n_queries, use_gpu=use_gpu, seed=seed,
                    nprobe=IVF_COARSE_NPROBE, exact_max_pairs=limit)


def kmeans_fast(
    x: np.ndarray,
    n_clusters: int,
    weights: np.ndarray | None,
    seed: int,
    n_iter: int = KMEANS_FAST_MAX_ITER,
    use_gpu: bool = False,
) -> np.ndarray:
    """Weighted K-Means for many clusters: Lloyd on a weight-proportional sample.

    ``m = KMEANS_FAST_ROWS_PER_CENTROID * n_clusters`` rows are drawn with replacement,
    with probability proportional to ``weights`` (uniform when None); each distinct drawn
    row then carries its number of draws as weight. For any centres ``C``,
    ``(W / m) * sum_draws ||x - C(x)||^2`` is an unbiased estimate of the weighted
    objective ``sum_x w(x) ||x - C(x)||^2`` (``W = sum w``), so Lloyd on the sample
    targets the same problem as exact weighted K-Means, with sampling noise. When
    ``n <= m`` all rows are used with their weights (no sampling).

    Lloyd runs ``min(n_iter, KMEANS_FAST_MAX_ITER)`` iterations; each assignment uses
    :func:`assignment_index` over the current centres (IVF when large), and centres
    are weighted means accumulated in float64 by sparse products, chunk by chunk (the
    sample is never gathered whole). A centre that receives no weight is moved to the
    sampled row with the largest weighted squared distance to its centre.
    Initial centres: ``n_clusters`` distinct rows of the weighted sample, drawn uniformly
    among them, so (like weighted seeding) they start where the weight is. The exact path
    (faiss) starts from rows drawn uniformly from the whole pool; with 10-20 Lloyd
    iterations the start shows in the result: on the synthetic benchmark the fast path
    reaches a lower weighted objective and places fewer centres in low-weight regions.

    Returns the centres, shape (n_clusters, d), float32.
    """
    import scipy.sparse as sp

    x = _as_f32(x)
    n, d = x.shape
    b = int(n_clusters)
    rng = np.random.default_rng(seed)
    m = KMEANS_FAST_ROWS_PER_CENTROID * b
    if n <= m:
        rows = np.arange(n)
        cw = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    else:
        p = None if weights is None else np.asarray(weights, dtype=np.float64) / np.sum(weights)
        rows, counts = np.unique(rng.choice(n, size=m, replace=True, p=p), return_counts=True)
        cw = counts.astype(np.float64)
        if rows.size < b:
            # Weight concentrated on fewer than b rows: add zero-weight rows as spare starts.
            spare = np.setdiff1d(np.arange(n), rows)
            extra = rng.choice(spare, size=b - rows.size, replace=False)
            rows = np.concatenate([rows, extra])
            cw = np.concatenate([cw, np.zeros(extra.size)])
            order = np.argsort(rows)
            rows, cw = rows[order], cw[order]
    # Initial centres: distinct sampled rows, preferring ones that carry weight.
    live = np.flatnonzero(cw > 0)
    if live.size >= b:
        start = rows[rng.choice(live, size=b, replace=False)]
    else:
        start = np.concatenate([rows[live], rng.choice(rows[cw == 0], size=b - live.size, replace=False)])
    centers = x[np.sort(start)].copy()
    cw32 = cw.astype(np.float32)
    step = SEARCH_CHUNK_ROWS
    for it in range(max(1, min(int(n_iter), KMEANS_FAST_MAX_ITER))):
        index = assignment_index(centers, rows.size, use_gpu, seed + it)
        d2, a = index.search(x, 1, rows=rows)
        d2, a = d2[:, 0].astype(np.float64), a[:, 0]
        wsum = np.bincount(a, weights=cw, minlength=b)
        sums = np.zeros((b, d), dtype=np.float64)
        for s in range(0, rows.size, step):
            e = min(rows.size, s + step)
            onehot = sp.csr_matrix((cw32[s:e], (a[s:e], np.arange(e - s))), shape=(b, e - s))
            sums += onehot @ x[rows[s:e]]
        full = wsum > 0
        centers[full] = (sums[full] / wsum[full, None]).astype(np.float32)
        empty = np.flatnonzero(~full)
        if empty.size:
            far = np.argsort(-(cw * d2), kind="stable")[: empty.size]
            centers[empty] = x[rows[far]]
    return centers
