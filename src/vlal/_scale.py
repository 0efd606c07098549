"""CEC on pools that do not fit in memory: streaming passes over shards and a compressed kNN index.

Used by :class:`vlal.CEC` when the features are a :class:`vlal.shards.ShardedFeatures`
larger than :data:`STREAM_MIN_BYTES` (as float32). Nothing here holds an (n, d) float32
or (n, K) array; the largest array is the compressed index, ``n * d`` bytes.

Stages (timed in ``stats["stages_s"]``)
--------------------------------------
``prior``
    One pass over ``probs`` (float16/float32 shards, or any array) keeping a running
    top-``N`` per class: the contextualised prior of Eq. 3-4, exactly.
``entropy``
    A second pass: calibrated entropy ``H^`` (Eq. 2, 5) block by block, exactly.
``index``
    The compressed kNN index (:class:`CompressedIVF`): coarse centroids in two levels
    (:func:`two_level_centroids`, faiss K-Means, then :data:`POLISH_ITER` global Lloyd
    steps) on a uniform sample, then one pass over the features assigning each row to a
    list (its nearest centroid among those of its :data:`ASSIGN_PROBE` nearest top
    centroids) and encoding it with 8-bit scalar quantisation (faiss SQ8, one byte per
    coordinate). In the same pass, exact neighbours of :data:`RECALL_QUERIES` sampled rows
    are computed for the recall measurement.
``tune``
    The number of probed lists is the smallest of :data:`PROBE_CHOICES` whose recall@k
    on the sampled rows (against the exact neighbours), minus two standard errors of that
    estimate, reaches ``min_recall``: recall is measured, not assumed.
``knn``
    Eq. 6 over every candidate: query-grouped search on the decoded SQ8 codes (one BLAS
    product per list against the rows of the probed lists). The distances in Eq. 6 are
    the SQ8 ones (their error is measured and reported, ``stats["sq8_dist_err"]``).
``kmeans``
    Weighted K-Means (Sec. 4.3) by the fast path of :func:`vlal._faiss.kmeans_fast`:
    ``32 b`` rows drawn with probability proportional to ``U`` and read from the shards.
``groups``
    The duplicate rule's groups of copies (:func:`vlal._validation.copy_groups`, the rule of
    the in-memory path: normalised rows within the copy tolerance of the shards' dtype) from
    8 projections per row kept in the ``index`` pass (32 bytes a row) and a k-d tree over them;
    the few candidate pairs are checked on rows read from the shards. ``stats["copy_groups"]``: rows that are
    copies of an earlier row.
``query``
    Nearest candidate to each centre (Sec. 4.4): candidates from the compressed index,
    re-ranked exactly on the float16 rows read from the shards, distinct rows as
    :func:`vlal.nearest_to_centers`, no two rows of one group of copies while a candidate of
    a group without a pick remains.
"""

from __future__ import annotations

import math
import time

import numpy as np

from . import _faiss
from ._faiss.ivf import parallel_map
from ._validation import COPY_TOL, GROUP_DIMS, copy_projections, groups_from_projections, prob_tolerance, rng_from
from ._warnings import warn_caller
from .scoring import _neighbor_term
from .exceptions import VlalInputError

__all__ = ["CompressedIVF", "SQ8", "cec_stream", "STREAM_MIN_BYTES"]

#: ``vlal.CEC`` streams sharded features whose float32 size exceeds this (1 GiB);
#: smaller ones are read into memory and take the in-memory path.
STREAM_MIN_BYTES = 2**30
#: Compressed IVF: rows per list (``nlist = round(n / ROWS_PER_LIST)``).
ROWS_PER_LIST = 192
#: Probed lists tried, smallest first, when tuning for ``min_recall``.
PROBE_CHOICES = (2, 3, 4, 6, 8, 12, 16, 24, 32)
#: Per-query probing: each query picks its lists among this many x nprobe lists nearest its own list.
PROBE_WINDOW = 2
#: Rows sampled to measure recall against exact search.
RECALL_QUERIES = 1024
#: Coarse quantizer: sample rows per list and Lloyd iterations.
TRAIN_ROWS_PER_LIST = 16
TRAIN_ITER = 10
#: Rows go to their nearest sub-centroid among those of their this many nearest top centroids.
ASSIGN_PROBE = 8
#: Global Lloyd steps over the two-level centroids (sub-centroids compete across top clusters).
POLISH_ITER = 3
#: Rows per streamed block.
BLOCK_ROWS = 65536
#: Progress messages of :func:`cec_stream` go to this callable when set (e.g. ``print``).
LOG = None


