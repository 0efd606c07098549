"""A labeling session on disk: query a batch, send it to annotators, take the labels back.

A session is a folder that holds everything one active-learning campaign needs, so that
a practitioner can alternate between vlal and an annotation tool (Label Studio, or a CSV
file) over days, and so that a crash at any instant loses nothing:

======================  =====================================================================
``session.json``        what was fixed at ``init``: classes, strategy, tuner, seed (never changes)
``pool.npz``            pool features (n, d) float32, image paths (n,), class embeddings (K, d),
                        and the held-out labeled split when there is one (never changes)
``state.json``          the labeled set, every finished round, the batch waiting for labels;
                        replacing it is the *commit point* of every change
``journal.jsonl``       one line per step of every change (begin / commit / rollback), with
                        the files it writes; read when a session opens after a crash
``model-RRR.npz``       the tuner's class embeddings after round RRR (a cache: re-fitted from
                        the labels when missing)
``batches/``            ``round-RRR.csv`` and ``round-RRR.labelstudio.json``: the batch to label
``labelstudio.xml``     the Label Studio labeling config for the class list
``lock``                held (``fcntl.flock``) by the one process using the session
======================  =====================================================================

Every file is written atomically (temporary name in the folder, ``fsync``, ``os.replace``,
``fsync`` of the folder). A change is: journal ``begin`` (listing the files it will write)
-> write those files -> replace ``state.json`` -> journal ``commit``. A process killed
before ``state.json`` is replaced leaves the old state, and the next open rolls back (deletes
the files the unfinished change wrote); killed after, the change is complete and the next
open only writes the missing ``commit`` line. Nothing is pickled: JSON, ``.npy``/``.npz``
with ``allow_pickle=False``.

One round (paper Sec. 5, Algorithm 1): the current model's probabilities on the pool ->
``strategy.select`` -> annotators label the batch -> the tuner is re-fitted *from the
zero-shot state* on all labels so far -> accuracy on the held-out split, when there is one.

>>> from vlal.session import init_session, open_session        # doctest: +SKIP
>>> init_session("my-session", "pool.npz", strategy="cec")     # doctest: +SKIP
>>> with open_session("my-session") as s:                      # doctest: +SKIP
...     batch = s.next(budget=20)          # writes batches/round-001.{csv,labelstudio.json}
...     s.import_labels("export.json")     # a Label Studio JSON export, or CSV image,label
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import hashlib
import io
import json
import os
import re
import shutil
import time
import zipfile
from pathlib import Path
from typing import Iterator, Sequence
from xml.sax.saxutils import quoteattr

import numpy as np

from ._io import _fsync_dir, write_bytes_atomic
from ._validation import check_features, integer_class_ids, is_json_ints, l2_normalize

from .exceptions import VlalInputError
from .loop import ZERO_SHOT_MARGIN, BelowZeroShotWarning
from ._warnings import warn_caller

__all__ = [
    "Session",
    "SessionError",
    "SessionLockedError",
    "ImportRejectedError",
    "init_session",
    "open_session",
    "labelstudio_config",
    "format_status",
    "FORMAT",
]

#: Written into ``session.json`` / ``state.json``; bumped on incompatible layout changes.
FORMAT = "vlal-session/1"
#: Old session tuner names -> :mod:`vlal.tuners` registry names.
#: Default tuner: the registry's default feature-space stand-in (``vlal.tuners.DEFAULT_TUNER``).
DEFAULT_SESSION_TUNER = "anchored"
_LS_FROM, _LS_TO = "label", "image"  # names of the Choices / Image tags in the labeling config


# the only files a change may write (and so the only ones recovery or a commit may delete)
_OWNED_FILE = re.compile(r"model-\d{3,}\.npz|batches/round-\d{3,}\.(?:csv|labelstudio\.json)")


class SessionError(VlalInputError):
    """A session folder that cannot be used as asked (missing, wrong state, bad arguments)."""


class SessionLockedError(SessionError):
    """Another live process holds the session's lock."""


class ImportRejectedError(SessionError):
    """An import file failed validation; nothing was applied.

    Attributes
    ----------
    problems : list of str
        One line per bad row, naming the row, the image and what is wrong.
    """

    def __init__(self, path, problems: Sequence[str]):
        self.problems = list(problems)
        head = f"{path}: rejected, nothing applied ({len(self.problems)} problem(s)):"
        shown = self.problems[:50]
        more = [f"... and {len(self.problems) - 50} more"] if len(self.problems) > 50 else []
        super().__init__("\n  ".join([head, *shown, *more]))


