"""Features too large for memory: float16 ``.npy`` shards on disk plus a small JSON manifest.

A feature set of ``n`` rows is stored as ``S`` shards ``features-00000.npy`` ...
(each ``(n_s, d)`` float16, plain ``.npy``, read with ``allow_pickle=False``) and a
manifest ``manifest.json`` in the same folder::

    {
      "format": "vlal-shards",
      "version": 1,
      "dtype": "float16",
      "d": 512,
      "n": 10000000,
      "shards": [{"file": "features-00000.npy", "rows": 1048576}, ...],
      "model": "ViT-B-32",
      "weights": "laion2b_s34b_b79k" | "/path/to/ckpt.pt" | null,
      "preprocessing": {...} | null,
      "paths": "paths.txt" | null,
      "normalized": true
    }

Row ``i`` of the pool is row ``i - offset_s`` of the shard ``s`` that holds it, shards in
manifest order. ``paths`` (optional) names a UTF-8 text file with one image path per
row, in the same order.

:class:`ShardedFeatures` is a read-only, lazily concatenated view of the shards: it has
``shape``, ``dtype``, ``len`` and ``[]`` for row slices and integer index arrays, and
reads only the rows asked for. Each read maps the shard, copies the rows out and unmaps
it again, so the pages read do not stay in the process' resident set (RSS): only the
rows a caller keeps count. ``np.asarray(view)`` (``__array__``) materialises the whole
pool, and refuses to when that would exceed :data:`MATERIALIZE_MAX_BYTES` (as float32):
code that must work at any size iterates over :meth:`ShardedFeatures.chunks` instead.

Every file written here is written atomically (temporary name in the same folder,
fsync, ``os.replace``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from ._io import save_npy_atomic, write_bytes_atomic
from .exceptions import VlalInputError

__all__ = [
    "MANIFEST_FORMAT",
    "MATERIALIZE_MAX_BYTES",
    "ShardedFeatures",
    "ShardWriter",
    "load_manifest",
    "open_features",
    "write_shards",
]

MANIFEST_FORMAT = "vlal-shards"
MANIFEST_VERSION = 1
#: ``np.asarray(ShardedFeatures)`` refuses when the float32 result would exceed this many bytes
#: (2 GiB). Set ``vlal.shards.MATERIALIZE_MAX_BYTES`` to change it.
MATERIALIZE_MAX_BYTES = 2 * 2**30
#: Rows per shard written by :class:`ShardWriter` by default (1 GiB of float16 at d = 512).
DEFAULT_SHARD_ROWS = 2**20
_DTYPES = ("float16", "float32")


def load_manifest(path) -> dict:
    """Read and check a shard manifest (JSON only; no file is executed or unpickled).

    Parameters
    ----------
    path : str or Path
        ``manifest.json``, or the folder holding it.

    Returns
    -------
    dict
        The manifest, with ``"root"`` (the folder, absolute) added.

    Raises
    ------
    VlalInputError
        Missing file, not JSON, wrong format/version, dtype not float16/float32, shard
        sizes that do not add up to ``n``, or a shard file name that leaves the folder.
    """
    p = Path(path)
    if p.is_dir():
        p = p / "manifest.json"
    if not p.is_file():
        raise VlalInputError(f"manifest {p} does not exist")
    try:
        m = json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise VlalInputError(f"manifest {p} is not valid JSON: {exc}") from None
    if not isinstance(m, dict) or m.get("format") != MANIFEST_FORMAT:
        raise VlalInputError(f"manifest {p}: 'format' must be {MANIFEST_FORMAT!r}")
    if m.get("version") != MANIFEST_VERSION:
        raise VlalInputError(f"manifest {p}: unsupported version {m.get('version')!r} (expected {MANIFEST_VERSION})")
    if m.get("dtype") not in _DTYPES:
        raise VlalInputError(f"manifest {p}: dtype must be one of {_DTYPES}; got {m.get('dtype')!r}")
    shards = m.get("shards")
    if not isinstance(shards, list) or not shards:
        raise VlalInputError(f"manifest {p}: 'shards' must be a non-empty list")
    for s in shards:
        if not isinstance(s, dict) or not isinstance(s.get("file"), str) or not isinstance(s.get("rows"), int):
            raise VlalInputError(f"manifest {p}: each shard needs 'file' (str) and 'rows' (int); got {s!r}")
        f = s["file"]
        if os.path.isabs(f) or Path(f).name != f:
            raise VlalInputError(f"manifest {p}: shard file {f!r} must be a plain file name in the manifest's folder")
        if s["rows"] < 0:
            raise VlalInputError(f"manifest {p}: shard {f!r} has a negative row count")
    files = [s["file"] for s in shards]
    twice = sorted({f for f in files if files.count(f) > 1})
    if twice:  # its rows would stand in for another shard's: a silent copy of the wrong images
        raise VlalInputError(f"manifest {p}: shard file(s) {twice} listed more than once; each shard holds its own rows")
    n = sum(s["rows"] for s in shards)
    if m.get("n") != n:
        raise VlalInputError(f"manifest {p}: 'n' is {m.get('n')!r} but the shards hold {n} rows")
    if not isinstance(m.get("d"), int) or m["d"] <= 0:
        raise VlalInputError(f"manifest {p}: 'd' must be a positive int; got {m.get('d')!r}")
    m["root"] = str(p.parent.resolve())
    return m


class ShardedFeatures:
    """Read-only, lazily concatenated view of float16/float32 ``.npy`` shards (see module doc).

    Parameters
    ----------
    manifest : str, Path or dict
        Path of ``manifest.json`` (or its folder), or a manifest from :func:`load_manifest`.
    check : bool, default True
        Open every shard once and check its header (shape ``(rows, d)``, dtype) against
        the manifest.

    Attributes
    ----------
    shape : tuple (n, d)
    dtype : numpy dtype (float16 or float32)
    offsets : ndarray (S + 1,), int64
        First pool row of each shard; ``offsets[-1] == n``.
    manifest : dict

    Raises
    ------
    VlalInputError
        Invalid manifest, missing shard, or a shard that does not match it.
    """

    def __init__(self, manifest, *, check: bool = True):
        self.manifest = manifest if isinstance(manifest, dict) and "root" in manifest else load_manifest(manifest)
        m = self.manifest
        self.root = Path(m["root"])
        self.dtype = np.dtype(m["dtype"])
        self.d = int(m["d"])
        rows = np.array([s["rows"] for s in m["shards"]], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(rows)])
        self.shape = (int(self.offsets[-1]), self.d)
        self.ndim = 2
        self._files = [self.root / s["file"] for s in m["shards"]]
        self._data_offset = [None] * len(self._files)
        if check:
            for i in range(len(self._files)):
                self._header(i)

    # ------------------------------------------------------------------ reading
    def _header(self, i: int) -> int:
        if self._data_offset[i] is None:
            f = self._files[i]
            if not f.is_file():
                raise VlalInputError(f"shard {f} (listed in the manifest) does not exist")
            with open(f, "rb") as fh:
                try:
                    version = np.lib.format.read_magic(fh)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, fortran, dtype = read_header(fh)
                except ValueError as exc:
                    raise VlalInputError(f"shard {f} is not a .npy file: {exc}") from None
                want = (int(self.offsets[i + 1] - self.offsets[i]), self.d)
                if tuple(shape) != want or np.dtype(dtype) != self.dtype or fortran:
                    raise VlalInputError(
                        f"shard {f} holds {shape} {np.dtype(dtype)} (fortran={fortran}); the manifest "
                        f"says {want} {self.dtype}, C order"
                    )
                self._data_offset[i] = fh.tell()
        return self._data_offset[i]

    def _map(self, i: int) -> np.ndarray:
        rows = int(self.offsets[i + 1] - self.offsets[i])
        if rows == 0:
            return np.empty((0, self.d), dtype=self.dtype)
        try:
            return np.memmap(self._files[i], dtype=self.dtype, mode="r", offset=self._header(i), shape=(rows, self.d))
        except ValueError as err:  # numpy: "mmap length is greater than file size"
            raise VlalInputError(f"shard {self._files[i]} is shorter than its header and the manifest say "
                                 f"({rows} rows of {self.d}): truncated; write it again") from err

    def _read_range(self, start: int, stop: int, out: np.ndarray) -> None:
        s = int(np.searchsorted(self.offsets, start, side="right")) - 1
        pos = 0
        while start < stop:
            end = min(stop, int(self.offsets[s + 1]))
            mm = self._map(s)
            out[pos : pos + end - start] = mm[start - self.offsets[s] : end - self.offsets[s]]
            del mm  # unmap: read pages leave the resident set
            pos += end - start
            start = end
            s += 1

    def _read_rows(self, rows: np.ndarray, out: np.ndarray) -> None:
        shard = np.searchsorted(self.offsets, rows, side="right") - 1
        order = np.argsort(rows, kind="stable")
        sorted_shard = shard[order]
        bounds = np.searchsorted(sorted_shard, np.arange(len(self._files) + 1))
        for s in range(len(self._files)):
            a, b = bounds[s], bounds[s + 1]
            if a == b:
                continue
            pos = order[a:b]
            mm = self._map(s)
            out[pos] = mm[rows[pos] - self.offsets[s]]
            del mm

    def read(self, rows, dtype=None) -> np.ndarray:
        """Rows of the pool as a new in-memory array.

        Parameters
        ----------
        rows : slice or array-like of int (1-D; negative indices count from the end)
        dtype : numpy dtype, optional
            Output dtype (default: the shards' dtype).

        Returns
        -------
        ndarray (m, d)

        Raises
        ------
        IndexError
            An index out of range.
        """
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        n = self.shape[0]
        if isinstance(rows, slice):
            start, stop, step = rows.indices(n)
            if step == 1:
                stop = max(start, stop)
                out = np.empty((stop - start, self.d), dtype=dtype)
                self._read_range(start, stop, out)
                return out
            rows = np.arange(start, stop, step)
        idx = np.asarray(rows)
        if idx.dtype == np.bool_:
            if idx.shape != (n,):
                raise IndexError(f"boolean index of shape {idx.shape} does not match {n} rows")
            idx = np.flatnonzero(idx)
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise IndexError(f"rows must be a slice or a 1-D integer array; got {idx.dtype} of shape {idx.shape}")
        idx = idx.astype(np.int64)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        idx = np.where(idx < 0, idx + n, idx)
        out = np.empty((idx.size, self.d), dtype=dtype)
        if idx.size:
            self._read_rows(idx, out)
        return out

    def __getitem__(self, key):
        if isinstance(key, tuple):
            if len(key) == 2:
                return self.read(key[0])[:, key[1]]
            raise IndexError(f"ShardedFeatures takes at most 2 indices; got {len(key)}")
        if isinstance(key, (int, np.integer)):
            return self.read(np.array([key]))[0]
        return self.read(key)

    def __len__(self) -> int:
        return self.shape[0]

    def chunks(self, rows: int = 65536, dtype=np.float32, index=None):
        """Yield ``(start, block)``: consecutive blocks of at most ``rows`` rows, in ``dtype``.

        With ``index`` (1-D int array), yields blocks of ``self[index]`` instead; ``start``
        is then the position in ``index``.
        """
        total = self.shape[0] if index is None else len(index)
        for s in range(0, total, rows):
            e = min(total, s + rows)
            yield s, self.read(slice(s, e) if index is None else index[s:e], dtype=dtype)

    def __array__(self, dtype=None, copy=None):
        if copy is False:
            raise ValueError("ShardedFeatures cannot be viewed as an ndarray without a copy")
        nbytes = self.shape[0] * self.shape[1] * 4
        if nbytes > MATERIALIZE_MAX_BYTES:
            raise VlalInputError(
                f"refusing to load {self.shape[0]} x {self.shape[1]} sharded features into memory "
                f"({nbytes / 2**30:.1f} GiB as float32 > vlal.shards.MATERIALIZE_MAX_BYTES = "
                f"{MATERIALIZE_MAX_BYTES / 2**30:.1f} GiB); use vlal.CEC (which streams shards) or "
                "raise the limit"
            )
        return self.read(slice(None), dtype=dtype)

    @property
    def nbytes(self) -> int:
        """Bytes of all shards on disk (``n * d * itemsize``)."""
        return self.shape[0] * self.shape[1] * self.dtype.itemsize

    @property
    def paths(self) -> list[str] | None:
        """Image paths (one per row) from the manifest's ``paths`` file, or None."""
        name = self.manifest.get("paths")
        if not name:
            return None
        return (self.root / name).read_text(encoding="utf-8").splitlines()

    def __repr__(self) -> str:
        return (f"ShardedFeatures(n={self.shape[0]}, d={self.d}, dtype={self.dtype}, "
                f"shards={len(self._files)}, root={str(self.root)!r})")


def _release_manifest(folder: Path, prefix: str) -> None:
    """Before ``folder`` is (re)written with shards ``prefix-*``: remove its manifest when it
    describes shards of that prefix; refuse one of another prefix or one that is not a manifest."""
    path = folder / "manifest.json"
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        files = [str(s["file"]) for s in old["shards"]] if old.get("format") == MANIFEST_FORMAT else None
    except (ValueError, UnicodeDecodeError, TypeError, KeyError, AttributeError, OSError):
        files = None
    if files is None:
        raise VlalInputError(f"{path} exists and is not a vlal shard manifest; remove it or write into another folder")
    other = sorted({f.rsplit("-", 1)[0] for f in files} - {prefix})
    if other:
        raise VlalInputError(f"{folder} already holds the manifest of shards {other[0]!r}-*; write shards with "
                             f"prefix={prefix!r} into another folder (one manifest per folder)")
    path.unlink()


class ShardWriter:
    """Write rows to float16 shards and a manifest, block by block (atomic files).

    Use as a context manager, or call :meth:`close` to write the last shard and the
    manifest; the manifest is written last, so a folder without one is incomplete. An
    exception inside the ``with`` block writes no manifest.

    Parameters
    ----------
    folder : str or Path
        Created if missing. Rewriting a folder replaces its shards of the same names and
        removes its ``manifest.json`` first, so an interrupted rewrite leaves a folder without
        a manifest (incomplete), never one that mixes old and new rows.
    d : int
        Feature dimension.
    shard_rows : int, default 2**20
        Rows per shard (the last one may be shorter).
    dtype : {"float16", "float32"}, default "float16"
    prefix : str, default "features"
    **meta
        Stored in the manifest: ``model``, ``weights``, ``preprocessing``, ``paths``,
        ``normalized`` and any other JSON-serialisable keys.

    Raises
    ------
    VlalInputError
        ``folder`` already holds the manifest of shards of another ``prefix`` (one folder
        holds one manifest: write probabilities next to features into their own folder), or
        a ``manifest.json`` that is not a shard manifest; a bad ``dtype`` or ``prefix`` (a
        file-name stem: letters, digits, ``_``, ``-``, ``.``).
    """

    def __init__(self, folder, d: int, *, shard_rows: int = DEFAULT_SHARD_ROWS, dtype: str = "float16",
                 prefix: str = "features", **meta):
        if dtype not in _DTYPES:
            raise VlalInputError(f"dtype must be one of {_DTYPES}; got {dtype!r}")
        if not isinstance(prefix, str) or not re.fullmatch(r"\w[\w.-]*", prefix):
            raise VlalInputError(f"prefix must be a plain file-name stem (letters, digits, '_', '-', '.'; not starting "
                                 f"with '.' or '-'; shards are named prefix-00000.npy inside folder); got {prefix!r}")
        self.folder = Path(folder)
        _release_manifest(self.folder, prefix)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.d = int(d)
        self.shard_rows = int(shard_rows)
        self.dtype = np.dtype(dtype)
        self.prefix = prefix
        self.meta = {"model": None, "weights": None, "preprocessing": None, "paths": None, **meta}
        self.shards: list[dict] = []
        self._buf: list[np.ndarray] = []
        self._buffered = 0
        self.closed = False

    def write(self, block) -> None:
        """Append rows ``block`` (m, d); finite values only."""
        x = np.asarray(block)
        if x.ndim != 2 or x.shape[1] != self.d:
            raise VlalInputError(f"block must have shape (m, {self.d}); got {x.shape}")
        with np.errstate(over="ignore"):  # values beyond float16 become inf: reported below
            x = x.astype(self.dtype)
        if not np.isfinite(x).all():
            raise VlalInputError(f"block holds NaN or inf (or values beyond the {self.dtype} range)")
        while x.shape[0]:
            take = min(x.shape[0], self.shard_rows - self._buffered)
            self._buf.append(x[:take])
            self._buffered += take
            x = x[take:]
            if self._buffered == self.shard_rows:
                self._flush()

    def _flush(self) -> None:
        if not self._buffered:
            return
        name = f"{self.prefix}-{len(self.shards):05d}.npy"
        save_npy_atomic(self.folder / name, np.concatenate(self._buf))
        self.shards.append({"file": name, "rows": self._buffered})
        self._buf, self._buffered = [], 0

    def close(self) -> Path:
        """Write the last shard and ``manifest.json``; returns the manifest's path."""
        if self.closed:
            return self.folder / "manifest.json"
        self._flush()
        if not self.shards:
            raise VlalInputError("no rows were written")
        m = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "dtype": self.dtype.name, "d": self.d,
             "n": sum(s["rows"] for s in self.shards), "shards": self.shards, **self.meta}
        path = self.folder / "manifest.json"
        write_bytes_atomic(path, (json.dumps(m, indent=1) + "\n").encode("utf-8"))
        self.closed = True
        return path

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()


