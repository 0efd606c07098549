"""Where faiss runs: GPU detection, float32 conversion, OpenMP thread limits.

The lowest module of the faiss layer (imports only :mod:`vlal._warnings`, a stdlib-only helper).
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import faiss
import numpy as np

from .._warnings import warn_caller

__all__ = ["as_f32", "gpu_status", "num_gpus", "resolve_use_gpu", "to_gpus", "max_threads", "single_thread"]


def as_f32(x) -> np.ndarray:
    """``x`` as a C-contiguous float32 array (no copy when it already is one)."""
    return np.ascontiguousarray(x, dtype=np.float32)


# Run in a child process: a faiss GPU kernel that cannot run on the card (a wheel built
# without the card's architecture) fails a faiss assertion, which aborts the process.
_PROBE = """
import numpy as np, faiss
x = np.random.default_rng(0).random((64, 8), dtype=np.float32)
index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatL2(8))
index.add(x)
_, idx = index.search(x, 2)
assert (idx[:, 0] == np.arange(64)).all(), "GPU search returned wrong neighbours"
km = faiss.Kmeans(8, 4, niter=2, gpu=True, verbose=False)
km.train(x)
"""

GPU_HELP = ("PyPI's faiss-gpu-cu12 wheels (vlal's [gpu] extra) run on compute capability 7.0-8.9 "
            "(Volta to Ada); Hopper (H100/H200) and newer cards need a faiss built for them "
            "(conda's faiss-gpu, or faiss-gpu-cuvs for CUDA 13). See docs/scale.md, 'GPU'.")


def _visible_gpus() -> int:
    get = getattr(faiss, "get_num_gpus", None)
    return int(get()) if get is not None else 0


@functools.lru_cache(maxsize=1)
def _probe() -> str | None:
    """Run :data:`_PROBE` in a child process once; ``None`` when it worked, else why not."""
    try:
        child = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the GPU check did not finish ({exc})"
    if child.returncode == 0:
        return None
    lines = [ln.strip() for ln in (child.stderr or child.stdout).splitlines() if ln.strip()]
    detail = next((ln for ln in reversed(lines) if "error" in ln.lower()), lines[-1] if lines else "")
    if "details:" in detail:
        detail = detail.split("details:", 1)[1].strip()
    return f"exit status {child.returncode}: {detail[-300:]}" if detail else f"exit status {child.returncode}"


def gpu_status() -> tuple[int, str | None]:
    """``(usable GPUs, why the visible ones are unusable or None)``.

    When faiss sees GPUs, a child process runs one GPU flat search and a two-step GPU
    K-Means, once per process (~1-3 s). If that child fails (on Hopper cards with PyPI's
    faiss-gpu-cu12 it is aborted by "CUDA error 209 no kernel image is available"), the
    GPUs count as unusable and the reason is the child's last error line.
    ``VLAL_GPU_PROBE=0`` skips the check and trusts faiss' count.
    """
    n = _visible_gpus()
    if n == 0 or os.environ.get("VLAL_GPU_PROBE", "1") == "0":
        return n, None
    why = _probe()
    return (n, None) if why is None else (0, why)


def num_gpus() -> int:
    """Number of GPUs faiss can use: 0 for a CPU-only faiss build, and 0 when faiss sees
    GPUs that its kernels cannot run on (see :func:`gpu_status`)."""
    return gpu_status()[0]


_warned = []


def resolve_use_gpu(use_gpu) -> bool:
    """Turn ``use_gpu`` (``"auto"``, ``True`` or ``False``) into a bool.

    ``"auto"`` means: use the GPUs when faiss has usable ones; when faiss sees GPUs that it
    cannot run on, ``"auto"`` runs on the CPU with a ``RuntimeWarning`` (once per process).
    ``True`` without a usable GPU raises ``ValueError`` rather than silently running on the CPU.
    """
    if isinstance(use_gpu, str):
        if use_gpu != "auto":
            raise ValueError(f"use_gpu must be 'auto', True or False; got {use_gpu!r}")
        usable, why = gpu_status()
        if why is not None and not _warned:
            _warned.append(True)
            warn_caller(f"faiss sees {_visible_gpus()} GPU(s) but cannot run on them ({why}); "
                        f"use_gpu='auto' runs on the CPU. {GPU_HELP} (VLAL_GPU_PROBE=0 skips this check.)",
                        RuntimeWarning)
        return usable > 0
    if isinstance(use_gpu, (bool, np.bool_)):
        if use_gpu and num_gpus() == 0:
            why = gpu_status()[1]
            if why is not None:
                raise ValueError(f"use_gpu=True but faiss cannot run on the GPU(s) it sees ({why}). {GPU_HELP}")
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