# --------------------------------------------------------------------------- files


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _npz_bytes(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Lock:
    """One process per session: ``fcntl.flock`` on ``lock`` (released by the kernel when the
    holder dies, so a lock left by a killed process is never stale); the holder's pid is
    written into the file for the error message. Without ``fcntl`` (Windows) an exclusive
    create is used and a lock whose pid is no longer running is taken over."""

    def __init__(self, folder: Path, command: str):
        self.path = folder / "lock"
        self.command = command
        self.fd: int | None = None

    def _holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            info = {}
        if "pid" not in info:  # the holder has taken the lock but not yet written its pid
            return "another vlal command (just starting)"
        what = f" ({info['command']}, since {info.get('since', '?')})" if info.get("command") else ""
        return f"process {info['pid']}{what}"

    def acquire(self) -> None:
        me = json.dumps({"pid": os.getpid(), "command": self.command, "since": _now()}).encode()
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            self._acquire_excl(me)
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise SessionLockedError(
                f"session {self.path.parent} is in use by {self._holder()}; "
                "run one vlal session command at a time (wait for it to finish)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, me, 0)
        self.fd = fd

    def _acquire_excl(self, me: bytes) -> None:  # pragma: no cover - Windows
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    pid = int(json.loads(self.path.read_text()).get("pid", -1))
                except (OSError, ValueError):
                    pid = -1
                if pid > 0 and _pid_alive(pid):
                    raise SessionLockedError(
                        f"session {self.path.parent} is in use by {self._holder()}; run one command at a time"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            os.write(fd, me)
            self.fd = fd
            return
        raise SessionLockedError(f"could not take the lock {self.path}")

    def holder(self) -> str | None:
        """Who holds the lock now (without taking it), or None; None too where this cannot be told
        (no ``fcntl``, no lock file, or a lock file this user cannot open)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return None
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return self._holder()
        finally:
            os.close(fd)  # also releases the shared lock just taken
        return None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the flock
            self.fd = None


def _pid_alive(pid: int) -> bool:  # pragma: no cover - Windows path only
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- labeling config


def labelstudio_config(class_names: Sequence[str]) -> str:
    """The Label Studio labeling config (XML) for single-label image classification.

    The image comes from the task's ``$image``, vlal's current guess (top classes and
    scores) is shown above the choices from ``$vlal_guess``, and the choice tag is named
    ``label`` (``from_name``) on ``image`` (``to_name``), as in the pre-annotations that
    :meth:`Session.next` writes.
    """
    choices = "\n".join(f"    <Choice value={quoteattr(str(c))}/>" for c in class_names)
    return (
        "<View>\n"
        '  <Header value="vlal guess: $vlal_guess" size="5"/>\n'
        f'  <Choices name="{_LS_FROM}" toName="{_LS_TO}" choice="single-radio" showInline="true" required="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        f'  <Image name="{_LS_TO}" value="$image" maxWidth="400px" zoom="true"/>\n'
        "</View>\n"
    )


# --------------------------------------------------------------------------- init


def _parse_spec(spec: str, what: str) -> tuple[str, dict]:
    from .registry import _parse_params

    m = re.fullmatch(r"\s*([A-Za-z0-9_\-]+)\s*(?:\[(.*)\])?\s*", spec or "")
    if not m:
        raise SessionError(f"bad {what} {spec!r}; use name or name[key=value,...]")
    return m.group(1).lower(), _parse_params(m.group(2) or "", spec)


def _make_tuner(spec: str, class_embeddings: np.ndarray):
    from .tuners import TUNER_ALIASES as _TUNER_ALIASES  # one alias table for bench and sessions
    from .tuners import make_tuner

    name, params = _parse_spec(spec, "tuner")
    name = _TUNER_ALIASES.get(name, name)
    if name not in _feature_tuners():
        raise SessionError(f"unknown tuner {spec!r}; known: {_feature_tuners()} (aliases: {sorted(_TUNER_ALIASES)})")
    try:
        return make_tuner(name, class_embeddings, **params)
    except TypeError as err:
        raise SessionError(f"bad parameters in tuner {spec!r}: {err}") from err


def _feature_tuners() -> list[str]:
    from .tuners import available_tuners

    return available_tuners(feature_only=True)


def _open_npz(path: Path, need: str):
    """``np.load(path)`` as an open ``NpzFile`` (never unpickling), or a one-line SessionError."""
    from ._io import numpy_read_error

    try:
        z = np.load(path, allow_pickle=False)
    except Exception as err:
        raise SessionError(f"{path}: not a readable .npz: {numpy_read_error(err)}") from err
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise SessionError(f"{path} holds one array, not an .npz archive: {need}")
    return z


def _npz_get(z, key: str, path: Path) -> np.ndarray:
    """``z[key]`` read in full, or a one-line SessionError (object arrays, truncated members)."""
    from ._io import numpy_read_error

    try:
        return np.asarray(z[key])
    except Exception as err:
        raise SessionError(f"{path}: {key}: {numpy_read_error(err)}") from err


def init_session(
    path,
    features_file,
    *,
    strategy: str = "cec",
    tuner: str = DEFAULT_SESSION_TUNER,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    heldout="auto",
) -> Path:
    """Create a session folder from an embedding/feature file (as ``vlal embed`` writes).

    Parameters
    ----------
    path : path
        The session folder to create; must not exist or be empty.
    features_file : path
        ``.npz`` with ``pool_features`` (n, d) and ``text_features`` (K, d) (the zero-shot
        class embeddings of paper Eq. 1); ``pool_paths`` (n,) and ``class_names`` (K,) when
        known (without paths, images are named ``row-<i>``). ``pool_labels`` is ignored:
        the labels come from the annotators.
    strategy : str, default "cec"
        Any :func:`vlal.make_strategy` name, with parameters: ``"cec[k=10,alpha=0.05]"``.
    tuner : str, default "anchored"
        A feature-space tuner of :mod:`vlal.tuners` (``vlal.tuners.available_tuners(feature_only=True)``:
        ``anchored``, ``coop-shared``, ``kgcoop``, ``tip-adapter``, ``tip-adapter-f``, ``clap``,
        ``free``, ``zero-shot``) with optional parameters, e.g. ``"free[max_iter=50]"``; re-fitted
        from zero-shot after every import. ``feature`` (= ``free``) and ``zeroshot`` are accepted
        as older names.
    seed : int, default 0
        The strategy of round r gets ``random_state`` derived from ``(seed, r)``, so a batch
        is the same if ``next`` is run again after a crash.
    class_names : sequence of str, optional
        Supplies the class names (K of them, distinct, in row order of ``text_features``), or renames
        the file's; a name of the file given at another position is an error (:class:`SessionError`:
        it would pair that name with another class's embedding).
    heldout : "auto", None or path, default "auto"
        A labeled split to report accuracy on after each round: ``"auto"`` uses
        ``test_features`` / ``test_labels`` of ``features_file`` when present; a path
        names another ``.npz`` with those keys; None: no held-out accuracy.

    Returns
    -------
    Path
        The session folder.

    Raises
    ------
    SessionError
        The folder exists and is not empty, missing keys, shapes or class names that
        disagree, an unknown strategy or tuner.
    """
    from .registry import make_strategy

    folder = Path(path)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise SessionError(f"{folder} already exists and is not an empty folder; choose a new session folder")
    src = Path(features_file)
    if not src.is_file():
        raise SessionError(f"no feature file at {src}")
    with _open_npz(src, "a session needs the .npz that `vlal embed` writes (pool_features, text_features, "
                        "paths, ...)") as z:
        files = set(z.files)
        for key in ("pool_features", "text_features"):
            if key not in files:
                hint = " (the zero-shot class embeddings; write the file with `vlal embed ... --class-names FILE`)" \
                    if key == "text_features" else ""
                raise SessionError(f"{src} has no {key!r}{hint}; it has {sorted(files)}")
        feats = check_features(_npz_get(z, "pool_features", src), "pool_features").astype(np.float32)
        text = l2_normalize(check_features(_npz_get(z, "text_features", src), "text_features")).astype(np.float32)
        paths = [str(p) for p in _npz_get(z, "pool_paths", src)] if "pool_paths" in files else None
        names = [str(c) for c in _npz_get(z, "class_names", src)] if "class_names" in files else None
        test = None
        if heldout == "auto" and {"test_features", "test_labels"} <= files:
            test = (_npz_get(z, "test_features", src), _npz_get(z, "test_labels", src), f"{src} (test split)")
    if class_names is not None:
        given = [str(c) for c in class_names]
        if names is not None:
            # the file's class_names follow the rows of its text_features: a name of the file given at
            # another position would pair it with another class's embedding (new names are a renaming)
            # compared without case and surrounding blanks: 'Dog' for the file's 'dog' at another position
            # would bind the name to another class all the same
            at = {c.strip().casefold(): k for k, c in enumerate(names)}
            moved = [(k, c) for k, c in enumerate(given) if c.strip().casefold() in at and at[c.strip().casefold()] != k]
            if moved:
                k, c = moved[0]
                raise SessionError(
                    f"class name {c!r} is given at position {k} but is class {at[c.strip().casefold()]} in {src} "
                    "(its class_names "
                    "name the rows of its text_features, in that order); give the names in the file's order, "
                    "or leave --classes out (the file's names are used)")
        names = given
    n, d = feats.shape
    n_classes = text.shape[0]
    if text.shape[1] != d:
        raise SessionError(f"text_features has d={text.shape[1]} but pool_features has d={d}")
    if names is None:
        raise SessionError(f"{src} has no class_names; give them (one per line) with --classes")
    if len(names) != n_classes:
        raise SessionError(f"{len(names)} class names for {n_classes} rows of text_features")
    if len(set(names)) != n_classes or any(not c.strip() for c in names):
        raise SessionError("class names must be distinct and non-empty")
    if paths is None:
        warn_caller(f"{src} has no pool_paths: the batch files will name rows ('row-0', ...) instead of images, and "
                    "Label Studio cannot show them; write the file with `vlal embed` (it stores the paths), or "
                    "label from the CSV by row")
        paths = [f"row-{i}" for i in range(n)]
    else:
        if len(paths) != n:
            raise SessionError(f"pool_paths has {len(paths)} entries but pool_features has {n} rows")
        paths = [p if p.startswith(("http://", "https://", "s3://", "gs://")) else os.path.abspath(p) for p in paths]
        if len(set(paths)) != n:
            raise SessionError("pool_paths has duplicated images")
    if heldout not in ("auto", None):
        hp = Path(heldout)
        if not hp.is_file():
            raise SessionError(f"no held-out file at {hp}")
        with _open_npz(hp, "the held-out split must be an .npz with test_features and test_labels") as h:
            for fk, lk in (("test_features", "test_labels"), ("pool_features", "pool_labels"),
                           ("features", "labels")):
                if fk in h.files and lk in h.files:
                    break
            else:
                raise SessionError(f"{hp} needs test_features and test_labels (or pool_features and pool_labels, "
                                   f"as `vlal embed` writes for a folder of class sub-folders); it has {h.files}")
            hl = _npz_get(h, lk, hp)
            if "class_names" in h.files:  # its own class order: map to the session's by name
                own = [str(c) for c in _npz_get(h, "class_names", hp)]
                unknown = sorted(set(own) - set(names or []))
                if unknown:
                    raise SessionError(f"{hp} has classes {unknown} that the session does not know ({names})")
                try:
                    hl = integer_class_ids(hl, f"{hp}: {lk}")
                except VlalInputError as err:
                    raise SessionError(str(err)) from None
                if hl.ndim != 1 or (hl.size and (hl.min() < 0 or hl.max() >= len(own))):
                    raise SessionError(f"{hp}: {lk} must be 1-D class ids in [0, {len(own)}) (its class_names)")
                hl = np.asarray([names.index(c) for c in own], dtype=np.int64)[hl]
            test = (_npz_get(h, fk, hp), hl, str(hp.resolve()))
    arrays = {"pool_features": feats, "pool_paths": np.asarray(paths), "text_features": text,
              "class_names": np.asarray(names)}
    if test is not None:
        tf = check_features(test[0], "held-out features").astype(np.float32)
        try:
            tl = integer_class_ids(test[1], f"held-out labels of {test[2]}")
        except VlalInputError as err:
            raise SessionError(str(err)) from None
        if tf.shape[1] != d or tl.shape != (tf.shape[0],) or (tl.size and (tl.min() < 0 or tl.max() >= n_classes)):
            raise SessionError(f"held-out split of {test[2]}: need ({tf.shape[0]},) int labels in [0, {n_classes}) and d={d}")
        arrays["heldout_features"], arrays["heldout_labels"] = tf, tl.astype(np.int64)
    try:
        make_strategy(strategy, random_state=0)  # validates the name and parameters now
    except VlalInputError as err:
        raise SessionError(f"--strategy: {err}") from err
    tuner_obj = _make_tuner(tuner, text)
    seed = int(seed)
    if seed < 0:
        raise SessionError(f"seed must be >= 0; got {seed}")

    config = {
        "format": FORMAT, "created": _now(), "source": str(src.resolve()), "n_pool": n, "dim": d,
        "class_names": names, "strategy": strategy, "tuner": tuner, "seed": seed,
        "heldout": None if test is None else {"source": test[2], "n": int(arrays["heldout_labels"].size)},
    }
    acc0 = None
    if test is not None:
        acc0 = _accuracy(tuner_obj, arrays["heldout_features"], arrays["heldout_labels"])
    state = {"format": FORMAT, "seq": 0, "labeled": [], "labels": [], "open_batch": None, "model_file": None,
             "rounds": [{"round": 0, "closed": _now(), "n_labeled": 0, "heldout_accuracy": acc0,
                         "note": "zero-shot (no labels)"}]}
    # Build in a temporary sibling folder and rename it into place: a crash leaves no half session.
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.init-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "batches").mkdir(parents=True)
    write_bytes_atomic(tmp / "pool.npz", _npz_bytes(**arrays))
    write_bytes_atomic(tmp / "labelstudio.xml", labelstudio_config(names).encode())
    write_bytes_atomic(tmp / "session.json", _json_bytes(config))
    write_bytes_atomic(tmp / "state.json", _json_bytes(state))
    write_bytes_atomic(tmp / "journal.jsonl", (json.dumps({"seq": 0, "op": "init", "phase": "commit", "at": _now()}) + "\n").encode())
    if folder.exists():
        folder.rmdir()  # empty (checked above)
    os.replace(tmp, folder)
    _fsync_dir(folder.parent)
    return folder


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(text: str) -> str:
    """A text cell of a CSV that people open in spreadsheets: a leading ``'`` keeps a value that starts
    like a formula (``=``, ``+``, ``-``, ``@``, tab, CR) from being run as one (OWASP, "CSV injection")."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_uncell(text: str) -> str:
    """Inverse of :func:`_csv_cell` for cells read back from a CSV import."""
    return text[1:] if text.startswith("'") and text[1:].startswith(_FORMULA_START) else text


def _accuracy(model, features, labels) -> float:
    """Held-out accuracy in percent, the convention of the loop and the bench."""
    return 100.0 * float(np.mean(np.asarray(model.predict_proba(features)).argmax(axis=1) == labels))


# --------------------------------------------------------------------------- session


def open_session(path, *, command: str = "python", read_only: bool = False) -> "Session":
    """Open (lock, recover) an existing session; use as a context manager to release the lock.

    With ``read_only=True`` the session is read without the lock and without recovery (the
    last committed state: ``state.json`` is replaced atomically), so it works while another
    process uses the session and on a folder this user cannot write; it cannot be changed
    (``next``, ``import_labels``, ``discard_batch`` raise :class:`SessionError`), and
    ``pending`` tells whether a change is in progress or was interrupted.

    Raises
    ------
    SessionError
        Not a session folder.
    SessionLockedError
        Another live process uses the session (not with ``read_only``).
    """
    return Session(path, command=command, read_only=read_only)


class Session:
    """An open session folder (see the module docstring for its files).

    Opening takes the lock and finishes or rolls back a change that a crash interrupted.
    Use :func:`open_session` (or ``Session(path)``) as a context manager.

    Attributes
    ----------
    path : Path
    config : dict
        ``session.json``: ``class_names``, ``strategy``, ``tuner``, ``seed``, ...
    state : dict
        ``state.json``: ``labeled`` (pool positions), ``labels`` (class ids), ``rounds``,
        ``open_batch``.
    recovered : str or None
        What opening did about an interrupted change (``"rolled back ..."`` /
        ``"completed ..."``), None when there was none (always None when read-only).
    read_only : bool
        Opened without the lock (:func:`open_session`); changes raise :class:`SessionError`.
    pending : bool
        Read-only only: a change was begun and not finished (in progress in another process, or
        interrupted; the next command that takes the lock completes or rolls it back).
    busy : str or None
        Read-only only: the command holding the lock when the session was opened, if any.
    """

    def __init__(self, path, *, command: str = "python", read_only: bool = False):
        self.path = Path(path)
        if not (self.path / "session.json").is_file() or not (self.path / "state.json").is_file():
            raise SessionError(f"{self.path} is not a vlal session folder (create one with `vlal session init`)")
        self.read_only = bool(read_only)
        self.pending = False
        self.busy = None
        self._lock = _Lock(self.path, command)
        if not self.read_only:
            self._lock.acquire()
        try:
            try:
                self.config = json.loads((self.path / "session.json").read_text())
            except ValueError as err:
                raise SessionError(f"{self.path / 'session.json'} is unreadable ({err})") from err
            if not isinstance(self.config, dict) or self.config.get("format") != FORMAT:
                fmt = self.config.get("format") if isinstance(self.config, dict) else None
                raise SessionError(f"{self.path}: unsupported session format {fmt!r}")
            names = self.config.get("class_names")
            if not isinstance(names, list) or not names or not all(isinstance(c, str) for c in names):
                raise SessionError(f"{self.path / 'session.json'}: class_names must be a non-empty list of strings")
            self.state = self._read_state()
            if self.read_only:
                self.busy = self._lock.holder()
                self.pending = bool(self._unfinished())
                self.recovered = None
            else:
                self.recovered = self._recover()
            self._pool = None
            self._model = None
        except BaseException:
            self._lock.release()
            raise

    # ------------------------------------------------------------------ context / basics

    def close(self) -> None:
        """Release the lock (the state on disk is always current)."""
        self._lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def class_names(self) -> list[str]:
        """The session's class names, in label order."""
        return list(self.config["class_names"])

    @property
    def pool(self) -> dict[str, np.ndarray]:
        """``pool.npz`` (loaded once): pool_features, pool_paths, text_features, heldout_*."""
        if self._pool is None:
            path = self.path / "pool.npz"
            try:
                with np.load(path, allow_pickle=False) as z:
                    pool = {k: z[k] for k in z.files}
            except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
                raise SessionError(f"{path} is unreadable ({err}); it never changes after `vlal session init`, "
                                   "so restore it from a backup or init the session again") from err
            missing = {"pool_features", "pool_paths", "text_features"} - set(pool)
            if missing:
                raise SessionError(f"{path} lacks {sorted(missing)}; it was not written by `vlal session init`")
            n, k = pool["pool_features"].shape[0], len(self.config["class_names"])
            if pool["pool_paths"].shape[0] != n or pool["text_features"].shape[0] != k:
                raise SessionError(f"{path} does not match the session: {n} pool features, "
                                   f"{pool['pool_paths'].shape[0]} paths, {pool['text_features'].shape[0]} class "
                                   f"embeddings for {k} class_names in session.json")
            if any(not 0 <= i < n for i in self.state["labeled"]):
                raise SessionError(f"{self.path / 'state.json'}: labeled holds pool positions outside [0, {n})")
            self._pool = pool
        return self._pool

    def _read_state(self) -> dict:
        try:
            state = json.loads((self.path / "state.json").read_text())
        except ValueError as err:  # cannot happen with atomic replaces; say so clearly if it does
            raise SessionError(f"{self.path / 'state.json'} is unreadable ({err})") from err
        self._check_state(state)
        return state

    def _check_state(self, state) -> None:
        """Refuse a ``state.json`` that vlal cannot have written (edited or corrupted by hand)."""
        where = self.path / "state.json"
        if not isinstance(state, dict) or not {"seq", "labeled", "labels", "rounds"} <= set(state):
            raise SessionError(f"{where}: not a session state (needs seq, labeled, labels, rounds)")
        labeled, labels, k = state["labeled"], state["labels"], len(self.config["class_names"])

        if not is_json_ints(labeled) or not is_json_ints(labels) or len(labeled) != len(labels):
            raise SessionError(f"{where}: labeled and labels must be lists of integers of one length")
        if len(set(labeled)) != len(labeled) or any(i < 0 for i in labeled):
            raise SessionError(f"{where}: labeled holds a repeated or negative pool position")
        if any(not 0 <= c < k for c in labels):
            raise SessionError(f"{where}: labels holds class ids outside [0, {k}) ({k} class_names)")
        files = [state.get("model_file")] + [f for r in state["rounds"] for f in (r.get("files") or {}).values()]
        if state.get("open_batch"):
            files += list((state["open_batch"].get("files") or {}).values())
        for rel in files:
            if rel is not None:
                self._owned(rel, where)

    def _owned(self, rel, source) -> Path:
        """``self.path / rel`` for a file a change of the session writes; anything else (an absolute
        path, ``..``, another name) is refused: ``source`` was edited or corrupted."""
        if not isinstance(rel, str) or not _OWNED_FILE.fullmatch(rel):
            raise SessionError(f"{source} names {rel!r} as a file of the session, but a session only writes "
                               "model-RRR.npz and batches/round-RRR.{csv,labelstudio.json}; the file was edited "
                               "or corrupted (nothing was deleted)")
        return self.path / rel

    # ------------------------------------------------------------------ journal

    def _unfinished(self) -> list[dict]:
        """The journal's ``begin`` entries without a ``commit`` or ``rollback`` (changes in progress
        or interrupted)."""
        entries = self._journal_entries()
        done = {e.get("txn") for e in entries if e.get("phase") in ("commit", "rollback")}
        return [e for e in entries if e.get("phase") == "begin" and e.get("txn") not in done]

    def _journal_entries(self) -> list[dict]:
        p = self.path / "journal.jsonl"
        if not p.exists():
            return []
        out = []
        for line in p.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # a line torn by a kill while it was appended
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out

    def _journal(self, entry: dict) -> None:
        if self.read_only:  # every change journals first: nothing is written
            raise SessionError(f"session {self.path} was opened read-only (open_session(..., read_only=True)); "
                               "open it without read_only to change it")
        p = self.path / "journal.jsonl"
        entry = {**entry, "at": _now(), "pid": os.getpid()}
        fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            prefix = b""
            size = os.fstat(fd).st_size
            if size:
                with open(p, "rb") as fh:
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":
                        prefix = b"\n"  # close a torn line first
            os.write(fd, prefix + (json.dumps(entry) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def _recover(self) -> str | None:
        """Finish or roll back the last change if a crash interrupted it."""
        for tmp in self.path.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        for tmp in (self.path / "batches").glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        pending = self._unfinished()
        for e in pending:
            if not is_json_ints([e.get("seq")]) or not isinstance(e.get("op"), str):
                raise SessionError(f"{self.path / 'journal.jsonl'}: an unfinished change without an integer seq and "
                                   "an op; the journal was edited or corrupted (nothing was deleted)")
        msg = None
        seq = self.state["seq"]
        for e in pending:
            if e["seq"] <= seq:  # state.json was replaced: the change is complete
                self._journal({"txn": e.get("txn"), "seq": e["seq"], "op": e["op"], "phase": "commit", "recovered": True})
                msg = f"completed the interrupted {e['op']} (state {e['seq']})"
            else:  # state.json still the old one: delete what the change wrote
                keep = self._referenced_files()
                writes = e.get("writes", [])
                writes = writes if isinstance(writes, list) else [writes]
                paths = [self._owned(rel, self.path / "journal.jsonl") for rel in writes]  # all checked before any delete
                for rel, path in zip(writes, paths):
                    if rel not in keep:
                        path.unlink(missing_ok=True)
                self._journal({"txn": e.get("txn"), "seq": e["seq"], "op": e["op"], "phase": "rollback"})
                msg = f"rolled back the interrupted {e['op']} (nothing of it was applied)"
        # model caches of other rounds are dead weight (e.g. a crash right after a commit)
        keep = self._referenced_files()
        for m in self.path.glob("model-*.npz"):
            if m.name not in keep:
                m.unlink(missing_ok=True)
        return msg

    def _referenced_files(self) -> set[str]:
        out = set()
        if self.state.get("model_file"):
            out.add(self.state["model_file"])
        for r in self.state["rounds"]:
            out.update(r.get("files", {}).values())
        b = self.state.get("open_batch")
        if b:
            out.update(b["files"].values())
        return out

    @contextlib.contextmanager
    def _change(self, op: str, writes: Sequence[str], **info) -> Iterator[dict]:
        """Journal ``begin`` -> caller writes ``writes`` and fills a new state -> commit."""
        seq = self.state["seq"] + 1
        txn = f"{seq}-{op}-{os.getpid()}-{time.time_ns()}"
        self._journal({"txn": txn, "seq": seq, "op": op, "phase": "begin", "writes": list(writes), **info})
        new_state = json.loads(json.dumps(self.state))
        new_state["seq"] = seq
        try:
            yield new_state
        except BaseException:
            keep = self._referenced_files()
            for rel in writes:
                if rel not in keep:
                    (self.path / rel).unlink(missing_ok=True)
            self._journal({"txn": txn, "seq": seq, "op": op, "phase": "rollback"})
            raise
        write_bytes_atomic(self.path / "state.json", _json_bytes(new_state))  # the commit point
        old = self.state
        self.state = new_state
        self._journal({"txn": txn, "seq": seq, "op": op, "phase": "commit"})
        if old.get("model_file") and old["model_file"] != new_state.get("model_file"):
            self._owned(old["model_file"], self.path / "state.json").unlink(missing_ok=True)

    # ------------------------------------------------------------------ model

    def model(self):
        """The current tuner: zero-shot before any import, else fitted on all labels so far."""
        if self._model is None:
            tuner = _make_tuner(self.config["tuner"], self.pool["text_features"])
            mf = self.state.get("model_file")
            loaded = False
            if mf and hasattr(tuner, "initial_embeddings"):
                try:
                    with np.load(self._owned(mf, self.path / "state.json"), allow_pickle=False) as z:
                        w = z["class_embeddings"]
                        ok = w.shape == tuner.class_embeddings.shape and int(z["n_labeled"]) == len(self.state["labeled"])
                    if ok:
                        tuner.class_embeddings = w.astype(np.float32)
                        loaded = True
                except (OSError, KeyError, ValueError):
                    loaded = False
            if not loaded and self.state["labeled"]:
                self._fit(tuner, self.state["labeled"], self.state["labels"])
            self._model = tuner
        return self._model

    def _fit(self, tuner, labeled, labels) -> float:
        t0 = time.perf_counter()
        idx = np.asarray(labeled, dtype=np.int64)
        tuner.fit(self.pool["pool_features"][idx], np.asarray(labels, dtype=np.int64))
        return time.perf_counter() - t0

    # ------------------------------------------------------------------ next

    def _image_urls(self, idx: np.ndarray, ls_root, url_prefix) -> list[str]:
        paths = [str(self.pool["pool_paths"][i]) for i in idx]
        if url_prefix is None and ls_root is None:
            local = [p for p in self.pool["pool_paths"] if os.path.isabs(str(p))]
            if not local:
                return paths
            # the parent of the folder holding all images: Label Studio wants its local storage (that
            # folder) to be a sub-folder of LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, not the root itself
            ls_root = os.path.dirname(os.path.commonpath([os.path.dirname(str(p)) for p in local]))
        out = []
        for p in paths:
            if p.startswith(("http://", "https://", "s3://", "gs://")):
                out.append(p)
                continue
            base = ls_root if ls_root is not None else os.path.dirname(p)
            rel = os.path.relpath(p, base).replace(os.sep, "/")
            if rel.startswith(".."):
                raise SessionError(f"image {p} is outside --ls-root {ls_root}")
            if url_prefix is not None:
                out.append(url_prefix.rstrip("/") + "/" + rel)
            else:
                from urllib.parse import quote

                out.append("/data/local-files/?d=" + quote(rel))
        return out

    def next(self, budget: int, *, ls_root=None, url_prefix: str | None = None, top_k: int = 3) -> dict:
        """Query ``budget`` images with the session's strategy and write the batch files.

        Parameters
        ----------
        budget : int
            Images to query, ``1 <= budget <=`` unlabeled images.
        ls_root : path, optional
            Label Studio's ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``: task URLs are
            ``/data/local-files/?d=<path relative to it>``. Default: the parent of the
            deepest folder that holds all pool images (Label Studio wants the local storage,
            that folder, to be a sub-folder of the document root).
        url_prefix : str, optional
            Instead, serve images from ``url_prefix/<relative path>`` (e.g. a static web server).
        top_k : int, default 3
            Classes of the current model shown with each image (pre-annotation: the top one).

        Returns
        -------
        dict
            The open batch (a copy): ``round``, ``indices``, ``files`` (``csv``, ``labelstudio``:
            absolute paths), ``select_seconds``.

        Raises
        ------
        SessionError
            A batch is already waiting for labels, bad ``budget``.
        BudgetExceededError
            ``budget`` exceeds the unlabeled images.
        """
        from .registry import make_strategy

        b = self.state.get("open_batch")
        if b:
            raise SessionError(
                f"round {b['round']} ({len(b['indices'])} images, {b['files']['labelstudio']}) is waiting for "
                "labels: import them first (`vlal session import`), or drop the batch (`vlal session discard`; "
                "its images stay in the pool, and the next query of the same round picks the same batch)"
            )
        if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
            raise SessionError(f"budget must be a positive int; got {budget!r}")
        top_k = max(1, min(int(top_k), len(self.class_names)))
        r = len(self.state["rounds"])  # round 0 is the zero-shot record
        seed = int(np.random.SeedSequence([self.config["seed"], r]).generate_state(1)[0] % (2**31 - 1))
        strat = make_strategy(self.config["strategy"], random_state=seed)
        model = self.model()
        feats = self.pool["pool_features"]
        probs = np.asarray(model.predict_proba(feats))
        t0 = time.perf_counter()
        idx = strat.select(feats, probs, int(budget), labeled=np.asarray(self.state["labeled"], dtype=np.int64),
                           labels=np.asarray(self.state["labels"], dtype=np.int64), model=model)
        sel = time.perf_counter() - t0
        urls = self._image_urls(idx, ls_root, url_prefix)
        names = self.class_names
        top = np.argsort(-probs[idx], axis=1, kind="stable")[:, :top_k]
        files = {"csv": f"batches/round-{r:03d}.csv", "labelstudio": f"batches/round-{r:03d}.labelstudio.json"}
        with self._change("next", list(files.values()), round=r) as new:
            self._write_batch_files(files, r, idx, urls, probs, top, names)
            new["open_batch"] = {
                "round": r, "opened": _now(), "indices": [int(i) for i in idx], "urls": urls,
                "strategy": self.config["strategy"], "random_state": seed, "select_seconds": round(sel, 6),
                "files": files,
            }
        return self._batch_view(self.state["open_batch"])

    def _batch_view(self, batch: dict) -> dict:
        """A copy of ``batch`` for the caller (the session's own state is never handed out), its
        ``files`` as absolute paths."""
        out = json.loads(json.dumps(batch))
        out["files"] = {k: str((self.path / v).resolve()) for k, v in out["files"].items()}
        return out

    def _write_batch_files(self, files, r, idx, urls, probs, top, names) -> None:
        buf = io.StringIO()
        w = csv.writer(buf)
        n_top = top.shape[1]  # guesses shown per image
        w.writerow(["image", "label", "pool_index", "url"] + [f"{a}_{j + 1}" for j in range(n_top) for a in ("guess", "score")])
        tasks = []
        for row, (i, url) in enumerate(zip(idx, urls)):
            path = str(self.pool["pool_paths"][i])
            guesses = [(names[c], float(probs[i, c])) for c in top[row]]
            w.writerow([_csv_cell(path), "", int(i), _csv_cell(url)]
                       + [x for g, s in guesses for x in (_csv_cell(g), f"{s:.4f}")])
            tasks.append({
                "data": {"image": url, "vlal_path": path, "vlal_index": int(i), "vlal_round": r,
                         "vlal_guess": ", ".join(f"{g} {s:.2f}" for g, s in guesses)},
                "predictions": [{
                    "model_version": "vlal",  # one version for all rounds: select it once in the project
                    "score": guesses[0][1],
                    "result": [{"from_name": _LS_FROM, "to_name": _LS_TO, "type": "choices",
                                "value": {"choices": [guesses[0][0]]}}],
                }],
            })
        write_bytes_atomic(self.path / files["csv"], buf.getvalue().encode())
        write_bytes_atomic(self.path / files["labelstudio"], _json_bytes(tasks))

    # ------------------------------------------------------------------ import

    def _read_labels(self, path: Path) -> list[tuple]:
        """``[(row description, image key, label or None (skipped), skip reason, pool_index)]`` from a
        file (``pool_index``: the text of a CSV's column; None when absent or empty, and for JSON)."""
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as err:
            raise SessionError(f"{path}: not UTF-8 text (byte {err.start}); expected a Label Studio JSON export or a "
                               "CSV image,label saved as UTF-8") from err
        rows = []
        if path.suffix.lower() == ".csv":
            reader = csv.DictReader(io.StringIO(text))
            fields = [f.strip().lower() for f in (reader.fieldnames or [])]
            if "image" not in fields or "label" not in fields:
                raise SessionError(f"{path}: a CSV import needs the columns image,label; "
                                   + (f"it has {reader.fieldnames}" if reader.fieldnames else "the file is empty"))
            twice = sorted({f for f in fields if fields.count(f) > 1 and f})
            if twice:  # csv.DictReader keeps the last of equal names: a column would silently win
                raise SessionError(f"{path}: the header names the column(s) {twice} more than once "
                                   f"({reader.fieldnames}); keep one of each")
            for n, rec in enumerate(reader, start=2):
                extra = rec.pop(None, None) or []  # cells beyond the header's columns
                if any((c or "").strip() for c in extra):
                    raise SessionError(f"{path}: line {n} has {len(fields) + len(extra)} cells but the header "
                                       f"{len(fields)} columns ({reader.fieldnames}); nothing applied")
                rec = {(k or "").strip().lower(): _csv_uncell((v or "").strip()) for k, v in rec.items()}
                if not any(rec.values()):  # an empty row (',,' as spreadsheets write them): nothing to import
                    continue
                lab = rec["label"] or None
                # the batch CSV's pool_index, when kept, must agree with the image (an edited or shifted row)
                rows.append((f"line {n}", rec["image"], lab, "" if lab else "empty label", rec.get("pool_index") or None))
            return rows
        try:
            data = json.loads(text)
        except ValueError as err:
            raise SessionError(f"{path}: not JSON ({err}); expected a Label Studio JSON export (.json) or a CSV "
                               "(.csv, comma-separated; other suffixes are read as JSON)") from err
        if isinstance(data, dict):
            data = [data]
        if not isinstance(data, list):
            raise SessionError(f"{path}: expected a list of Label Studio tasks")
        flat = [t for t in data if isinstance(t, dict) and "data" not in t and "annotations" not in t]
        if data and len(flat) == len(data) and any(_LS_FROM in t or _LS_TO in t for t in flat):
            raise SessionError(f"{path}: this looks like Label Studio's JSON-MIN export (flat records, no 'data' and "
                               "'annotations'); export the project as JSON (or CSV) instead")
        for n, task in enumerate(data):
            where = f"task {n + 1}" + (f" (id {task['id']})" if isinstance(task, dict) and "id" in task else "")
            if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
                rows.append((where, "", None, "bad-task"))
                continue
            d = task["data"]
            key = str(d.get("vlal_path") or d.get(_LS_TO) or "")
            anns = [a for a in task.get("annotations") or [] if isinstance(a, dict)]
            live = [a for a in anns if not a.get("was_cancelled")]
            if not anns:
                rows.append((where, key, None, "no annotation"))
                continue
            if not live:
                rows.append((where, key, None, "skipped in Label Studio"))
                continue
            labels, others = set(), set()
            for a in live:
                for res in a.get("result") or []:
                    if not isinstance(res, dict):
                        continue
                    if res.get("type") == "choices" or "choices" in (res.get("value") or {}):
                        if res.get("from_name", _LS_FROM) != _LS_FROM:  # another control of the config
                            others.add(str(res.get("from_name")))
                            continue
                        chosen = (res.get("value") or {}).get("choices") or []
                        labels.update([chosen] if isinstance(chosen, str) else (str(c) for c in chosen))
            if not labels:
                extra = f" (choices only from {', '.join(sorted(others))}; the class is read from the " \
                        f"'{_LS_FROM}' control)" if others else ""
                rows.append((where, key, None, "annotation without a chosen class" + extra))
            elif len(labels) > 1:
                rows.append((where, key, "\x00".join(sorted(labels)), "conflict"))
            else:
                rows.append((where, key, labels.pop(), ""))
        return [(*row, None) for row in rows]  # a Label Studio task carries no pool_index to cross-check

    def import_labels(self, file, *, allow_skipped: bool = False) -> dict:
        """Apply the labels of the open batch from ``file``, re-fit the tuner, record the round.

        All or nothing: every row is checked first and any problem rejects the whole file
        with one line per bad row. Problems: unknown image (not in the pool), image not
        in the open batch (rows of earlier rounds that repeat the recorded label, or are
        unlabeled, are left out: a whole-project export can be imported every round),
        unknown class, two different labels for one image (in one row's
        annotations or in two rows), skipped / unannotated tasks and batch images missing
        from the file (both allowed with ``allow_skipped``: those images return to the
        pool, unlabeled, and the round closes without them).

        Parameters
        ----------
        file : path
            A Label Studio JSON export (``[{"data": {...}, "annotations": [...]}]``) or a
            CSV with the columns ``image`` and ``label`` (class names; the batch CSV that
            :meth:`next` wrote, with its ``label`` column filled in, works as is). Images
            are matched by their pool path, their task URL, or their file name when unique
            in the batch.
        allow_skipped : bool, default False

        Returns
        -------
        dict
            The round record: ``round``, ``picks``, ``labels`` (class names), ``skipped``,
            ``n_labeled``, ``fit_seconds``, ``heldout_accuracy`` (percent; None without a held-out split).

        Raises
        ------
        ImportRejectedError
            Any bad row (nothing is applied).
        SessionError
            No batch is waiting for labels; the file is unreadable.
        """
        path = Path(file)
        if not path.is_file():
            raise SessionError(f"no such file: {path}")
        batch = self.state.get("open_batch")
        if not batch:
            last = self.state["rounds"][-1]
            extra = f" (round {last['round']} was imported from {last.get('source')})" if last.get("source") else ""
            raise SessionError(f"no batch is waiting for labels{extra}; run `vlal session next` first")
        rows = self._read_labels(path)
        names = self.class_names
        cls = {c: j for j, c in enumerate(names)}
        pool_paths = [str(p) for p in self.pool["pool_paths"]]
        by_path = {p: i for i, p in enumerate(pool_paths)}
        in_batch = {int(i): pos for pos, i in enumerate(batch["indices"])}
        by_url = {u: int(i) for u, i in zip(batch["urls"], batch["indices"])}
        base = {}
        for i in batch["indices"]:
            base.setdefault(os.path.basename(pool_paths[i]), []).append(int(i))

        def resolve(key: str):
            if key in by_path:
                return by_path[key]
            if key in by_url:
                return by_url[key]
            if key and not key.startswith(("http://", "https://", "/data/")) and os.path.abspath(key) in by_path:
                return by_path[os.path.abspath(key)]
            hit = base.get(os.path.basename(key.split("?d=")[-1]))
            return hit[0] if hit and len(hit) == 1 else None

        problems: list[str] = []
        got: dict[int, tuple[int, str]] = {}  # pool index -> (class id, row)
        skipped: dict[int, str] = {}
        seen: set[int] = set()
        old_labels = dict(zip(self.state["labeled"], self.state["labels"]))
        already = 0
        for where, key, lab, why, given in rows:
            if why == "bad-task":
                problems.append(f"{where}: not a Label Studio task (needs a 'data' object)")
                continue
            i = resolve(key)
            if i is None:
                problems.append(f"{where}: unknown image {key!r} (not in the session's pool)")
                continue
            if given is not None and given != str(i):
                problems.append(f"{where}: pool_index {given!r} contradicts image {key!r} (pool index {i}); "
                                "fix the row or leave pool_index empty")
                continue
            if i not in in_batch:
                # A whole-project export also holds the tasks of earlier rounds: the same label again, or
                # an unlabeled (skipped) task, is not a new label and is left out; anything else is an error.
                if lab is None and why != "conflict":
                    continue
                if i in old_labels and why != "conflict" and lab == names[old_labels[i]]:
                    already += 1
                    continue
                state = (f"already labeled {names[old_labels[i]]!r}" if i in old_labels else
                         "not queried in this round, e.g. from a discarded batch: only the open batch's images "
                         "take labels; leave it out of the file, it may be queried again")
                problems.append(f"{where}: image {key!r} is not in the open batch (round {batch['round']}; {state})")
                continue
            seen.add(i)
            if why == "conflict":
                problems.append(f"{where}: image {key!r} has different labels {lab.split(chr(0))}")
                continue
            if lab is None:
                skipped.setdefault(i, f"{where}: image {key!r}: {why}")
                continue
            if lab not in cls:
                shown = names if len(names) <= 20 else names[:20] + ["..."]
                problems.append(f"{where}: image {key!r}: unknown class {lab!r} (classes: {shown})")
                continue
            if i in got and got[i][0] != cls[lab]:
                problems.append(f"{where}: image {key!r} is labeled {lab!r} here but "
                                f"{names[got[i][0]]!r} in {got[i][1]}")
                continue
            got.setdefault(i, (cls[lab], where))
        for i in got:
            skipped.pop(i, None)  # labeled in another row
        for i in batch["indices"]:
            if i not in got and i not in skipped and i not in seen:
                skipped[i] = f"image {pool_paths[i]!r} of the batch is not in {path.name}"
        if skipped and not allow_skipped:
            problems += [f"{m} (unlabeled; use --allow-skipped to return it to the pool)" for m in skipped.values()]
        if problems:
            raise ImportRejectedError(path, problems)
        if not got:
            raise ImportRejectedError(path, ["no image of the open batch is labeled"])

        picks = [int(i) for i in batch["indices"] if i in got]
        new_labels = [got[i][0] for i in picks]
        labeled = list(self.state["labeled"]) + picks
        labels = list(self.state["labels"]) + new_labels
        r = batch["round"]
        tuner = _make_tuner(self.config["tuner"], self.pool["text_features"])
        fit_s = self._fit(tuner, labeled, labels)  # from zero-shot, on all labels (paper Sec. 5)
        acc = None
        if "heldout_features" in self.pool:
            acc = _accuracy(tuner, self.pool["heldout_features"], self.pool["heldout_labels"])
        acc0 = self.state["rounds"][0].get("heldout_accuracy") if self.state["rounds"] else None
        below = acc is not None and acc0 is not None and acc < acc0 - ZERO_SHOT_MARGIN
        model_file = f"model-{r:03d}.npz" if hasattr(tuner, "initial_embeddings") else None
        record = {
            "round": r, "opened": batch["opened"], "closed": _now(), "strategy": batch["strategy"],
            "tuner": self.config["tuner"], "seed": self.config["seed"], "random_state": batch["random_state"],
            "picks": picks, "labels": [names[c] for c in new_labels],
            "skipped": [int(i) for i in batch["indices"] if i not in got],
            "n_labeled": len(labeled), "select_seconds": batch["select_seconds"], "fit_seconds": round(fit_s, 6),
            "heldout_accuracy": acc, "source": str(path.resolve()), "source_sha256": _sha256(path),
            "n_already_labeled_rows": already, "below_zero_shot": bool(below),
            "files": batch["files"],
        }
        writes = [model_file] if model_file else []
        with self._change("import", writes, round=r, source=record["source"], sha256=record["source_sha256"]) as new:
            if model_file:
                write_bytes_atomic(self.path / model_file,
                              _npz_bytes(class_embeddings=tuner.class_embeddings, n_labeled=np.int64(len(labeled))))
            new["labeled"], new["labels"] = labeled, labels
            new["rounds"].append(record)
            new["open_batch"] = None
            new["model_file"] = model_file
        self._model = tuner
        if below:  # the loop's and the benchmark's guard, here too
            warn_caller(f"round {r} ({len(labeled)} labels): held-out accuracy {acc:.2f} % is {acc0 - acc:.2f} points "
                        f"below zero-shot ({acc0:.2f} %), more than {ZERO_SHOT_MARGIN:g}: the tuner "
                        f"({self.config['tuner']}) is damaging the model (docs/labeling.md)", BelowZeroShotWarning)
        return record

    def discard_batch(self) -> dict:
        """Drop the open batch without labels (its images stay in the pool); returns it."""
        b = self.state.get("open_batch")
        if not b:
            raise SessionError("no batch is waiting for labels")
        with self._change("discard", [], round=b["round"]) as new:
            new["open_batch"] = None
        return b

    # ------------------------------------------------------------------ status

    def status(self) -> dict:
        """Rounds, labels per class, classes never labeled, the batch waiting for labels."""
        names = self.class_names
        counts = np.bincount(np.asarray(self.state["labels"], dtype=np.int64), minlength=len(names))
        b = self.state.get("open_batch")
        return {
            "session": str(self.path), "strategy": self.config["strategy"], "tuner": self.config["tuner"],
            "seed": self.config["seed"], "n_pool": self.config["n_pool"], "n_labeled": len(self.state["labeled"]),
            "rounds": [{k: r.get(k) for k in ("round", "n_labeled", "heldout_accuracy", "select_seconds",
                                              "fit_seconds", "closed")}
                       | {"n_picks": len(r.get("picks", [])), "below_zero_shot": bool(r.get("below_zero_shot"))}
                       for r in self.state["rounds"]],
            "labels_per_class": {c: int(n) for c, n in zip(names, counts)},
            "never_labeled": [c for c, n in zip(names, counts) if n == 0],
            "waiting": None if not b else {"round": b["round"], "n_images": len(b["indices"]),
                                            "files": self._batch_view(b)["files"]},
            "recovered": self.recovered,
            "pending": self.pending,
            "busy": self.busy,
        }


def format_status(st: dict) -> str:
    """``Session.status()`` as the text ``vlal session status`` prints."""
    lines = [f"session {st['session']}: strategy {st['strategy']}, tuner {st['tuner']}, seed {st['seed']}",
             f"pool {st['n_pool']} images, {st['n_labeled']} labeled", "",
             "round  picks  labeled  held-out acc  select s  fit s  closed"]
    for r in st["rounds"]:
        acc = "-" if r["heldout_accuracy"] is None else f"{r['heldout_accuracy']:.1f} %"
        acc += " !" if r.get("below_zero_shot") else ""
        sel = "-" if r["select_seconds"] is None else f"{r['select_seconds']:.2f}"
        fit = "-" if r["fit_seconds"] is None else f"{r['fit_seconds']:.2f}"
        lines.append(f"{r['round']:>5}  {r['n_picks']:>5}  {r['n_labeled']:>7}  {acc:>12}  {sel:>8}  {fit:>5}  {r['closed']}")
    if any(r.get("below_zero_shot") for r in st["rounds"]):
        lines += ["", f"! held-out accuracy more than {ZERO_SHOT_MARGIN:g} points below zero-shot (round 0): the tuner "
                  "is damaging the model"]
    lines += ["", "labels per class: " + ", ".join(f"{c} {n}" for c, n in st["labels_per_class"].items())]
    nl = st["never_labeled"]
    lines.append(f"never labeled ({len(nl)}): " + (", ".join(nl) if nl else "none"))
    w = st["waiting"]
    lines.append("waiting for labels: " + ("nothing" if not w else
                 f"round {w['round']}, {w['n_images']} images: {w['files']['labelstudio']}, {w['files']['csv']}"))
    if st.get("recovered"):
        lines.append(f"recovered: {st['recovered']}")
    if st.get("busy"):
        lines.append(f"note: {st['busy']} is running on this session; shown is the last committed state")
    if st.get("pending"):
        lines.append("note: a change is in progress in another command, or was interrupted (the next command "
                     "completes or rolls it back); shown is the last committed state")
    return "\n".join(lines)