class SQ8:
    """8-bit scalar quantiser, one (min, step) per coordinate: faiss' ``ScalarQuantizer``
    (``QT_8bit``, range = per-coordinate min..max of a training sample widened by 1 %)."""

    def __init__(self, sample: np.ndarray):
        import faiss

        self.sq = faiss.ScalarQuantizer(sample.shape[1], faiss.ScalarQuantizer.QT_8bit)
        self.sq.rangestat = faiss.ScalarQuantizer.RS_minmax
        self.sq.rangestat_arg = 0.01
        self.sq.train(np.ascontiguousarray(sample, dtype=np.float32))

    def encode(self, x: np.ndarray) -> np.ndarray:
        return self.sq.compute_codes(np.ascontiguousarray(x, dtype=np.float32))

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return self.sq.decode(np.ascontiguousarray(codes, dtype=np.uint8))


def two_level_centroids(sample: np.ndarray, nlist: int, seed: int, n_iter: int = 10):
    """Coarse centroids in two levels, each trained by faiss K-Means.

    ``round(sqrt(nlist))`` top centroids are trained on ``sample``; the sample rows of each top
    cluster are then split into sub-centroids, as many as the cluster's share of ``nlist``
    (at least 1, at most its rows), as in ``faiss.contrib.clustering.two_level_clustering``.
    Training costs ``~2 sqrt(nlist)`` distances per sample row and iteration instead of
    ``nlist`` (at 10^7 rows: 52,083 lists from 833,328 rows in minutes, not a quarter hour).

    Returns
    -------
    top : ndarray (n_top, d) float32
    centroids : ndarray (nlist', d) float32
        Sub-centroids grouped by top cluster; ``nlist'`` is ``nlist`` up to rounding.
    offsets : ndarray (n_top + 1,) int64
        The sub-centroids of top cluster ``c`` are ``centroids[offsets[c]:offsets[c + 1]]``.
    """
    m, d = sample.shape
    nlist = int(max(1, min(nlist, m)))
    n_top = int(max(1, min(round(math.sqrt(nlist)), m)))
    top = _faiss.kmeans(sample, n_top, None, seed, n_iter) if n_top > 1 else sample.mean(axis=0, keepdims=True)
    a = _faiss.knn_search(top, sample, 1)[1][:, 0]
    sizes = np.bincount(a, minlength=n_top)
    share = np.floor(nlist * sizes / m).astype(np.int64)
    n_sub = np.where(sizes > 0, np.clip(share, 1, np.maximum(sizes, 1)), 1)
    order = np.argsort(a, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    parts = []
    for c in range(n_top):
        rows = sample[order[bounds[c] : bounds[c + 1]]]
        if rows.shape[0] == 0:
            parts.append(top[c : c + 1])
        elif n_sub[c] == 1:
            parts.append(rows.mean(axis=0, keepdims=True))
        else:
            parts.append(_faiss.kmeans(rows, int(n_sub[c]), None, seed + 1 + c, n_iter))
    offsets = np.concatenate([[0], np.cumsum(n_sub)]).astype(np.int64)
    return np.ascontiguousarray(top, dtype=np.float32), np.vstack(parts).astype(np.float32), offsets


class CompressedIVF:
    """Query-grouped IVF over SQ8 codes, built in one streaming pass.

    Coarse centroids: :func:`two_level_centroids` on the sample (``~sqrt(nlist)`` top
    centroids, each top cluster split into sub-centroids), then :data:`POLISH_ITER` Lloyd
    steps over all sub-centroids at once, so that they compete across top clusters. A row's
    list is its nearest sub-centroid among those of its :data:`ASSIGN_PROBE` nearest top
    centroids (:meth:`assign_rows`): not always its globally nearest centroid, at
    ``~(1 + ASSIGN_PROBE) sqrt(nlist)`` distances per row instead of ``nlist``. The search
    probes lists by centroid distance and its recall is measured, not assumed.

    Parameters
    ----------
    sample : ndarray (m, d) float32
        Uniform sample of the (normalised) rows: trains the coarse centroids and SQ8.
    n : int
        Rows that will be added.
    seed : int
    nlist : int, optional
        Default ``round(n / ROWS_PER_LIST)``.

    Memory: ``n * d`` bytes of codes, ``4 n`` bytes of list ids, ``8 n`` of the list order.
    """

    def __init__(self, sample: np.ndarray, n: int, seed: int, nlist: int | None = None):
        self.n = int(n)
        self.d = sample.shape[1]
        nl = nlist if nlist is not None else round(n / ROWS_PER_LIST)
        self.seed = seed
        self.top, self.centroids, self.offsets = two_level_centroids(sample, nl, seed, TRAIN_ITER)
        self.nlist = int(self.centroids.shape[0])
        self._sq_norms = (self.centroids.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)
        for _ in range(POLISH_ITER):
            self._lloyd_step(sample)
        # SQ8 of the residuals to the list centroid (their range is narrower than the rows')
        self.sq = SQ8(sample - self.centroids[self.assign_rows(sample)])
        self.codes = np.empty((self.n, self.d), dtype=np.uint8)
        self.assign = np.empty(self.n, dtype=np.int32)
        self.nprobe = min(PROBE_CHOICES[0], self.nlist)
        self._filled = 0

    def _lloyd_step(self, sample: np.ndarray) -> None:
        """One Lloyd step over all sub-centroids at once (rows assigned by :meth:`assign_rows`,
        so sub-centroids compete across top clusters), then the sub-centroids are regrouped by
        their nearest top centroid."""
        import scipy.sparse as sp

        a = self.assign_rows(sample)
        counts = np.bincount(a, minlength=self.nlist)
        onehot = sp.csr_matrix((np.ones(a.size, dtype=np.float32), (a, np.arange(a.size))), shape=(self.nlist, a.size))
        sums = np.asarray(onehot @ sample, dtype=np.float64)
        full = counts > 0
        cent = self.centroids.copy()
        cent[full] = (sums[full] / counts[full, None]).astype(np.float32)
        owner = _faiss.knn_search(self.top, cent, 1)[1][:, 0]
        order = np.argsort(owner, kind="stable")
        self.centroids = np.ascontiguousarray(cent[order])
        self.offsets = np.searchsorted(owner[order], np.arange(self.top.shape[0] + 1)).astype(np.int64)
        self._sq_norms = (self.centroids.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)

    def assign_rows(self, x: np.ndarray) -> np.ndarray:
        """List of each row of float32 ``x``: its nearest sub-centroid among those of its
        :data:`ASSIGN_PROBE` nearest top centroids (one matrix product per top cluster,
        over the rows that probe it; as IVF search with ``nprobe = ASSIGN_PROBE``)."""
        n_top = self.top.shape[0]
        p = min(ASSIGN_PROBE, n_top)
        top = _faiss.knn_search(self.top, x, p)[1]
        flat = top.ravel()
        order = np.argsort(flat, kind="stable")
        bounds = np.searchsorted(flat[order], np.arange(n_top + 1))
        best = np.full(x.shape[0], np.inf, dtype=np.float32)
        out = np.zeros(x.shape[0], dtype=np.int64)
        for t in np.flatnonzero(np.diff(bounds)):
            rows = order[bounds[t] : bounds[t + 1]] // p
            lo, hi = self.offsets[t], self.offsets[t + 1]
            # ||x - c||^2 - ||x||^2 = ||c||^2 - 2 x.c
            d = self._sq_norms[lo:hi] - 2.0 * (x[rows] @ self.centroids[lo:hi].T)
            j = d.argmin(axis=1)
            dj = d[np.arange(rows.size), j]
            better = dj < best[rows]
            best[rows[better]] = dj[better]
            out[rows[better]] = lo + j[better]
        return out

    def add(self, block: np.ndarray) -> None:
        """Append rows (in order) of normalised float32 features."""
        s, e = self._filled, self._filled + block.shape[0]
        a = self.assign_rows(block)
        self.assign[s:e] = a
        self.codes[s:e] = self.sq.encode(block - self.centroids[a])
        self._filled = e

    def finish(self) -> None:
        """Sort rows by list; call after the last :meth:`add`."""
        if self._filled != self.n:
            raise RuntimeError(f"added {self._filled} rows, expected {self.n}")
        self.order = np.argsort(self.assign, kind="stable")
        self.bounds = np.searchsorted(self.assign[self.order], np.arange(self.nlist + 1))
        self.probe = _faiss.knn_search(self.centroids, self.centroids, min(self.nlist, PROBE_WINDOW * max(PROBE_CHOICES)))[1]

    def decode(self, rows: np.ndarray) -> np.ndarray:
        """Approximate float32 rows (SQ8 residual + list centroid)."""
        out = self.sq.decode(self.codes[rows])
        out += self.centroids[self.assign[rows]]
        return out

    def _candidates(self, q: np.ndarray, c: int, k: int, nprobe: int) -> np.ndarray:
        """Rows of the lists probed for queries ``q`` (all assigned to list ``c``): each query's
        ``nprobe`` nearest lists among the ``PROBE_WINDOW * nprobe`` lists nearest to list ``c``
        (per-query probing, exact centroid distances), united; widened until >= k rows."""
        window = self.probe[c][: max(PROBE_WINDOW * nprobe, nprobe)]
        window = window[window >= 0]
        if window.size > nprobe:
            d2 = _faiss.knn_search(self.centroids[window], q, nprobe)[1]
            lists = window[np.unique(d2[d2 >= 0])]
        else:
            lists = window
        parts = [self.order[self.bounds[lst] : self.bounds[lst + 1]] for lst in lists]
        total = sum(p.size for p in parts)
        for lst in self.probe[c]:
            if total >= k:
                break
            if lst >= 0 and lst not in lists:
                part = self.order[self.bounds[lst] : self.bounds[lst + 1]]
                parts.append(part)
                total += part.size
        return np.sort(np.concatenate(parts))

    def _group(self, q: np.ndarray, c: int, k: int, nprobe: int):
        cand = self._candidates(q, c, k, nprobe)
        kk = min(k, cand.size)
        dist, idx = _faiss.knn_search(self.decode(cand), q, kk)
        idx = np.where(idx >= 0, cand[np.maximum(idx, 0)], -1)
        if kk < k:
            dist = np.pad(dist, ((0, 0), (0, k - kk)), constant_values=np.inf)
            idx = np.pad(idx, ((0, 0), (0, k - kk)), constant_values=-1)
        return dist, idx

    def search_rows(self, rows: np.ndarray, k: int, nprobe: int | None = None):
        """k nearest indexed rows of indexed rows ``rows`` (queries decoded from their codes)."""
        nprobe = self.nprobe if nprobe is None else nprobe
        rows = np.asarray(rows, dtype=np.int64)
        dist = np.empty((rows.size, k), dtype=np.float32)
        idx = np.empty((rows.size, k), dtype=np.int64)
        a = self.assign[rows]
        for c in np.unique(a):
            pos = np.flatnonzero(a == c)
            dist[pos], idx[pos] = self._group(self.decode(rows[pos]), int(c), k, nprobe)
        return dist, idx

    def search(self, queries: np.ndarray, k: int, nprobe: int | None = None):
        """k nearest indexed rows of float32 ``queries`` (grouped by their nearest list)."""
        nprobe = self.nprobe if nprobe is None else nprobe
        q = np.ascontiguousarray(queries, dtype=np.float32)
        a = self.assign_rows(q)
        dist = np.empty((q.shape[0], k), dtype=np.float32)
        idx = np.empty((q.shape[0], k), dtype=np.int64)
        for c in np.unique(a):
            pos = np.flatnonzero(a == c)
            dist[pos], idx[pos] = self._group(q[pos], int(c), k, nprobe)
        return dist, idx

    def self_search(self, k: int, nprobe: int | None = None):
        """Yield ``(rows, sq_dist, idx)`` covering every row once (queries from their codes)."""
        nprobe = self.nprobe if nprobe is None else nprobe

        def task(c, members):
            return (members, *self._group(self.decode(members), c, k, nprobe))

        tasks = (
            (task, c, members[s : s + _faiss.DEFAULT_CONFIG.search_chunk_rows])
            for c in range(self.nlist)
            for members in [self.order[self.bounds[c] : self.bounds[c + 1]]]
            for s in range(0, members.size, _faiss.DEFAULT_CONFIG.search_chunk_rows)
        )
        yield from parallel_map(tasks)


# ----------------------------------------------------------------------------- readers


def _reader(x, cand: np.ndarray | None, name: str):
    """``read(start, stop) -> float64 block`` of rows ``cand[start:stop]`` (or start:stop)."""
    from .shards import ShardedFeatures

    def read(s, e, rows=None):
        if rows is None:
            rows = slice(s, e) if cand is None else cand[s:e]
        if isinstance(x, ShardedFeatures):
            block = x.read(rows, dtype=np.float32)
        else:
            block = np.asarray(x[rows], dtype=np.float32)
        if not np.isfinite(block).all():
            raise VlalInputError(f"{name} contains NaN or inf (in the rows read at positions {s}..{e})")
        return block

    return read


def _normalised(block: np.ndarray, name: str, first: int) -> np.ndarray:
    """Rows of ``block`` scaled to unit L2 norm, as a new float32 array (``faiss.normalize_L2``:
    float32 norms, ~25x faster than float64 norms in numpy at 512 dimensions)."""
    import faiss

    out = np.array(block, dtype=np.float32, order="C", copy=True)
    zero = ~out.any(axis=1)
    if zero.any():
        raise VlalInputError(f"{name} row at candidate position {first + int(np.flatnonzero(zero)[0])} has zero norm")
    faiss.normalize_L2(out)
    return out


def _probs_block(read, s, e, tol):
    """Rows ``s:e`` of probs as float32, checked (>= 0, rows sum to 1 within ``tol``) and renormalised."""
    p = read(s, e)
    if p.min(initial=0.0) < 0:
        raise VlalInputError("probs has negative values; class probabilities are expected, not logits")
    tot = p.sum(axis=1, dtype=np.float64)
    bad = np.abs(tot - 1.0) > tol
    if bad.any():
        raise VlalInputError(
            f"probs row at candidate position {s + int(np.flatnonzero(bad)[0])} sums to "
            f"{tot[bad][0]:.6g}, not 1 (tolerance {tol})"
        )
    p /= tot[:, None].astype(np.float32)
    return p


class _TopN:
    """Running ``n`` largest values per column (Eq. 3), touching only values above the
    current ``n``-th largest of their column."""

    def __init__(self, n: int, k: int):
        self.n = n
        self.best = None
        self.k = k

    def update(self, block: np.ndarray) -> None:
        if self.best is None or self.best.shape[1] < self.n:
            stack = block.T if self.best is None else np.hstack([self.best, block.T])
            m = min(self.n, stack.shape[1])
            self.best = -np.partition(-stack, m - 1, axis=1)[:, :m]
            return
        thr = self.best.min(axis=1)
        hit = block > thr[None, :]
        cols = np.flatnonzero(hit.any(axis=0))
        if cols.size == 0:
            return
        sub = np.where(hit[:, cols], block[:, cols], -np.inf).T
        stack = np.hstack([self.best[cols], sub])
        self.best[cols] = -np.partition(-stack, self.n - 1, axis=1)[:, : self.n]

    def mean(self) -> np.ndarray:
        return self.best.astype(np.float64).mean(axis=1)


def _calibrated_entropy_block(p: np.ndarray, inv_q: np.ndarray | None) -> np.ndarray:
    """Eq. 2 (+ Eq. 5 when ``inv_q`` is given) of float32 rows, summed in float64; a row whose
    ratios all vanish keeps its uncalibrated entropy. ``0 log 0 = 0``."""
    if inv_q is not None:
        r = p * inv_q
        tot = r.sum(axis=1, dtype=np.float64)
        good = tot > 0
        r /= np.where(good, tot, 1.0)[:, None].astype(np.float32)
        if not good.all():
            r[~good] = p[~good]
        p = r
    logp = np.log(np.maximum(p, np.finfo(np.float32).tiny))
    logp *= p
    return -logp.sum(axis=1, dtype=np.float64)


# ----------------------------------------------------------------------------- CEC


def cec_stream(features, probs, budget: int, candidates: np.ndarray, *, k: int = 20, alpha: float = 0.1,
               top_n: int = 10, calibration: bool = True, neighbor_term: bool = True,
               clustering: str = "weighted", n_iter: int = 10, seed: int = 0, min_recall: float = 0.9,
               stats: dict | None = None, log=None) -> np.ndarray:
    """CEC (Algorithm 1) streaming over sharded features; returns pool rows (see module doc).

    Parameters
    ----------
    features : ShardedFeatures or array (n, d)
    probs : ShardedFeatures or array (n, K)
        Class probabilities; float16 shards are accepted (rows must sum to 1 within 1e-2
        for float16, 1e-3 otherwise; each block is renormalised; scores are computed in float32).
    budget : int
    candidates : ndarray (m,), int64
        Sorted pool rows that may be queried.
    min_recall : float, default 0.9
        Target recall@k of the compressed index, measured on sampled rows.
    stats : dict, optional
        Filled with stage times (``stages_s``), index parameters and measured recall.
    log : callable, optional
        Progress messages (e.g. ``print``).

    Raises
    ------
    VlalInputError
        ``clustering="greedy"`` (needs every row's cluster; not streamed), NaN/inf, zero
        rows, probabilities that are not probabilities.
    """
    if clustering == "greedy":
        raise VlalInputError("clustering='greedy' is not available on streamed (sharded) pools; use 'weighted' or 'plain'")
    st = stats if stats is not None else {}
    times = st.setdefault("stages_s", {})
    log = log or LOG or (lambda *_, **__: None)
    rng = rng_from(seed)
    m = int(candidates.size)
    n_classes = probs.shape[1]
    tol = prob_tolerance(probs.dtype)  # the in-memory rule (float16: + its own rounding)
    fread = _reader(features, candidates if m < features.shape[0] else None, "features")
    pread = _reader(probs, candidates if m < probs.shape[0] else None, "probs")
    pstep = max(1024, 2**24 // max(1, n_classes))

    # ---- Eq. 3-4: prior (running top-N per class), then Eq. 2 + 5: calibrated entropy
    t = time.perf_counter()
    inv_q = None
    if calibration:
        top = _TopN(min(top_n, m), n_classes)
        for s in range(0, m, pstep):
            top.update(_probs_block(pread, s, min(m, s + pstep), tol))
        q = top.mean()
        inv_q = np.divide(1.0, q, out=np.zeros_like(q), where=q > 0).astype(np.float32)
    times["prior"] = time.perf_counter() - t
    log(f"prior: {times['prior']:.1f} s")
    t = time.perf_counter()
    h = np.empty(m, dtype=np.float64)
    for s in range(0, m, pstep):
        block = _probs_block(pread, s, min(m, s + pstep), tol)
        h[s : s + block.shape[0]] = _calibrated_entropy_block(block, inv_q)
    times["entropy"] = time.perf_counter() - t
    log(f"entropy: {times['entropy']:.1f} s")

    # ---- compressed index (+ exact neighbours of sampled rows for the recall measurement)
    t = time.perf_counter()
    index = None
    need_nn = neighbor_term and m >= 2
    kk = min(k, m - 1) if m >= 2 else 1
    if need_nn and k >= m:  # as the in-memory path (vlal.scoring.neighbor_uncertainty)
        warn_caller(f"k={k} >= number of candidates ({m}); using k={m - 1}", UserWarning)
    sample_n = min(m, max(65536, TRAIN_ROWS_PER_LIST * max(1, round(m / ROWS_PER_LIST))))
    train_rows = np.sort(rng.choice(m, size=sample_n, replace=False))
    sample = _normalised(fread(0, 0, rows=_pos_to_rows(train_rows, candidates, m, features)), "features", 0)
    index = CompressedIVF(sample, m, int(rng.integers(0, 2**31 - 1)))
    del sample
    rq = np.sort(rng.choice(m, size=min(RECALL_QUERIES, m), replace=False))
    qx = _normalised(fread(0, 0, rows=_pos_to_rows(rq, candidates, m, features)), "features", 0)
    gt_d = np.full((rq.size, kk + 1), np.inf, dtype=np.float32)
    gt_i = np.full((rq.size, kk + 1), -1, dtype=np.int64)
    proj = np.empty((m, min(features.shape[1], GROUP_DIMS)), dtype=np.float32)  # for the duplicate rule
    for s in range(0, m, BLOCK_ROWS):
        e = min(m, s + BLOCK_ROWS)
        block = _normalised(fread(s, e), "features", s)
        index.add(block)
        proj[s:e] = copy_projections(block)
        dd, ii = _faiss.knn_search(block, qx, min(kk + 1, e - s))
        gt_d, gt_i = _merge(gt_d, gt_i, dd, ii + s, kk + 1)
        if (s // BLOCK_ROWS) % 16 == 0:
            log(f"index: {e}/{m} rows, {time.perf_counter() - t:.0f} s")
    index.finish()
    times["index"] = time.perf_counter() - t
    st.update(nlist=index.nlist, index_bytes=int(index.codes.nbytes + index.assign.nbytes + index.order.nbytes))
    log(f"index: {times['index']:.1f} s, nlist={index.nlist}")

    # ---- tune nprobe for the recall target
    t = time.perf_counter()
    exact = [set(_drop_self(gt_i[i], rq[i], kk)) for i in range(rq.size)]
    recall = {}
    for npb in PROBE_CHOICES:
        npb = min(npb, index.nlist)
        dist, idx = index.search_rows(rq, kk + 1, npb)
        per = np.array([len(set(_drop_self(idx[i], rq[i], kk)) & exact[i]) / kk for i in range(rq.size)])
        r = float(per.mean())
        recall[npb] = r
        index.nprobe = npb
        # accept when the estimate clears the target by two standard errors (sampling noise)
        if r - 2 * per.std() / np.sqrt(per.size) >= min_recall or npb >= index.nlist:
            break
    else:
        warn_caller(f"compressed index recall@{kk} {r:.3f} < {min_recall} with {index.nprobe} probes", UserWarning)
    # SQ8 distance error on the exact neighbours of the sampled rows (relative, median / p99)
    nb = gt_i[:, 1:].ravel()
    real = nb >= 0  # a pool of one row has no neighbours
    dec = index.decode(nb[real])
    qrep = np.repeat(index.decode(rq), kk, axis=0)[real]
    d_sq = ((dec - qrep) ** 2).sum(axis=1)
    d_ex = gt_d[:, 1:].ravel()[real]
    rel = np.abs(d_sq - d_ex) / np.maximum(d_ex, 1e-12)
    err = {"median": float(np.median(rel)), "p99": float(np.quantile(rel, 0.99))} if rel.size else \
        {"median": float("nan"), "p99": float("nan")}
    st.update(nprobe=index.nprobe, recall_by_nprobe=recall, recall_queries=int(rq.size),
              recall_at_k=recall[index.nprobe], sq8_dist_err=err)
    times["tune"] = time.perf_counter() - t
    log(f"tune: nprobe={index.nprobe} recall={recall} ({times['tune']:.1f} s)")

    # ---- Eq. 6 + 7
    t = time.perf_counter()
    u = h.copy()
    if need_nn:
        hnn = np.empty(m, dtype=np.float64)
        done = 0
        for rows, dist, idx in index.self_search(kk + 1):
            bad = (idx < 0).any(axis=1)
            if bad.any():  # fewer candidates than k + 1 in the probed lists: widen
                dist[bad], idx[bad] = index.search_rows(rows[bad], kk + 1, index.nlist)
            r = rows.shape[0]
            hnn[rows] = _neighbor_term(rows, dist, idx, h, kk, alpha)
            done += r
            if done % (1 << 20) < r:
                log(f"knn: {done}/{m} rows, {time.perf_counter() - t:.0f} s", flush=True)
        u += hnn
    times["knn"] = time.perf_counter() - t
    log(f"knn: {times['knn']:.1f} s")

    # ---- weighted K-Means on a U-proportional sample read from the shards
    t = time.perf_counter()
    b = int(budget)
    draws = _faiss.DEFAULT_CONFIG.kmeans_fast_rows_per_centroid * b
    w = u if clustering == "weighted" else None
    if m <= draws:
        rows = np.arange(m)
        cw = np.ones(m) if w is None else w / max(w.max(), 1e-300)
    else:
        p = None if w is None or not (w > 0).any() else w / w.sum()
        rows, counts = np.unique(rng.choice(m, size=draws, replace=True, p=p), return_counts=True)
        cw = counts.astype(np.float64)
        if rows.size < b:  # weight on fewer than b rows: add zero-weight spares
            spare = np.setdiff1d(np.arange(m), rows)[: b - rows.size]
            rows = np.concatenate([rows, spare])
            cw = np.concatenate([cw, np.zeros(spare.size)])
            o = np.argsort(rows)
            rows, cw = rows[o], cw[o]
    xs = _normalised(fread(0, 0, rows=_pos_to_rows(rows, candidates, m, features)), "features", 0)
    centers = _faiss.kmeans_fast(xs, b, cw if (cw > 0).any() else None, int(rng.integers(0, 2**31 - 1)), n_iter)
    del xs
    times["kmeans"] = time.perf_counter() - t
    log(f"kmeans: {times['kmeans']:.1f} s")

    # ---- Sec. 4.4: nearest candidate to each centre, re-ranked exactly, one per group of copies
    t = time.perf_counter()
    groups = groups_from_projections(proj, _unit_reader(fread, candidates, m, features), COPY_TOL,
                                     workers=-1)
    del proj
    times["groups"] = time.perf_counter() - t
    st["copy_groups"] = int(m - np.unique(groups).size)  # rows that are copies of an earlier row
    log(f"groups: {times['groups']:.1f} s")
    t = time.perf_counter()
    picks = _nearest_exact(index, centers, fread, candidates, m, features, groups)
    times["query"] = time.perf_counter() - t
    times["total"] = float(sum(v for key, v in times.items() if key != "total"))
    log(f"query: {times['query']:.1f} s")
    return candidates[picks]


def _pos_to_rows(pos, candidates, m, features):
    return pos if m == features.shape[0] else candidates[pos]


def _drop_self(idx_row, own, k):
    out = [int(j) for j in idx_row if j != own and j >= 0]
    return out[:k]


def _merge(d0, i0, d1, i1, k):
    d = np.concatenate([d0, d1], axis=1)
    i = np.concatenate([i0, i1], axis=1)
    o = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, o, 1), np.take_along_axis(i, o, 1)


def _unit_reader(fread, candidates, m, features):
    """``unit(pos) -> (len(pos), d) float64``: the normalised rows at candidate positions ``pos``."""

    def unit(pos):
        pos = np.asarray(pos, dtype=np.int64)
        flat, inv = np.unique(pos, return_inverse=True)
        x = fread(0, 0, rows=_pos_to_rows(flat, candidates, m, features)).astype(np.float64)
        return (x / np.linalg.norm(x, axis=1, keepdims=True))[inv.ravel()]

    return unit


def _stream_groups(fread, candidates, m, features) -> np.ndarray:
    """The copy groups of the candidates (:func:`vlal._validation.copy_groups`) in one streamed pass."""
    proj = np.empty((m, min(features.shape[1], GROUP_DIMS)), dtype=np.float32)
    for s in range(0, m, BLOCK_ROWS):
        e = min(m, s + BLOCK_ROWS)
        proj[s:e] = copy_projections(_normalised(fread(s, e), "features", s))
    return groups_from_projections(proj, _unit_reader(fread, candidates, m, features), COPY_TOL,
                                   workers=-1)


def _nearest_exact(index: CompressedIVF, centers, fread, candidates, m, features, groups=None) -> np.ndarray:
    """Nearest candidate position per centre, SQ8 candidates re-ranked on exact rows, with the
    duplicate rule of :mod:`vlal.strategies._distinct`: no two picks of one group of copies
    (``groups``, :func:`vlal._validation.copy_groups` of the candidates; computed here in one
    streamed pass when not given) while a candidate of a group without a pick remains."""
    b = centers.shape[0]
    if groups is None:
        groups = _stream_groups(fread, candidates, m, features)
    taken = np.zeros(m, dtype=bool)
    keys: set = set()  # groups of the picks so far
    out = np.full(b, -1, dtype=np.int64)
    pending = np.arange(b)
    width = min(m, 32)
    while pending.size and width <= 512:
        _, cand = index.search(centers[pending], min(width, m))
        _serve(cand, centers[pending], pending, taken, keys, groups, out, fread, candidates, m, features)
        pending = pending[out[pending] < 0]
        width *= 4
    # Rare: every compressed candidate of these centres is taken or duplicates a pick. Exact
    # streams over all rows, each keeping the kk nearest rows of every pending centre (kk
    # grows until it covers the pool). Centres still without a row then take duplicates (every
    # free row duplicates a pick): the b + 1 nearest rows of a centre always hold a free one.
    c32 = np.ascontiguousarray(centers, dtype=np.float32)
    kk = min(m, b + 1)
    while pending.size:
        best_d = np.full((pending.size, kk), np.inf, dtype=np.float32)
        best_i = np.full((pending.size, kk), -1, dtype=np.int64)
        for s in range(0, m, BLOCK_ROWS):
            e = min(m, s + BLOCK_ROWS)
            dd, ii = _faiss.knn_search(_normalised(fread(s, e), "features", s), c32[pending], min(kk, e - s))
            best_d, best_i = _merge(best_d, best_i, dd, ii + s, kk)
        _serve(best_i, centers[pending], pending, taken, keys, groups, out, fread, candidates, m, features)
        left = out[pending] < 0
        if kk >= m and left.any():  # every free row duplicates a pick: the duplicates are allowed
            rest = pending[left]
            _serve(best_i[left, : min(m, b + 1)], centers[rest], rest, taken, None, groups, out, fread, candidates, m,
                   features)
            if (out[rest] < 0).any():
                raise RuntimeError("could not place every centre")  # cannot happen: see above
        pending = pending[out[pending] < 0]
        kk = min(m, 4 * kk)
    return out


def _serve(cand, c, pending, taken, keys, groups, out, fread, candidates, m, features) -> None:
    """Re-rank ``cand`` (positions, -1 = none) exactly and give each centre its nearest free row
    whose group of copies holds no pick (``keys``: the picks' groups, updated; ``None`` =
    duplicates allowed; ``groups``: each candidate's group), centres with the closest nearest
    row first (as :func:`vlal.nearest_to_centers`); rows at the same distance go by lowest position."""
    flat = np.unique(cand[cand >= 0])
    exact = _normalised(fread(0, 0, rows=_pos_to_rows(flat, candidates, m, features)), "features", 0)
    pos = np.searchsorted(flat, np.maximum(cand, 0))
    c = np.asarray(c, dtype=np.float64)
    dist = np.full(cand.shape, np.inf)
    for j in range(cand.shape[1]):
        ok = cand[:, j] >= 0
        diff = exact[pos[ok, j]].astype(np.float64) - c[ok]
        dist[ok, j] = np.einsum("ij,ij->i", diff, diff)
    order = np.lexsort((np.where(cand >= 0, cand, np.iinfo(np.int64).max), dist), axis=1)
    cand = np.take_along_axis(cand, order, 1)
    pos = np.take_along_axis(pos, order, 1)
    dist = np.take_along_axis(dist, order, 1)
    for row in np.argsort(dist[:, 0], kind="stable"):
        for j in cand[row]:
            if j < 0 or taken[j]:
                continue
            key = int(groups[j])
            if keys is not None and key in keys:
                continue
            taken[j] = True
            out[pending[row]] = j
            if keys is not None:
                keys.add(key)
            break
