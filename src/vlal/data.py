"""Feature datasets for the benchmark: cached CLIP features (.npz) and a synthetic default.

A :class:`FeatureDataset` holds an unlabeled pool (with the oracle's labels), a test
set, and optionally a few labeled "shot" images per class from a disjoint split,
which the zero-shot proxy uses (see :func:`zero_shot_proxy`).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._validation import check_features, check_nonzero_rows, check_positive_int, integer_class_ids, l2_normalize, rng_from
from .exceptions import VlalInputError

__all__ = ["FeatureDataset", "load_features", "make_synthetic", "zero_shot_proxy"]

_REQUIRED = ("pool_features", "pool_labels", "test_features", "test_labels")


@dataclass
class FeatureDataset:
    """Cached image features of one dataset.

    Attributes
    ----------
    name : str
    pool_features : ndarray (n_pool, d)
    pool_labels : ndarray (n_pool,), int64 — the oracle's labels
    test_features : ndarray (n_test, d)
    test_labels : ndarray (n_test,), int64
    shot_features, shot_labels : optional labeled images from a disjoint split
    class_embeddings : optional (K, d) zero-shot text embeddings, when known
    class_names : optional (K,) class names (from ``vlal embed``)
    pool_paths, test_paths : optional image paths of the rows (from ``vlal embed``), the
        inputs of image-level tuners (VPT, MaPLe)
    synthetic : bool — True for the generated default
    """

    name: str
    pool_features: np.ndarray
    pool_labels: np.ndarray
    test_features: np.ndarray
    test_labels: np.ndarray
    shot_features: np.ndarray | None = None
    shot_labels: np.ndarray | None = None
    class_embeddings: np.ndarray | None = None
    synthetic: bool = False
    class_names: np.ndarray | None = None
    pool_paths: np.ndarray | None = None
    test_paths: np.ndarray | None = None

    @property
    def n_classes(self) -> int:
        """Number of classes ``K``: the rows of ``class_embeddings`` when the file has them (as
        :func:`load_features` and :func:`zero_shot_proxy` count them), else the largest label + 1."""
        if self.class_embeddings is not None:
            return int(np.shape(self.class_embeddings)[0])
        return int(max(self.pool_labels.max(), self.test_labels.max())) + 1

    def __post_init__(self):
        check_features(self.pool_features, "pool_features")
        check_features(self.test_features, "test_features")
        for name in ("pool", "test"):
            f, y = getattr(self, f"{name}_features"), getattr(self, f"{name}_labels")
            if y.shape != (f.shape[0],):
                raise VlalInputError(f"{name}_labels has shape {y.shape}; expected ({f.shape[0]},)")
        d = self.pool_features.shape[1]
        if self.test_features.shape[1] != d:
            raise VlalInputError(f"pool_features and test_features have different feature dimensions "
                                 f"(d={d} and d={self.test_features.shape[1]})")
        for key, arr in (("text_features", self.class_embeddings), ("shot_features", self.shot_features)):
            if arr is not None and (np.ndim(arr) != 2 or np.shape(arr)[1] != d):
                raise VlalInputError(f"{key} has shape {np.shape(arr)}; expected (rows, {d}), the width of pool_features")
        # zero rows cannot be normalised (every tuner and strategy would refuse them later, less clearly)
        check_nonzero_rows(self.pool_features, "pool_features")
        check_nonzero_rows(self.test_features, "test_features")


def load_features(path) -> FeatureDataset:
    """Load a dataset from an ``.npz`` with keys ``pool_features``, ``pool_labels``,
    ``test_features``, ``test_labels`` and optionally ``shot_features``, ``shot_labels``,
    ``text_features`` (zero-shot class embeddings), ``class_names``, ``pool_paths`` and
    ``test_paths`` (as written by ``vlal embed``).

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        (:class:`~vlal.VlalInputError`) A required key is missing, shapes disagree, or the
        file is not a readable ``.npz`` (broken zip, truncated, object arrays: never
        unpickled).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no feature file at {path}")
    if path.suffix != ".npz":
        raise VlalInputError(f"{path}: expected an .npz with pool_features, pool_labels, test_features, test_labels")
    try:
        return _read_feature_file(path)
    except VlalInputError as err:
        if str(path) in str(err):
            raise
        raise VlalInputError(f"{path}: {err}") from None  # e.g. NaN rows, shapes: say which file
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        from ._io import numpy_read_error

        why = numpy_read_error(err)
        raise VlalInputError(f"cannot read {path} as a feature .npz: {why}") from err


def _read_feature_file(path: Path) -> FeatureDataset:
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in _REQUIRED if k not in z.files]
        if missing:
            raise VlalInputError(f"{path} lacks keys {missing}; it has {z.files}")
        get = lambda k: z[k] if k in z.files else None  # noqa: E731
        text = get("text_features")
        n_text = None if text is None else int(np.asarray(text).shape[0])
        pool_y = _file_labels(path, "pool_labels", z["pool_labels"], n_text)
        # without text embeddings the classes are those of the pool (the proxy needs a pool image of each)
        n_classes = n_text if n_text is not None else (int(pool_y.max()) + 1 if pool_y.size else 0)
        return FeatureDataset(
            name=path.stem,
            pool_features=z["pool_features"],
            pool_labels=pool_y,
            test_features=z["test_features"],
            test_labels=_file_labels(path, "test_labels", z["test_labels"], n_classes, "pool_labels"),
            shot_features=get("shot_features"),
            shot_labels=None if get("shot_labels") is None else _file_labels(path, "shot_labels", z["shot_labels"],
                                                                               n_classes, "pool_labels"),
            class_embeddings=text,
            class_names=get("class_names"),
            pool_paths=get("pool_paths"),
            test_paths=get("test_paths"),
        )


