"""The kNN index facade: :class:`KnnIndex` resolves ``"auto"`` and the device, then
delegates to a backend built by :func:`.ivf.build_index`. Nothing below imports it."""

from __future__ import annotations

from .config import DEFAULT_CONFIG, FaissConfig
from .device import as_f32, resolve_use_gpu
from .exact import resolve_knn_kind
from .ivf import build_index

__all__ = ["KnnIndex"]


class KnnIndex:
    """A kNN index over ``base``, built once and searched many times.

    Parameters
    ----------
    base : ndarray of shape (n, d)
        Rows to search (float32, C-contiguous avoids a copy). The array is referenced,
        not copied (except by ``"hnsw"`` and GPU indexes, which hold their own copy);
        do not modify it while the index is in use.
    kind : {"auto", "exact", "ivf", "hnsw"}
        See :mod:`vlal._faiss`. ``"auto"`` is resolved with ``n_queries``.
    n_queries : int, optional
        Expected number of queries, used only to resolve ``"auto"`` (default ``n``:
        an all-vs-all neighbour graph).
    use_gpu : "auto", bool
        Run on the GPUs (``"auto"``: when faiss has any). ``"hnsw"`` always runs on the CPU.
    seed : int
        Seeds the IVF coarse quantizer (the index is deterministic for a given seed).
    nlist, nprobe : int, optional
        IVF overrides (defaults from ``config``).
    exact_max_pairs : float, optional
        Override of the ``"auto"`` limit (see :func:`vlal._faiss.resolve_knn_kind`).
    config : FaissConfig
        Tuning constants (default :data:`vlal._faiss.DEFAULT_CONFIG`).

    Attributes
    ----------
    kind : str
        The resolved kind.
    gpu : bool
        Whether the searches run on GPUs.

    Raises
    ------
    ValueError
        Unknown ``kind`` or ``use_gpu``; ``use_gpu=True`` without a GPU.
    """

    def __init__(self, base, kind: str = "auto", *, n_queries: int | None = None, use_gpu="auto",
                 seed: int = 0, nlist: int | None = None, nprobe: int | None = None,
                 exact_max_pairs: float | None = None, config: FaissConfig = DEFAULT_CONFIG):
        self.base = as_f32(base)
        self.n, self.d = self.base.shape
        self.gpu = resolve_use_gpu(use_gpu)
        self.kind = resolve_knn_kind(kind, self.n, self.n if n_queries is None else n_queries, self.gpu,
                                     exact_max_pairs, config)
        if self.kind == "hnsw":
            self.gpu = False
        self._backend = build_index(self.base, self.kind, gpu=self.gpu, seed=seed, nlist=nlist,
                                    nprobe=nprobe, config=config)

    def search(self, queries, k: int, rows=None):
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
        return self._backend.search(queries, k, rows)

    def self_search(self, k: int):
        """Yield ``(rows, sq_dist, idx)`` blocks covering every base row once.

        Each base row's ``k`` nearest base rows (usually itself first). Blocks are in
        no particular row order; ``rows`` says which base rows a block holds.
        """
        return self._backend.self_search(k)
