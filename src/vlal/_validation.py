"""Input checks shared by the scoring functions and the strategies.

Every check names the offending argument. None of them modifies its input;
they return read-only views or fresh arrays.
"""

from __future__ import annotations

import numbers

import numpy as np

from .exceptions import BudgetExceededError, VlalInputError

#: Rows processed at once by chunked checks and scoring (bounds temporary memory).
CHUNK_ROWS = 65536
#: Bytes of float64 temporaries a chunk may hold; wide arrays get fewer rows per chunk.
CHUNK_BYTES = 64 * 2**20

PROB_ATOL = 1e-3


def _first_bad_row(mask_rows: np.ndarray) -> int:
    return int(np.flatnonzero(mask_rows)[0])


def _refuse_sparse(x, name: str) -> None:
    """A scipy sparse matrix would become a 0-d object array under ``np.asarray``: say what it is."""
    if hasattr(x, "tocsr") and hasattr(x, "nnz"):
        raise VlalInputError(f"{name} is a scipy sparse matrix; pass a dense array ({name}.toarray())")


def _from_tensor(x):
    """A torch tensor (any device, with ``requires_grad``, bfloat16) as a CPU tensor numpy can read;
    anything else unchanged. torch is never imported here."""
    if type(x).__module__.split(".")[0] == "torch" and hasattr(x, "detach"):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":  # numpy has no bfloat16
            x = x.float()
    return x


def check_vector(values, n: int, name: str, *, nonnegative: bool = False) -> np.ndarray:
    """Validate a per-row vector (scores, weights): real numbers (integers and floats; not bool,
    strings, complex or objects), shape ``(n,)``, finite (and ``>= 0`` with ``nonnegative``).
    Returns a float64 copy; errors name ``name`` and the first bad row."""
    values = _from_tensor(values)
    _refuse_sparse(values, name)
    try:
        v = np.asarray(values)
    except ValueError as err:
        raise VlalInputError(f"{name} must be a 1-D array of numbers; got a {type(values).__name__}") from err
    if v.dtype == np.bool_ or not (np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.floating)):
        raise VlalInputError(f"{name} must hold real numbers; got dtype {v.dtype}")
    if v.ndim != 1 or v.shape[0] != n:
        raise VlalInputError(f"{name} must have shape ({n},) (one value per row); got {v.shape}")
    v = v.astype(np.float64)
    if not np.isfinite(v).all():
        raise VlalInputError(f"{name} contains NaN or inf (first bad row: {int(np.flatnonzero(~np.isfinite(v))[0])})")
    if nonnegative and (v < 0).any():
        raise VlalInputError(f"{name} must be non-negative (first bad row: {int(np.flatnonzero(v < 0)[0])})")
    return v