def _file_labels(path: Path, key: str, y: np.ndarray, n_classes: int | None, against: str = "text_features"):
    """Class ids of ``key`` in a feature file: 1-D integers in ``[0, n_classes)``; errors name file and key."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise VlalInputError(f"{path}: {key} must be 1-D; got shape {y.shape}")
    y = integer_class_ids(y, f"{path}: {key}")  # no silent float -> int cast
    if y.size and y.min() < 0:
        raise VlalInputError(f"{path}: {key} holds the negative class id {int(y.min())} "
                             f"(row {int(np.argmin(y))}); class ids are 0..K-1")
    if y.size and n_classes is not None and y.max() >= n_classes:
        source = (f"text_features has {n_classes} rows (classes)" if against == "text_features"
                  else f"pool_labels has classes 0..{n_classes - 1}")
        raise VlalInputError(f"{path}: {key} holds class {int(y.max())} (row {int(np.argmax(y))}), but {source}")
    return y


def make_synthetic(
    n_pool: int = 2000,
    n_test: int = 2000,
    n_classes: int = 20,
    dim: int = 64,
    n_shots: int = 4,
    imbalance: float = 10.0,
    spread: float = 1.5,
    random_state: int = 0,
) -> FeatureDataset:
    """A small synthetic CLIP-like dataset (the embedded default of ``vlal bench``).

    **Synthetic, not CLIP.** Each class is a few sub-clusters around a random direction on
    the unit sphere of ``R^dim``; features are unit vectors. Class frequencies fall
    geometrically from 1 to ``1/imbalance`` (long tail), and ``n_shots`` images per class
    form a disjoint shot split, so the one-shot prototype zero-shot proxy is a
    miscalibrated classifier: some classes absorb far more predictions than others, as
    CLIP's zero-shot head does.

    Parameters
    ----------
    n_pool, n_test : int
        Rows of the pool and of the test set.
    n_classes : int
    dim : int
        Feature dimension.
    n_shots : int
        Shot images per class.
    imbalance : float
        Ratio of the largest to the smallest class frequency (>= 1).
    spread : float
        Within-class noise scale (larger = harder).
    random_state : int

    Returns
    -------
    FeatureDataset
    """
    for v, nm in ((n_pool, "n_pool"), (n_test, "n_test"), (n_classes, "n_classes"), (dim, "dim"), (n_shots, "n_shots")):
        check_positive_int(v, nm)
    if imbalance < 1:
        raise VlalInputError(f"imbalance must be >= 1; got {imbalance}")
    rng = rng_from(random_state)  # a negative or odd seed: an error naming random_state
    centers = rng.normal(size=(n_classes, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    n_sub = 3
    sub = centers[:, None, :] + 0.6 * rng.normal(size=(n_classes, n_sub, dim)) / np.sqrt(dim) * np.sqrt(dim / 8)
    freq = imbalance ** (-np.arange(n_classes) / max(n_classes - 1, 1))
    freq = rng.permutation(freq / freq.sum())

    def draw(n, balanced=False):
        y = np.repeat(np.arange(n_classes), n) if balanced else rng.choice(n_classes, size=n, p=freq)
        s = rng.integers(0, n_sub, size=y.size)
        x = sub[y, s] + spread * rng.normal(size=(y.size, dim)) / np.sqrt(dim)
        return l2_normalize(x), y.astype(np.int64)

    pool_x, pool_y = draw(n_pool)
    test_x, test_y = draw(n_test)
    shot_x, shot_y = draw(n_shots, balanced=True)
    return FeatureDataset("synthetic", pool_x, pool_y, test_x, test_y, shot_x, shot_y, synthetic=True)


def zero_shot_proxy(dataset: FeatureDataset, random_state=None) -> tuple[np.ndarray, np.ndarray]:
    """Zero-shot class embeddings ``W0`` for a dataset without text embeddings (method.md).

    If the dataset has ``class_embeddings`` (true text embeddings) they are returned and
    the whole pool is kept. Otherwise row ``c`` of ``W0`` is the normalised feature of one
    image of class ``c``, drawn with ``random_state`` from ``shot_features`` when present,
    else from the pool, in which case those ``K`` images are removed from the pool.

    Returns
    -------
    W0 : ndarray (K, d), float32
        Unit-norm class embeddings.
    pool_keep : ndarray (n_pool,), bool
        Pool rows that remain in the pool.

    Raises
    ------
    ValueError
        Some class has no image to draw from.
    """
    keep = np.ones(dataset.pool_features.shape[0], dtype=bool)
    if dataset.class_embeddings is not None:
        return l2_normalize(np.asarray(dataset.class_embeddings), "class_embeddings"), keep
    rng = rng_from(random_state)  # a negative or odd seed: an error naming random_state
    n_classes = dataset.n_classes
    if dataset.shot_features is not None:
        src_x, src_y, from_pool = dataset.shot_features, dataset.shot_labels, False
    else:
        src_x, src_y, from_pool = dataset.pool_features, dataset.pool_labels, True
    rows = []
    for c in range(n_classes):
        cand = np.flatnonzero(src_y == c)
        if cand.size == 0:
            where = "shot_features" if not from_pool else "the pool"
            raise VlalInputError(f"{dataset.name}: class {c} of {n_classes} has no image in {where} to build its "
                                 "zero-shot prototype from (the one-shot proxy needs one image of every class; "
                                 "or store text_features, the real zero-shot class embeddings, in the file)")
        rows.append(int(rng.choice(cand)))
    rows = np.asarray(rows)
    if from_pool:
        keep[rows] = False
    return l2_normalize(np.asarray(src_x[rows]), "prototypes"), keep
