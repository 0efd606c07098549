"""The duplicate rule of the clustering strategies (CEC, ALFA-Mix) and of LookAhead and
CalibratedMix: the copy rule of :func:`vlal._validation.copies_of_rows`.

Two rows are *duplicates* (copies of one image) when their L2-normalised features lie
within :data:`vlal._validation.COPY_TOL` of each other (2e-3, every dtype): exact copies, the same image encoded in another batch, scaled copies. A
*duplicate group* is a connected component of that relation (a copy of a copy is a copy):
:func:`vlal._validation.copy_groups`. Distinct images (cosine below 0.99 in CLIP space even
for near-duplicate photos) are never grouped.
A clustering strategy never returns two rows of one group while a candidate of a group
without a pick remains: a pick whose group already holds an earlier pick is replaced by
the candidate nearest to its cluster centre whose group holds no pick (neither an earlier
nor a later one, so one replacement never displaces another pick).
"""

from __future__ import annotations

import numpy as np

from .._validation import copy_groups, rows_per_chunk


def _sq_dist(z: np.ndarray, sq: np.ndarray, center: np.ndarray) -> np.ndarray:
    """``||z_i - c||^2 - ||c||^2`` for every row (chunked float32 matrix-vector products)."""
    c = np.asarray(center, dtype=np.float32)
    out = np.empty(z.shape[0], dtype=np.float64)
    step = rows_per_chunk(z.shape[1])
    for s in range(0, z.shape[0], step):
        dot = np.asarray(z[s : s + step] @ c, dtype=np.float64)
        out[s : s + dot.shape[0]] = sq[s : s + dot.shape[0]] - 2.0 * dot
    return out


def replace_duplicates(z: np.ndarray, picks: np.ndarray, centers: np.ndarray | None, rng=None, *,
                       groups: np.ndarray | None = None) -> np.ndarray:
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
    groups : ndarray (m,), int, optional
        The duplicate group of each row when the caller has them; default ``copy_groups(z)``.

    Returns
    -------
    ndarray (b,), int64
        ``picks`` itself when no two picks share a group, else a corrected copy: the first
        pick of each group is kept (and given the lowest row position among that group's
        picks, so which copy is returned does not depend on the order the centres were
        served in), a later one is replaced, in order, by the row nearest to its centre
        (lowest position among equally near rows) whose group holds no pick and no
        replacement so far. When every candidate's group holds a pick, the remaining
        duplicates are kept (the indices stay distinct). Cost: the groups (one pass over
        ``z``, see :func:`vlal._validation.copy_groups`) plus ``O(m d)`` per replaced pick.
    """
    picks = np.asarray(picks, dtype=np.int64)
    if picks.size < 2:
        return picks
    g = copy_groups(z) if groups is None else np.asarray(groups)
    keys = g[picks]
    if np.unique(keys).size == keys.size:
        return picks
    picks = picks.copy()
    first: dict[int, int] = {}
    for t, key in enumerate(keys.tolist()):  # the group's first pick takes the group's lowest position
        f = first.setdefault(key, t)
        if picks[t] < picks[f]:
            picks[t], picks[f] = picks[f], picks[t]
    blocked = np.isin(g, keys)  # rows of every pick's group: a replacement never copies a later pick
    used = np.zeros(z.shape[0], dtype=bool)
    used[picks] = True
    sq = None
    out = picks.copy()
    for t, key in enumerate(keys.tolist()):
        if first[key] == t:
            continue
        free = ~blocked & ~used
        if not free.any():
            break  # nothing distinct is left: the remaining duplicates stay
        if centers is not None:
            if sq is None:
                sq = np.einsum("ij,ij->i", z, z, dtype=np.float64)
            dist = _sq_dist(z, sq, centers[t])
            dist[~free] = np.inf
            c = int(np.argmin(dist))
        else:
            c = int(rng.choice(np.flatnonzero(free)))
        out[t] = c
        used[c] = True
        blocked[g == g[c]] = True
    return out
