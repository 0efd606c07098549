"""Tuning constants of the faiss layer, in one frozen config passed down.

The values were measured with ``benchmarks/bench_select.py`` (see
``benchmarks/results/select_scaling.md``). Callers that want other values build
``dataclasses.replace(DEFAULT_CONFIG, ivf_nprobe=16)`` and pass it down; nothing reads
module globals.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FaissConfig", "DEFAULT_CONFIG", "KNN_KINDS"]

#: Index kinds accepted by :class:`vlal._faiss.KnnIndex`.
KNN_KINDS = ("auto", "exact", "ivf", "hnsw")


@dataclass(frozen=True)
class FaissConfig:
    """Thresholds and parameters of the kNN indexes and K-Means.

    Attributes
    ----------
    knn_exact_max_rows : int
        ``"auto"`` uses exact search while ``n_base * n_queries <= knn_exact_max_rows ** 2``.
    knn_gpu_exact_max_rows : int
        The same limit when the search runs on GPUs (brute force is cheap there).
    gpu_max_k : int
        faiss GPU indexes return at most this many neighbours; larger k is searched on the CPU.
    ivf_lists_per_sqrt_n : float
        IVF list count is ``round(ivf_lists_per_sqrt_n * sqrt(n))`` (at least 1).
    ivf_nprobe : int
        IVF lists probed per query group (per query on GPU).
    ivf_coarse_nprobe : int
        Lists probed when assigning rows to lists, and in the 1-NN assignments of fast K-Means.
    ivf_train_rows_per_list : int
        Rows sampled per list to train the coarse quantizer.
    ivf_train_iter : int
        Lloyd iterations of the coarse quantizer.
    ivf_min_base : int
        1-NN assignments are always exact with fewer centres than this.
    hnsw_m, hnsw_ef_construction, hnsw_ef_search : int
        HNSW graph degree, construction and search beam widths.
    kmeans_exact_max_work : float
        ``kmeans_mode="auto"`` runs exact K-Means while ``n * n_clusters`` is at most this.
    kmeans_fast_rows_per_centroid : int
        Fast K-Means: weighted draws per centre.
    kmeans_fast_max_iter : int
        Fast K-Means: at most this many Lloyd iterations.
    kmeans_assign_exact_max_pairs : float
        1-NN assignments are exact while centres x rows is at most this.
    small_kmeans_work : float
        faiss K-Means with fewer row x centre x iteration steps runs on one thread.
    search_chunk_rows : int
        Query rows per faiss call (bounds result blocks and gathered copies).
    """

    knn_exact_max_rows: int = 20_000
    knn_gpu_exact_max_rows: int = 2_000_000
    gpu_max_k: int = 2048
    ivf_lists_per_sqrt_n: float = 2.0
    ivf_nprobe: int = 12
    ivf_coarse_nprobe: int = 8
    ivf_train_rows_per_list: int = 32
    ivf_train_iter: int = 10
    ivf_min_base: int = 1024
    hnsw_m: int = 32
    hnsw_ef_construction: int = 40
    hnsw_ef_search: int = 128
    kmeans_exact_max_work: float = 5e7
    kmeans_fast_rows_per_centroid: int = 32
    kmeans_fast_max_iter: int = 10
    kmeans_assign_exact_max_pairs: float = 2.5e7
    small_kmeans_work: float = 5e7
    search_chunk_rows: int = 16384


DEFAULT_CONFIG = FaissConfig()