def write_shards(folder, features, *, shard_rows: int = DEFAULT_SHARD_ROWS, dtype: str = "float16",
                 paths=None, **meta) -> Path:
    """Write an in-memory (n, d) feature matrix as shards + manifest; returns the manifest path.

    ``paths`` (optional list of n strings) is written to ``paths.txt`` next to it.
    """
    x = np.asarray(features)
    if x.ndim != 2:
        raise VlalInputError(f"features must be 2-D; got shape {x.shape}")
    folder = Path(folder)
    if paths is not None:
        paths = [str(p) for p in paths]
        if len(paths) != x.shape[0]:
            raise VlalInputError(f"paths has {len(paths)} entries for {x.shape[0]} rows")
    with ShardWriter(folder, x.shape[1], shard_rows=shard_rows, dtype=dtype, **meta) as w:
        if paths is not None:  # after the writer checked the folder, before the manifest
            write_bytes_atomic(folder / "paths.txt", ("\n".join(paths) + "\n").encode("utf-8"))
            w.meta["paths"] = "paths.txt"
        for s in range(0, x.shape[0], 65536):
            w.write(x[s : s + 65536])
    return folder / "manifest.json"


def open_features(path) -> ShardedFeatures:
    """:class:`ShardedFeatures` of a manifest (path of ``manifest.json`` or its folder)."""
    return ShardedFeatures(path)