def check_2d(x, name: str) -> np.ndarray:
    """Return ``x`` as a 2-D floating array (no copy when already one; integer and bool arrays
    become float32; torch tensors are read on the CPU)."""
    x = _from_tensor(x)
    _refuse_sparse(x, name)
    try:
        arr = np.asarray(x)
    except ValueError as err:  # ragged nested sequences, e.g. a (centres, assignments) tuple
        hint = ""
        if isinstance(x, tuple) and len(x) == 2 and all(isinstance(v, np.ndarray) for v in x):
            hint = " (a (centers, assignments) tuple as weighted_kmeans returns? pass its first element)"
        raise VlalInputError(f"{name} must be one 2-D array; got a {type(x).__name__} that numpy cannot stack "
                             f"into one{hint}") from err
    if arr.ndim != 2:
        raise VlalInputError(f"{name} must be a 2-D array (n_samples, n_columns); got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise VlalInputError(f"{name} must be non-empty; got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        if np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_:
            arr = arr.astype(np.float32)
        else:
            raise VlalInputError(f"{name} must hold real numbers; got dtype {arr.dtype}")
    return arr


def rows_per_chunk(width: int) -> int:
    """Rows per chunk for an array of ``width`` columns: ``CHUNK_ROWS``, fewer when the
    float64 block would exceed ``CHUNK_BYTES``."""
    return int(max(1, min(CHUNK_ROWS, CHUNK_BYTES // (8 * max(1, int(width))))))


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise if ``arr`` holds NaN or inf, naming the first bad row (checked in chunks)."""
    step = rows_per_chunk(int(np.prod(arr.shape[1:])))
    for start in range(0, arr.shape[0], step):
        block = arr[start : start + step]
        ok = np.isfinite(block)
        if not ok.all():
            row = start + _first_bad_row(~ok.reshape(block.shape[0], -1).all(axis=1))
            raise VlalInputError(f"{name} contains NaN or inf (first bad row: {row})")


def check_features(features, name: str = "features") -> np.ndarray:
    """Validate a (n, d) feature matrix: 2-D, real, finite."""
    arr = check_2d(features, name)
    check_finite(arr, name)
    return arr


def prob_tolerance(dtype) -> float:
    """How far a row of probabilities may sum from 1: :data:`PROB_ATOL`, plus float16's own
    rounding of a unit sum (``2**-11``) for float16 arrays. One rule for every path (in memory,
    sharded, streamed)."""
    return PROB_ATOL + (2.0**-11 if np.dtype(dtype) == np.float16 else 0.0)


def check_probs(probs, name: str = "probs") -> np.ndarray:
    """Validate a (n, K) matrix of class probabilities: finite, >= 0, rows sum to 1 within
    :func:`prob_tolerance` (1e-3; float16 1.5e-3). Sharded arrays (:class:`vlal.shards.ShardedFeatures`)
    are checked block by block, never loaded whole."""
    arr = probs if _is_lazy(probs) else check_2d(probs, name)
    check_finite(arr, name)
    tol = prob_tolerance(arr.dtype)
    step = rows_per_chunk(arr.shape[1])
    for start in range(0, arr.shape[0], step):
        block = np.asarray(arr[start : start + step], dtype=np.float64)
        neg = (block < 0).any(axis=1)
        if neg.any():
            row = start + _first_bad_row(neg)
            low = float(block[row - start].min())
            why = (f"tiny negative values (min {low:.3g}) look like round-off: clip them, np.clip({name}, 0, None)"
                   if low >= -1e-6 else "class probabilities are expected, not logits: apply a softmax first")
            raise VlalInputError(f"{name} has negative values (first bad row: {row}); {why}")
        off = np.abs(block.sum(axis=1) - 1.0) > tol
        if off.any():
            row = start + _first_bad_row(off)
            total = float(block[row - start].sum())
            hint = ("percentages? divide by 100" if abs(total - 100.0) <= 100 * tol else
                    "class probabilities are expected (rows summing to 1): normalise the rows, "
                    f"{name} / {name}.sum(axis=1, keepdims=True), or apply a softmax to logits")
            raise VlalInputError(f"{name} row {row} sums to {total:.6g}, not 1 (tolerance {tol:.3g}); {hint}")
    return arr


def _is_lazy(x) -> bool:
    from .shards import ShardedFeatures

    return isinstance(x, ShardedFeatures)


def check_pool(features, probs) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``features`` (n, d) and ``probs`` (n, K) together.

    :class:`vlal.shards.ShardedFeatures` are checked for shape only and returned as
    they are (their values are checked block by block when read).
    """
    features, probs = _from_tensor(features), _from_tensor(probs)
    _refuse_sparse(features, "features")
    _refuse_sparse(probs, "probs")
    f = features if _is_lazy(features) else np.asarray(features)
    p = probs if _is_lazy(probs) else np.asarray(probs)
    if f.ndim != 2 or p.ndim != 2:
        bad = "probs" if f.ndim == 2 else "features"  # the message starts with the argument that is wrong
        raise VlalInputError(
            f"{bad} must be 2-D (both features and probs must be); got features shape {f.shape} and probs shape {p.shape}"
        )
    if f.shape[0] != p.shape[0]:
        raise VlalInputError(
            f"features and probs must have the same number of rows; got features shape {f.shape} "
            f"and probs shape {p.shape}"
        )
    if _is_lazy(f) or _is_lazy(p):
        if f.shape[0] == 0 or f.shape[1] == 0 or p.shape[1] == 0:
            raise VlalInputError(f"features and probs must be non-empty; got shapes {f.shape} and {p.shape}")
        return f, p
    return check_features(f, "features"), check_probs(p, "probs")


def check_positive_int(value, name: str) -> int:
    """Return ``value`` as an ``int`` if it is a positive integer (bools rejected)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise VlalInputError(f"{name} must be a positive integer; got {value!r} ({type(value).__name__})")
    if value <= 0:
        raise VlalInputError(f"{name} must be a positive integer; got {value}")
    return int(value)


def check_budget(budget, n_candidates: int, *, restricted: bool = False) -> int:
    """Validate the query budget against the number of candidate rows
    (``restricted``: the caller passed ``candidates``; the error then says so)."""
    b = check_positive_int(budget, "budget")
    if b > n_candidates:
        raise BudgetExceededError(b, n_candidates, restricted=restricted)
    return b


def check_labeled(labeled, n: int) -> np.ndarray:
    """Turn ``labeled`` (indices or a boolean mask over the pool) into unique int64 indices: in the
    caller's order for indices (``labels`` follow that order), ascending for a mask.

    Raises
    ------
    VlalInputError
        Mask of the wrong length, indices out of range, duplicated or non-integer.
    """
    if labeled is None:
        return np.empty(0, dtype=np.int64)
    arr = np.asarray(labeled)
    if arr.ndim != 1:
        raise VlalInputError(f"labeled must be 1-D (indices or a boolean mask); got shape {arr.shape}")
    if arr.dtype == np.bool_:
        if arr.shape[0] != n:
            raise VlalInputError(f"labeled is a boolean mask of length {arr.shape[0]}, but the pool has {n} rows")
        return np.flatnonzero(arr).astype(np.int64)
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise VlalInputError(f"labeled must hold integer indices or be a boolean mask; got dtype {arr.dtype}")
    big = arr.dtype.kind == "u" and bool((arr > np.iinfo(np.int64).max).any())  # would wrap to negatives
    idx = arr.astype(np.int64)
    bad = (idx < 0) | (idx >= n)
    if big or bad.any():
        first = int(arr.ravel()[np.flatnonzero(arr.ravel() >= n)[0]]) if big else int(idx[bad][0])
        raise VlalInputError(
            f"labeled index {first} is out of range for a pool of {n} rows "
            "(negative indices are not accepted)"
        )
    uniq = np.unique(idx)
    if uniq.size != idx.size:
        vals, counts = np.unique(idx, return_counts=True)
        hint = ""
        if idx.size == n and set(vals.tolist()) <= {0, 1}:
            hint = " (it looks like a 0/1 mask: pass it as a boolean array, labeled.astype(bool))"
        raise VlalInputError(f"labeled holds duplicated index {int(vals[counts > 1][0])}{hint}")
    return idx


def is_json_ints(values) -> bool:
    """True for a list of Python ints (bools excluded), as ``json.loads`` gives them: the check of
    the integer lists vlal reads back from its own JSON files (session state, journal, bench runs)."""
    return isinstance(values, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def integer_class_ids(values, name: str, detail: str = "") -> np.ndarray:
    """``values`` as an int64 array of class ids, or an error naming ``name`` and the dtype.

    The one dtype rule for class ids everywhere (``labels``, the loop's oracle and test labels,
    label arrays in feature files, ``--labels``): integer dtypes pass, as do Python / numpy ints
    in an object array (e.g. from pandas); floats are refused (no silent float -> int cast,
    the message says how to cast whole numbers), strings are refused (map class names to ids
    first). Shape and range are the caller's to check (their messages name their context).
    ``detail`` is inserted after "integer class ids" (e.g. ``" in [0, 10)"``).

    Raises
    ------
    VlalInputError
        A non-integer dtype.
    """
    arr = np.asarray(values)
    if arr.dtype == object and all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                                   for v in arr.ravel()):
        big = [v for v in arr.ravel() if not -(2**63) <= int(v) < 2**63]
        if big:
            raise VlalInputError(f"{name} holds the class id {int(big[0])}, far outside any number of classes")
        arr = arr.astype(np.int64)  # ints in an object array
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        hint = ("; cast whole-number floats with .astype(int)" if np.issubdtype(arr.dtype, np.floating)
                else "; map class names to ids first" if arr.dtype.kind in "USO" else "")
        raise VlalInputError(f"{name} must hold integer class ids{detail}; got dtype {arr.dtype}{hint}")
    return arr.astype(np.int64)


def check_labels(labels, labeled_idx: np.ndarray, n: int, n_classes: int | None = None) -> np.ndarray | None:
    """Validate the classes of the labeled rows; aligned with ``labeled`` as the caller gave it.

    ``labels`` may have one entry per labeled row (in the order of ``labeled``, or of
    ``np.flatnonzero(labeled)`` for a mask). Returns int64 labels aligned with ``labeled_idx``.
    """
    if labels is None:
        return None
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise VlalInputError(f"labels must be 1-D; got shape {arr.shape}")
    if arr.shape[0] != labeled_idx.shape[0]:
        raise VlalInputError(
            f"labels has {arr.shape[0]} entries but labeled marks {labeled_idx.shape[0]} rows; "
            "give one class per labeled row, in the order of labeled"
        )
    # the same rule as for ``labeled``: no silent float -> int casts of ids
    arr = integer_class_ids(arr, "labels", " (as labeled holds integer indices)")
    if arr.size and arr.min() < 0:
        raise VlalInputError(f"labels must be non-negative class ids; got {int(arr.min())}")
    if arr.size and n_classes is not None and arr.max() >= n_classes:
        raise VlalInputError(
            f"labels holds class {int(arr.max())}, but probs has only {n_classes} classes (columns); "
            "if probs comes from a classifier fitted on the classes seen so far, give it one column "
            "per class with vlal.align_probs(probs, clf.classes_, n_classes)"
        )
    return arr


def l2_normalize(features: np.ndarray, name: str = "features", *, rows=None, copy: bool = True) -> np.ndarray:
    """Row-normalise to unit L2 norm, as C-contiguous float32.

    Norms are computed in float64 chunk by chunk, so float16 or memory-mapped inputs
    are never copied whole to float64; the only full-size array made is the float32
    result.

    Parameters
    ----------
    features : ndarray of shape (n, d)
    name : str
        Argument name for error messages.
    rows : array-like of int, optional
        Normalise only ``features[rows]`` (gathered chunk by chunk, so the selection is
        never materialised in the input dtype first).
    copy : bool, default True
        ``False`` returns ``features`` itself, as a read-only view, when it already is
        C-contiguous float32 with unit rows (``|norm - 1| <= 1e-5``) and ``rows`` is
        None. This saves one (n, d) copy when the caller normalised already.

    Returns
    -------
    ndarray of shape (n, d) or (len(rows), d), float32
        A new array unless ``copy=False`` applied (then a read-only view).

    Raises
    ------
    VlalInputError
        A row has zero norm (it has no direction to normalise).
    """
    n, d = features.shape
    if rows is not None:
        rows = np.asarray(rows, dtype=np.int64)
        n = rows.shape[0]
    step = rows_per_chunk(d)
    if not copy and rows is None and _is_unit_f32(features, step):
        view = features.view()
        view.flags.writeable = False
        return view
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, step):
        src = features[start : start + step] if rows is None else features[rows[start : start + step]]
        block = np.asarray(src, dtype=np.float64)
        # divide by the largest magnitude first: huge values (1e300) would overflow the norm
        scale = np.abs(block).max(axis=1, keepdims=True)
        block = np.divide(block, scale, out=np.zeros_like(block), where=scale > 0)
        norms = np.linalg.norm(block, axis=1)
        zero = norms == 0
        if zero.any():
            bad = start + _first_bad_row(zero)
            bad = bad if rows is None else int(rows[bad])
            raise VlalInputError(f"{name} row {bad} has zero norm and cannot be normalised")
        out[start : start + block.shape[0]] = block / norms[:, None]
    return out


def _is_unit_f32(features, step: int) -> bool:
    if not isinstance(features, np.ndarray) or features.dtype != np.float32 or not features.flags.c_contiguous:
        return False
    for start in range(0, features.shape[0], step):
        block = np.asarray(features[start : start + step], dtype=np.float64)
        if np.abs(np.einsum("ij,ij->i", block, block) - 1.0).max(initial=0.0) > 2e-5:
            return False
    return True


def rng_from(random_state) -> np.random.Generator:
    """A numpy Generator for one call of a strategy.

    ``None``: fresh OS entropy; an int (``>= 0``) or a ``SeedSequence``: a new Generator
    seeded with it (the same draws on every call); a ``numpy.random.Generator``: used as
    is (it advances); a legacy ``numpy.random.RandomState`` (the scikit-learn /
    scikit-activeml convention): one 63-bit seed is drawn from it, so it advances by one
    draw per call and a seeded RandomState gives a reproducible sequence of calls.

    Raises
    ------
    VlalInputError
        A negative int, or any other type (the message names ``random_state``).
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(int(random_state.randint(0, 2**63 - 1, dtype=np.int64)))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, (bool, np.bool_)):
        if random_state < 0:
            raise VlalInputError(f"random_state must be a non-negative int; got {random_state}")
        return np.random.default_rng(int(random_state))
    if random_state is None or isinstance(random_state, np.random.SeedSequence):
        return np.random.default_rng(random_state)
    raise VlalInputError(
        "random_state must be None, a non-negative int, a numpy SeedSequence, Generator or RandomState; "
        f"got {type(random_state).__name__}"
    )


def seed_int(random_state, rng: np.random.Generator | None = None) -> int:
    """A 31-bit int seed for libraries (faiss) that take only ints.

    An int in ``[0, 2**31 - 1)`` is used as is; a larger one is hashed by numpy's
    ``SeedSequence`` (a plain modulo would give ``2**31 - 1`` the picks of ``0``).
    """
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, (bool, np.bool_)):
        s = int(random_state)
        if 0 <= s < 2**31 - 1:
            return s
        if s >= 0:
            return int(np.random.SeedSequence(s).generate_state(1, np.uint64)[0] % (2**31 - 1))
    r = rng if rng is not None else rng_from(random_state)
    return int(r.integers(0, 2**31 - 1))


def check_candidates(candidates, n: int, labeled_idx: np.ndarray) -> np.ndarray:
    """The pool rows that may be queried, as sorted unique int64 indices.

    ``None``: every row not in ``labeled_idx``. Otherwise indices or a boolean mask of
    length ``n``, checked like ``labeled`` (range, duplicates, integer dtype); a labeled
    row among them is an error.

    Raises
    ------
    VlalInputError
        Mask of the wrong length, indices out of range, duplicated or non-integer,
        a labeled row among the candidates, or no candidate at all.
    """
    if candidates is None:
        mask = np.ones(n, dtype=bool)
        mask[labeled_idx] = False
        return np.flatnonzero(mask).astype(np.int64)
    try:
        idx = check_labeled(candidates, n)
    except VlalInputError as err:
        raise VlalInputError(str(err).replace("labeled", "candidates")) from None
    idx = np.sort(idx)
    if labeled_idx.size:
        clash = idx[np.isin(idx, labeled_idx)]
        if clash.size:
            raise VlalInputError(
                f"candidates holds row {int(clash[0])}, which is labeled ({clash.size} labeled row(s) "
                "among the candidates); a labeled row cannot be queried again"
            )
    if idx.size == 0:
        raise VlalInputError("candidates is empty: there is no row to query")
    return idx


def check_nonzero_rows(arr: np.ndarray, name: str = "features") -> None:
    """Raise if a row of ``arr`` is all zeros (no direction), naming the first such row.

    The one zero-norm rule of every strategy: a zero pool row (labeled or not) is an
    error, whether or not the strategy reads the features.
    """
    step = rows_per_chunk(arr.shape[1])
    half = arr.dtype == np.float16
    for start in range(0, arr.shape[0], step):
        block = arr[start : start + step]
        if half:  # float16 arithmetic is slow: test the bits, sign bit masked off (-0.0 is zero)
            nonzero = (np.ascontiguousarray(block).view(np.uint16) & np.uint16(0x7FFF)).any(axis=1)
        else:
            nonzero = np.any(block, axis=1)
        zero = ~np.asarray(nonzero)
        if zero.any():
            row = start + _first_bad_row(zero)
            raise VlalInputError(
                f"{name} row {row} has zero norm (all zeros) and cannot be normalised; "
                "remove it from the pool or give it its real features"
            )


#: Two rows are copies when their L2-normalised features lie within this Euclidean distance
#: (cosine >= 1 - 2e-6), whatever their dtype: the same image's features up to float round-off
#: (encoded in batches of another size; stored as float16, which moves a unit row by up to
#: 2**-11 relative, two roundings by up to ~1e-3; a pool mixing float32 rows and float16-rounded
#: copies of them), or a scaled copy (the feature vector times a constant). Distinct images are
#: far apart: the closest two rows of the real CLIP pools in ``shared/data`` are 0.085-0.12 apart.
#: (Until stop 24 the tolerance was 1e-4, and 2e-3 for float16 arrays only: float16-rounded
#: copies in a float32 array were missed.)
COPY_TOL = 2e-3


def copies_of_rows(arr: np.ndarray, rows: np.ndarray, tol: float | None = None) -> np.ndarray:
    """Rows of ``arr`` that are copies of one of the rows ``rows`` (within ``tol``, default
    :data:`COPY_TOL`).

    One chunked pass projects every L2-normalised row on 4 fixed unit directions; a
    projection moves at most as far as the row (1-Lipschitz), so only rows whose 4
    projections all lie within ``tol`` of a given row's can be its copies, and those few are
    checked on all values (float64). No copy is missed, none is invented.

    Parameters
    ----------
    arr : ndarray (n, d), no zero rows (:func:`check_nonzero_rows` first)
    rows : ndarray (l,), int64, positions into ``arr``

    Returns
    -------
    ndarray (n,), bool
        True for the rows within ``tol`` of one of ``rows`` (``rows`` themselves included).
    """
    n, d = arr.shape
    tol = COPY_TOL if tol is None else float(tol)
    dirs = np.random.default_rng(0x5EED).normal(size=(d, 4))
    dirs = (dirs / np.linalg.norm(dirs, axis=0)).astype(np.float32)
    proj = np.empty((n, 4), dtype=np.float32)
    step = rows_per_chunk(d)
    for start in range(0, n, step):
        b = np.asarray(arr[start : start + step], dtype=np.float32)
        proj[start : start + b.shape[0]] = (b / np.linalg.norm(b, axis=1, keepdims=True)) @ dirs

    def unit(idx):
        x = np.asarray(arr[idx], dtype=np.float64)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    win = tol + 1e-5  # + float32 rounding of the projections
    order = np.argsort(proj[:, 0], kind="stable")
    s0 = proj[order, 0]
    rows = np.unique(np.asarray(rows, dtype=np.int64))
    lo = np.searchsorted(s0, proj[rows, 0] - win, side="left")
    hi = np.searchsorted(s0, proj[rows, 0] + win, side="right")
    out = np.zeros(n, dtype=bool)
    out[rows] = True
    z_rows = unit(rows)
    for t in np.flatnonzero(hi - lo > 1):  # the window holds more than the row itself
        near = order[lo[t] : hi[t]]
        near = near[(np.abs(proj[near] - proj[rows[t]]) <= win).all(axis=1)]
        near = np.sort(near[~out[near]])
        if near.size:
            out[near[np.linalg.norm(unit(near) - z_rows[t], axis=1) <= tol]] = True
    return out


#: Orthonormal directions the rows are projected on to find copy candidates (:func:`copy_groups`).
GROUP_DIMS = 8
#: Slack added to the copy tolerance on the float32-stored projections (their rounding error).
_PROJ_SLACK = 1e-5


def _group_directions(d: int) -> np.ndarray:
    """``min(d, GROUP_DIMS)`` fixed orthonormal directions (d, k) float64."""
    q, _ = np.linalg.qr(np.random.default_rng(0x5EED).normal(size=(d, min(int(d), GROUP_DIMS))))
    return q


def copy_projections(block: np.ndarray) -> np.ndarray:
    """Projections (r, k) float32 of the L2-normalised rows of ``block`` on ``k = min(d,
    GROUP_DIMS)`` fixed orthonormal directions, computed in float64. The projection is
    1-Lipschitz (orthonormal directions), so two copies' projections lie within the copy
    tolerance of each other (+ float32 rounding, ``_PROJ_SLACK``)."""
    r, d = block.shape
    q = _group_directions(d)
    out = np.empty((r, q.shape[1]), dtype=np.float32)
    step = rows_per_chunk(d)
    for s in range(0, r, step):
        b = np.asarray(block[s : s + step], dtype=np.float64)
        out[s : s + b.shape[0]] = (b / np.linalg.norm(b, axis=1, keepdims=True)) @ q
    return out


def _unit_rows(arr: np.ndarray):
    """``unit(idx)``: the rows ``arr[idx]`` L2-normalised in float64."""

    def unit(idx):
        x = np.asarray(arr[idx], dtype=np.float64)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    return unit


def copy_groups(arr: np.ndarray, tol: float | None = None) -> np.ndarray:
    """The groups of copies among the rows of ``arr``: one int64 id per row, equal exactly
    when two rows are linked by a chain of copies (L2-normalised rows within ``tol`` of each
    other, default :data:`COPY_TOL`: the rule of
    :func:`copies_of_rows`). The id of a group is its lowest row position (a row without a
    copy keeps its own position).

    Parameters
    ----------
    arr : ndarray (n, d), no zero rows (:func:`check_nonzero_rows` first)
    tol : float, optional

    Returns
    -------
    ndarray (n,), int64

    Notes
    -----
    One chunked pass projects the normalised rows on ``GROUP_DIMS`` (8) fixed orthonormal
    directions (:func:`copy_projections`; two copies' projections lie within ``tol``). A row
    whose projections and normalised values equal an earlier row's joins that row's group
    (exact copies: one check each, however many there are). Over the other rows a k-d tree
    of the projections finds the rows with another row within ``tol`` (+ float32 slack;
    rare: distinct images are far apart), then those rows' neighbours; each such pair is
    checked on all values (float64), and the groups are the connected components of the
    confirmed pairs. No pair is missed, none is invented. Cost: the pass, a k-d tree of
    ``n`` points in 8 dimensions (~0.1 s at 10^5 rows, a few s at 10^6), and ``O(d)`` per
    candidate pair (``s`` bitwise-different near copies of one image cost ``~s**2``).
    """
    tol = COPY_TOL if tol is None else float(tol)
    return groups_from_projections(copy_projections(arr), _unit_rows(arr), tol)


#: Bytes of float64 rows read per batch when candidate pairs are checked.
_PAIR_BATCH_BYTES = CHUNK_BYTES


def groups_from_projections(proj: np.ndarray, unit, tol: float, workers: int = 1) -> np.ndarray:
    """:func:`copy_groups` from the projections ``proj`` (n, k) (:func:`copy_projections`)
    and ``unit(idx) -> (len(idx), d) float64`` normalised rows (read on demand, so that a
    streamed pool need not be in memory). ``workers``: threads of the k-d tree queries."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = proj.shape[0]
    win = float(tol) + _PROJ_SLACK
    p = np.ascontiguousarray(proj, dtype=np.float32) + np.float32(0.0)  # -0.0 -> 0.0
    edges_a, edges_b = [], []

    def confirm(a, b, equal=False):
        if a.size == 0:
            return
        d = unit(a[:1]).shape[1]
        step = max(1, _PAIR_BATCH_BYTES // (16 * d))
        for s in range(0, a.size, step):
            aa, bb = a[s : s + step], b[s : s + step]
            if equal:
                ok = (unit(aa) == unit(bb)).all(axis=1)
            else:
                ok = np.linalg.norm(unit(aa) - unit(bb), axis=1) <= tol
            edges_a.append(aa[ok])
            edges_b.append(bb[ok])

    # 1. equal normalised rows: a row's distances are then its representative's, so it needs no pair
    key = p.view(np.dtype((np.void, p.dtype.itemsize * p.shape[1]))).ravel()
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    rep = first[inv.ravel()]  # the first row with the same projections
    dup = np.flatnonzero(rep != np.arange(n))
    confirm(dup, rep[dup], equal=True)
    joined = np.zeros(n, dtype=bool)
    for e in edges_a:
        joined[e] = True
    rows = np.flatnonzero(~joined)  # the others stay in the pair search themselves

    # 2. the rows with another row within `win` in projection, then their neighbours
    if rows.size > 1:
        pts = p[rows].astype(np.float64)
        tree = cKDTree(pts, leafsize=16)
        dist, _ = tree.query(pts, k=2, distance_upper_bound=win, workers=workers)
        near = np.flatnonzero(np.isfinite(dist[:, 1]))
        if near.size:
            nbs = tree.query_ball_point(pts[near], win, workers=workers)
            cnt = np.fromiter((len(v) for v in nbs), dtype=np.int64, count=near.size)
            a = np.repeat(near, cnt)
            b = np.concatenate([np.asarray(v, dtype=np.int64) for v in nbs])
            keep = a < b  # each pair once (the relation is symmetric), never a row with itself
            confirm(rows[a[keep]], rows[b[keep]])

    if not sum(e.size for e in edges_a):
        return np.arange(n, dtype=np.int64)
    ea = np.concatenate(edges_a)
    eb = np.concatenate(edges_b)
    graph = coo_matrix((np.ones(ea.size, dtype=np.int8), (ea, eb)), shape=(n, n)).tocsr()
    _, label = connected_components(graph, directed=False)
    _, lowest = np.unique(label, return_index=True)  # first occurrence = lowest row of each group
    return lowest[label].astype(np.int64)


def check_param(value, name: str, target_type, *, min_val=None, max_val=None, include_boundaries="both"):
    """Check one strategy parameter with :func:`sklearn.utils.check_scalar`.

    Booleans are refused for numeric parameters, NaN / inf for real ones. Errors are
    :class:`~vlal.VlalInputError` (a ``ValueError``) naming the parameter.
    """
    from sklearn.utils import check_scalar  # lazy: keeps `import vlal` light

    if isinstance(value, (bool, np.bool_)):
        raise VlalInputError(f"{name} must be a number, not a bool; got {value!r}")
    if isinstance(value, numbers.Real) and not np.isfinite(float(value)):
        raise VlalInputError(f"{name} must be a finite number; got {value!r}")
    try:
        return check_scalar(
            value, name, target_type, min_val=min_val, max_val=max_val, include_boundaries=include_boundaries
        )
    except TypeError as err:
        raise VlalInputError(f"{err} (got {value!r})") from None
    except ValueError as err:
        raise VlalInputError(str(err)) from None


def check_temperature(temperature, name: str = "temperature") -> float:
    """The one check of a softmax temperature ``T`` (Eq. 1) everywhere: a finite real > 0, not a
    bool; returned as a float. Errors name ``name``."""
    if isinstance(temperature, (bool, np.bool_)) or not isinstance(temperature, numbers.Real) \
            or not (np.isfinite(float(temperature)) and temperature > 0):
        raise VlalInputError(f"{name} must be a finite number > 0; got {temperature!r}")
    return float(temperature)


def check_choice(value, name: str, choices) -> None:
    """Raise unless ``value`` is one of ``choices`` (compared with ``==``, type-safe)."""
    if not any(type(value) is type(c) and value == c for c in choices):
        raise VlalInputError(f"{name} must be one of {tuple(choices)}; got {value!r}")


def check_bool(value, name: str) -> None:
    """Raise unless ``value`` is ``True`` or ``False`` (numpy bools accepted)."""
    if not isinstance(value, (bool, np.bool_)):
        raise VlalInputError(f"{name} must be True or False; got {value!r}")


def check_hook_output(values, n_rows: int, owner, hook: str, *, ndim: int = 1, nonnegative: bool = False) -> np.ndarray:
    """Check what a strategy subclass's hook returned: ``ndim``-D with ``n_rows`` rows, finite
    (and ``>= 0`` with ``nonnegative``), so that a NaN score is never silently ranked.

    Returns ``values`` as an array (float64 when 1-D, the dtype as given when 2-D).

    Raises
    ------
    VlalInputError
        Naming ``type(owner).__name__.hook``, the shape, or the first bad row.
    """
    where = f"{type(owner).__name__}.{hook}"
    arr = np.asarray(values, dtype=np.float64) if ndim == 1 else np.asarray(values)
    if arr.ndim != ndim or arr.shape[0] != n_rows:
        want = f"({n_rows},)" if ndim == 1 else f"({n_rows}, ...) with {ndim} dimensions"
        raise VlalInputError(f"{where} must return shape {want}; got {arr.shape}")
    if ndim != 1 and not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    rest = tuple(range(1, arr.ndim))  # every axis after the rows (none when 1-D); works with 0 rows
    bad = ~np.isfinite(arr).all(axis=rest)
    if bad.any():
        raise VlalInputError(f"{where} returned NaN or inf (first bad row: {_first_bad_row(bad)}); "
                             "non-finite scores cannot be ranked")
    if nonnegative and (arr < 0).any():
        raise VlalInputError(f"{where} returned negative weights (first bad row: "
                             f"{_first_bad_row((arr < 0).any(axis=rest))})")
    return arr
