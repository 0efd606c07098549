"""Where faiss runs: GPU detection, float32 conversion, OpenMP thread limits.

The lowest module of the faiss layer (imports only :mod:`.config`).
"""

from __future__ import annotations

import functools

import faiss
import numpy as np

__all__ = ["as_f32", "num_gpus", "resolve_use_gpu", "to_gpus", "max_threads", "single_thread"]


def as_f32(x) -> np.ndarray:
    """``x`` as a C-contiguous float32 array (no copy when it already is one)."""
    return np.ascontiguousarray(x, dtype=np.float32)


def num_gpus() -> int:
    """Number of GPUs faiss can use (0 for a CPU-only faiss build)."""
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


def resolve_use_gpu(use_gpu) -> bool:
    """Turn ``use_gpu`` (``"auto"``, ``True`` or ``False``) into a bool.

    ``"auto"`` means: use the GPUs when faiss has any. ``True`` without a GPU raises
    ``ValueError`` rather than silently running on the CPU.
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


def to_gpus(index):
    """Copy a (trained) CPU index onto all visible GPUs (faiss shards/replicates it)."""
    return faiss.index_cpu_to_all_gpus(index)


def max_threads() -> int:
    """OpenMP threads faiss would use now (read only; limits go through :func:`single_thread`)."""
    return max(1, int(faiss.omp_get_max_threads()))


@functools.lru_cache(maxsize=1)
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def single_thread():
    """Context manager limiting the OpenMP thread pools (faiss' included) to one thread.

    Through :mod:`threadpoolctl`, which restores the previous limits on exit.
    """
    return _controller().limit(limits=1, user_api="openmp")
