"""faiss wrappers: kNN indexes (exact, IVF, HNSW; CPU or GPU) and (weighted) K-Means.

Kept apart from the scoring functions so that index choices live in one place.
All arrays handed to faiss are C-contiguous float32, as faiss requires.

Modules, each importing only those before it (``tests/test_layers.py`` checks this)::

    config -> device -> exact -> lloyd -> ivf -> fast_kmeans -> index

``config``       :class:`FaissConfig`, the frozen tuning constants passed down.
``device``       GPU detection, float32 conversion, OpenMP limits (threadpoolctl).
``exact``        brute-force kNN (``faiss.knn``), the ``"auto"`` rule, chunked backends.
``lloyd``        faiss K-Means on all rows (optionally weighted).
``ivf``          query-grouped IVF on the CPU, GPU IVF, HNSW, :func:`assignment_index`.
``fast_kmeans``  weighted K-Means on a weight-proportional sample.
``index``        :class:`KnnIndex`, the facade.

Index kinds (``kind`` of :class:`KnnIndex`)
-------------------------------------------
``"exact"``
    Brute force (``faiss.knn``, BLAS + heaps) over the caller's array: no copy of the
    base, results equal to ``IndexFlatL2``. On GPU: ``IndexFlatL2`` on all GPUs.
``"ivf"``
    Inverted file with flat lists, ``nlist = ivf_lists_per_sqrt_n * sqrt(n)``; on the CPU
    searched query-grouped (see :mod:`.ivf`), on GPU faiss ``IndexIVFFlat``.
``"hnsw"``
    faiss ``IndexHNSWFlat`` (CPU only; keeps its own float32 copy of the base).

``"auto"`` resolves to ``"exact"`` when ``n_base * n_queries`` is at most
``knn_exact_max_rows ** 2`` (``knn_gpu_exact_max_rows ** 2`` on a GPU), else ``"ivf"``.
The thresholds were measured with ``benchmarks/bench_select.py`` (see
``benchmarks/results/select_scaling.md``).

The module-level constants below are read-only aliases of :data:`DEFAULT_CONFIG`, kept so
that existing ``from vlal._faiss import ...`` lines keep working; new code passes a
:class:`FaissConfig`.
"""

from __future__ import annotations

import faiss  # noqa: F401  (tests patch vlal._faiss.faiss)

from .config import DEFAULT_CONFIG, KNN_KINDS, FaissConfig
from .device import num_gpus, resolve_use_gpu
from .exact import knn_search, resolve_knn_kind
from .fast_kmeans import kmeans_fast
from .index import KnnIndex
from .ivf import assignment_index, default_nlist
from .lloyd import kmeans

__all__ = [
    "DEFAULT_CONFIG",
    "FaissConfig",
    "KNN_EXACT_MAX_ROWS",
    "KNN_GPU_EXACT_MAX_ROWS",
    "KNN_KINDS",
    "KnnIndex",
    "assignment_index",
    "default_nlist",
    "knn_search",
    "kmeans",
    "kmeans_fast",
    "num_gpus",
    "resolve_use_gpu",
    "resolve_knn_kind",
]

KNN_EXACT_MAX_ROWS = DEFAULT_CONFIG.knn_exact_max_rows
KNN_GPU_EXACT_MAX_ROWS = DEFAULT_CONFIG.knn_gpu_exact_max_rows
KMEANS_EXACT_MAX_WORK = DEFAULT_CONFIG.kmeans_exact_max_work
KMEANS_FAST_MAX_ITER = DEFAULT_CONFIG.kmeans_fast_max_iter
IVF_NPROBE = DEFAULT_CONFIG.ivf_nprobe
HNSW_M = DEFAULT_CONFIG.hnsw_m
HNSW_EF_CONSTRUCTION = DEFAULT_CONFIG.hnsw_ef_construction
