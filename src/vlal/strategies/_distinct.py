"""The duplicate rule of the clustering strategies (CEC, ALFA-Mix).

Two rows are *duplicates* when their L2-normalised float32 features are equal (exact
copies, or copies scaled by a positive factor: the same point in cosine geometry).
A clustering strategy never returns two duplicates while a candidate that duplicates
no pick remains: a pick that duplicates an earlier one is replaced by the candidate
nearest to its cluster centre that duplicates no pick so far.
"""

from __future__ import annotations

import numpy as np

from .._validation import CHUNK_ROWS


def _key(z: np.ndarray, j: int) -> bytes:
    return np.ascontiguousarray(z[j], dtype=np.float32).tobytes()


def _by_distance(z: np.ndarray, center: np.ndarray) -> np.ndarray:
    """Rows of ``z`` ordered by squared distance to ``center`` (closest first; stable)."""
    d = np.empty(z.shape[0], dtype=np.float64)
    c = np.asarray(center, dtype=np.float64)
    for s in range(0, z.shape[0], CHUNK_ROWS):
        block = np.asarray(z[s : s + CHUNK_ROWS], dtype=np.float64)
        d[s : s + block.shape[0]] = ((block - c) ** 2).sum(axis=1)
    return np.argsort(d, kind="stable")


def replace_duplicates(z: np.ndarray, picks: np.ndarray, centers: np.ndarray | None, rng=None) -> np.ndarray:
    """Apply the duplicate rule to ``picks`` (positions into ``z``).

    Parameters
    ----------
    z : ndarray (m, d), float32
        Normalised features of the candidates.
    picks : ndarray (b,), int
        Distinct positions into ``z``; ``picks[t]`` serves ``centers[t]``.
    centers : ndarray (b, d) or None
        Cluster centres; ``None`` -> replacements are drawn uniformly with ``rng``.
    rng : numpy Generator, optional
        Needed when ``centers`` is None.

    Returns
    -------
    ndarray (b,), int64
        ``picks`` itself when no two picks are duplicates, else a corrected copy (the
        first pick of each duplicate group is kept). When every candidate duplicates a
        pick, the remaining duplicates are kept (the indices stay distinct).
    """
    picks = np.asarray(picks, dtype=np.int64)
    keys = [_key(z, int(j)) for j in picks]
    if len(set(keys)) == len(keys):
        return picks
    out = picks.copy()
    seen: set[bytes] = set()
    used = set(int(j) for j in picks)
    for t, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            continue
        order = _by_distance(z, centers[t]) if centers is not None else rng.permutation(z.shape[0])
        for c in order:
            c = int(c)
            if c in used:
                continue
            kc = _key(z, c)
            if kc in seen:
                continue
            out[t] = c
            used.add(c)
            seen.add(kc)
            break
        else:
            break  # nothing distinct is left: the remaining duplicates stay
    return out
