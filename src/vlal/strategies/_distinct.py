"""The duplicate rule of the clustering strategies (CEC, ALFA-Mix).

Two rows are *duplicates* when their L2-normalised float32 features are bitwise equal
(``-0.0`` = ``0.0``): exact copies of a feature row always are. Near-duplicates (features
that differ in any bit, e.g. re-encoded images) are distinct rows for this rule.
A clustering strategy never returns two duplicates while a candidate that duplicates
no pick remains: a pick that duplicates an earlier one is replaced by the candidate
nearest to its cluster centre that duplicates no pick (neither an earlier nor a later one, so
one replacement never displaces another pick).
"""

from __future__ import annotations

import numpy as np

from .._validation import rows_per_chunk


def _key(z: np.ndarray, j: int) -> bytes:
    return (np.asarray(z[j], dtype=np.float32) + np.float32(0.0)).tobytes()  # -0.0 -> 0.0


def row_keys(z: np.ndarray) -> np.ndarray:
    """One opaque key per row (a numpy void array), equal exactly when two rows are duplicates
    under this module's rule (float32 bits, ``-0.0`` = ``0.0``). For ``np.unique`` / ``np.isin``."""
    zc = np.ascontiguousarray(z, dtype=np.float32) + np.float32(0.0)  # -0.0 -> 0.0
    return zc.view(np.dtype((np.void, zc.dtype.itemsize * zc.shape[1]))).ravel()


def _row_hashes(z: np.ndarray) -> np.ndarray:
    """An exact, order-independent uint64 hash of each float32 row (equal rows, equal hashes).

    The float bits (``-0.0`` folded into ``0.0``) times fixed odd 64-bit constants, summed
    with wrap-around: integer arithmetic, so no rounding can split equal rows.
    """
    d = z.shape[1]
    mult = np.random.default_rng(0x5EED).integers(1, 2**63, size=d, dtype=np.uint64) | np.uint64(1)
    out = np.empty(z.shape[0], dtype=np.uint64)
    step = rows_per_chunk(d)  # (step, d) uint64 temporaries: at most CHUNK_BYTES
    for s in range(0, z.shape[0], step):
        bits = (np.asarray(z[s : s + step], dtype=np.float32) + np.float32(0.0)).view(np.uint32)
        out[s : s + bits.shape[0]] = (bits.astype(np.uint64) * mult).sum(axis=1, dtype=np.uint64)
    return out


def _sq_dist(z: np.ndarray, sq: np.ndarray, center: np.ndarray) -> np.ndarray:
    """``||z_i - c||^2 - ||c||^2`` for every row (chunked float32 matrix-vector products)."""
    c = np.asarray(center, dtype=np.float32)
    out = np.empty(z.shape[0], dtype=np.float64)
    step = rows_per_chunk(z.shape[1])
    for s in range(0, z.shape[0], step):
        dot = np.asarray(z[s : s + step] @ c, dtype=np.float64)
        out[s : s + dot.shape[0]] = sq[s : s + dot.shape[0]] - 2.0 * dot
    return out


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
        ``picks`` itself when no two picks are duplicates (checked on the ``b`` picks
        only), else a corrected copy: the first pick of each duplicate group is kept (and
        given the lowest row position among that group's picks, so which copy is returned
        does not depend on the order the centres were served in), a later one is replaced,
        in order, by the row nearest to its centre (lowest position among equally near
        rows) that duplicates no pick and no replacement so far. When every candidate
        duplicates a pick, the remaining duplicates are kept (the indices stay distinct).
        Cost when duplicates are found: one hash pass over ``z`` plus ``O(m d)`` per
        replaced pick.
    """
    picks = np.asarray(picks, dtype=np.int64)
    keys = [_key(z, int(j)) for j in picks]
    if len(set(keys)) == len(keys):
        return picks
    picks = picks.copy()
    first: dict[bytes, int] = {}
    for t, key in enumerate(keys):  # the group's first pick takes the group's lowest position
        f = first.setdefault(key, t)
        if picks[t] < picks[f]:
            picks[t], picks[f] = picks[f], picks[t]
    h = _row_hashes(z)
    blocked = np.zeros(z.shape[0], dtype=bool)  # rows equal to a pick or a replacement
    used = np.zeros(z.shape[0], dtype=bool)
    used[picks] = True

    def block_like(j: int) -> None:
        same = np.flatnonzero(h == h[j])
        ref = np.asarray(z[j], dtype=np.float32) + np.float32(0.0)
        blocked[same[(np.asarray(z[same], dtype=np.float32) == ref).all(axis=1)]] = True

    for f in first.values():
        block_like(int(picks[f]))  # every pick's group: a replacement never copies a later pick
    sq = None
    out = picks.copy()
    for t, j in enumerate(picks):
        if first[keys[t]] == t:
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
        block_like(c)
    return out
