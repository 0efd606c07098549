"""Atomic file writes: every file vlal writes goes through here.

A file is written to a temporary name in its own folder, flushed and ``fsync``-ed, then
renamed over the target with :func:`os.replace` (atomic on POSIX and Windows within one
file system), and the folder entry is synced. A reader, or a process killed at any
instant, therefore sees either the old file or the complete new one, never a truncated
file. On any error (full disk, read-only file system, Ctrl-C) the temporary file is
removed and the target is left untouched.

Only numpy, json and the standard library are used, so this module is cheap to import.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np

__all__ = [
    "numpy_read_error",
    "atomic_write",
    "write_bytes_atomic",
    "write_text_atomic",
    "write_json_atomic",
    "save_npy_atomic",
    "savez_atomic",
    "check_writable_dir",
    "describe_os_error",
]


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _chmod_like_open(fd: int, target: Path) -> None:
    """Give the temporary file the mode ``open(target, "w")`` would (mkstemp makes it 0600)."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)  # replacing a file: keep its mode
    except OSError:
        mask = os.umask(0o022)
        os.umask(mask)
        mode = 0o666 & ~mask
    fchmod = getattr(os, "fchmod", None)  # not on every platform
    if fchmod is not None:
        with contextlib.suppress(OSError, NotImplementedError):
            fchmod(fd, mode)


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb", *, encoding: str | None = None, newline: str | None = None
                 ) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit it replaces ``path`` atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The target file. Its folder must exist (nothing is created implicitly).
    mode : {"wb", "w"}, default "wb"
        Binary or text.
    encoding, newline : str, optional
        As for :func:`open` in text mode (``encoding`` defaults to UTF-8).

    Yields
    ------
    file object
        Write the whole content to it. If the ``with`` block raises (including
        ``KeyboardInterrupt``), the temporary file is deleted and ``path`` is unchanged.

    Raises
    ------
    OSError
        The folder is missing or not writable, the disk is full, ... (``path`` unchanged).
    ValueError
        ``mode`` is not "wb" or "w".
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w'; got {mode!r}")
    target = Path(path)
    folder = target.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        _chmod_like_open(fd, target)
        if mode == "w":
            fh = open(fd, "w", encoding=encoding or "utf-8", newline=newline)
        else:
            fh = open(fd, "wb")
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def write_bytes_atomic(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``Path(path)``."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text_atomic(path, text: str, *, encoding: str = "utf-8", newline: str | None = None) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8 by default); returns ``Path(path)``."""
    with atomic_write(path, "w", encoding=encoding, newline=newline) as fh:
        fh.write(text)
    return Path(path)


def write_json_atomic(path, obj, **dumps_kwargs) -> Path:
    """``json.dumps(obj, **dumps_kwargs)`` written to ``path`` atomically; returns ``Path(path)``."""
    return write_text_atomic(path, json.dumps(obj, **dumps_kwargs))


def save_npy_atomic(path, array) -> Path:
    """``np.save`` to exactly ``path`` (no ``.npy`` appended), atomically; object arrays refused.

    Raises
    ------
    ValueError
        ``array`` has dtype object (vlal never writes pickles).
    """
    arr = np.asanyarray(array)
    if arr.dtype.hasobject:
        raise ValueError("refusing to save an object array (it would need pickle)")
    with atomic_write(path, "wb") as fh:
        np.save(fh, arr, allow_pickle=False)
    return Path(path)


def savez_atomic(path, compressed: bool = False, **arrays) -> Path:
    """``np.savez`` (or ``np.savez_compressed``) to exactly ``path``, atomically.

    The archive is built in memory-friendly fashion by numpy straight into the temporary
    file. Object arrays are refused (``ValueError``), since they would need pickle.
    """
    for key, value in arrays.items():
        if np.asanyarray(value).dtype.hasobject:
            raise ValueError(f"refusing to save object array {key!r} (it would need pickle)")
    save = np.savez_compressed if compressed else np.savez
    with atomic_write(path, "wb") as fh:
        save(fh, **arrays)  # object arrays were refused above (numpy < 2.1 has no allow_pickle here)
    return Path(path)


def check_writable_dir(path, what: str = "output folder") -> Path:
    """Create ``path`` (with parents) if needed and prove a file can be created in it.

    Used before long computations so that an unwritable output fails at once, not after
    hours. Returns ``Path(path)``.

    Raises
    ------
    OSError
        With a message naming ``what`` and ``path`` (not a folder, read-only, no space...).
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{what} {folder} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".vlal-write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise type(err)(err.errno, f"{what} {folder} is not writable: {describe_os_error(err)}") from err
    return folder


def describe_os_error(err: OSError) -> str:
    """One line for an ``OSError``: its strerror (or message) and the file it concerns."""
    text = err.strerror or str(err)
    if err.filename and str(err.filename) not in text:
        text += f": {err.filename}"
    return text


def numpy_read_error(err: BaseException) -> str:
    """Why ``np.load(..., allow_pickle=False)`` failed, in a user's words (first line only).

    numpy says "contains pickled (object) data" for any file without numpy's header (a text
    file, random bytes, a broken zip, a real pickle), and "Object arrays cannot be loaded"
    for a true object array.
    """
    why = (str(err).strip().splitlines() or [type(err).__name__])[0]
    if "Object arrays cannot be loaded" in why or "Python objects in dtype" in why:
        return "it holds an object array (Python objects), which vlal never unpickles"
    if "pickled" in why or "allow_pickle" in why:
        return "not a .npy/.npz file (no numpy header: text, a broken or truncated file, or a pickle, which vlal never loads)"
    if "mmap length is greater than file size" in why or "cannot reshape array" in why:
        return "the file is shorter than its numpy header says (truncated)"
    if "No data left in file" in why:
        return "the file is empty"
    if "File is not a zip file" in why or "Bad magic number" in why:
        return "not a valid .npz (zip) archive: truncated, or not an .npz"
    return why
