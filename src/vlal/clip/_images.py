"""Image inputs: folders of class sub-folders, lists of paths or PIL images, tensors.

Everything image-like the CLIP adapters accept goes through :func:`as_image_source`,
which returns a sized, indexable :class:`ImageSource`; batches of it come out as
preprocessed float32 tensors ``(b, 3, H, W)``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..exceptions import VlalInputError

__all__ = ["IMAGE_EXTENSIONS", "ImageFolder", "ImageSource", "scan_image_folder", "as_image_source"]

#: File suffixes (lower case) taken as images when scanning folders.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


@dataclass
class ImageFolder:
    """The images of a folder.

    Attributes
    ----------
    root : Path
    paths : list of Path, sorted (by class folder, then file name)
    labels : ndarray (n,) int64, or None when the folder has no class sub-folders
    class_names : list of str (sub-folder names, sorted), or None
    """

    root: Path
    paths: list[Path]
    labels: np.ndarray | None
    class_names: list[str] | None


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def scan_image_folder(root) -> ImageFolder:
    """List ``root/<class>/**/<image>`` (labels = sorted class order), or ``root/<image>`` unlabeled.

    Raises
    ------
    FileNotFoundError
        ``root`` is not a directory.
    vlal.VlalInputError
        No image found.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no image folder at {root}")
    subdirs = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")), key=lambda d: d.name)
    paths: list[Path] = []
    labels: list[int] = []
    names: list[str] = []
    for d in subdirs:
        files = sorted(p for p in d.rglob("*") if _is_image(p))
        if not files:
            continue
        names.append(d.name)
        paths.extend(files)
        labels.extend([len(names) - 1] * len(files))
    if paths:
        return ImageFolder(root, paths, np.asarray(labels, dtype=np.int64), names)
    files = sorted(p for p in root.iterdir() if _is_image(p))
    if not files:
        raise VlalInputError(
            f"no images under {root} (expected class sub-folders of images with suffixes {IMAGE_EXTENSIONS})"
        )
    return ImageFolder(root, files, None, None)


class ImageSource:
    """A sized, indexable sequence of images of one kind, turned into model input by batches.

    ``kind`` is ``"paths"``, ``"pil"`` or ``"tensor"`` (already preprocessed, (n, 3, H, W)).
    """

    def __init__(self, items, kind: str, labels=None, class_names=None):
        self.items = items
        self.kind = kind
        self.labels = labels
        self.class_names = class_names

    def __len__(self) -> int:
        return len(self.items)

    def paths(self) -> list[str] | None:
        """The image paths (``kind == "paths"``), else None."""
        return [str(p) for p in self.items] if self.kind == "paths" else None

    def batch(self, idx: Sequence[int] | slice, preprocess: Callable | None) -> torch.Tensor:
        """Preprocessed float32 tensor ``(b, 3, H, W)`` of the rows ``idx``."""
        if self.kind == "tensor":
            return self.items[idx].float()
        rows = self.items[idx] if isinstance(idx, slice) else [self.items[i] for i in idx]
        if preprocess is None:
            raise VlalInputError("images given as paths or PIL images need the model's preprocess transform")
        return torch.stack([preprocess(_open(r)) for r in rows]).float()

    def batches(self, preprocess: Callable | None, batch_size: int):
        """Preprocessed float32 tensors ``(b, 3, H, W)`` of consecutive rows, ``batch_size`` at a time."""
        for s in range(0, len(self), batch_size):
            yield self.batch(slice(s, s + batch_size), preprocess)

    def fingerprint(self) -> str:
        """SHA-1 identifying the images (paths with size and mtime, or pixel bytes)."""
        h = hashlib.sha1(self.kind.encode())
        if self.kind == "paths":
            for p in self.items:
                st = os.stat(p)
                h.update(f"{os.path.abspath(p)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        elif self.kind == "pil":
            for im in self.items:
                h.update(f"{im.mode}{im.size}".encode())
                h.update(im.tobytes())
        else:
            h.update(str(tuple(self.items.shape)).encode())
            h.update(self.items.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()


def _open(item):
    from PIL import Image

    if isinstance(item, Image.Image):
        return item.convert("RGB")
    try:
        with Image.open(item) as im:
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:  # PIL: UnidentifiedImageError (an OSError), truncated files
        raise VlalInputError(f"cannot read image {item}: {err}; remove or replace it (the pool keeps one "
                             "row per image file)") from err


def _is_pil(x) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - pillow comes with the [clip] extra
        return False
    return isinstance(x, Image.Image)


def as_image_source(images) -> ImageSource:
    """Wrap any accepted image input.

    Parameters
    ----------
    images
        - a folder (str / Path): class sub-folders of images (labels and class names are
          taken from them), or a flat folder of images (unlabeled);
        - a list of image paths, of ``PIL.Image`` objects, or of preprocessed (3, H, W) tensors;
        - a preprocessed tensor or array ``(n, 3, H, W)``;
        - an :class:`ImageSource` (returned as is).

    Raises
    ------
    vlal.VlalInputError
        Anything else (e.g. a 2-D feature matrix where images are needed), empty input,
        mixed kinds in a list.
    FileNotFoundError
        A folder or a listed file does not exist.
    """
    if isinstance(images, ImageSource):
        return images
    if isinstance(images, (str, os.PathLike)):
        p = Path(images)
        if p.is_dir():
            folder = scan_image_folder(p)
            return ImageSource(folder.paths, "paths", folder.labels, folder.class_names)
        if p.is_file():
            return ImageSource([p], "paths")
        raise FileNotFoundError(f"no image or image folder at {p}")
    if isinstance(images, np.ndarray) and images.dtype != object:
        images = torch.from_numpy(np.ascontiguousarray(images))
    if isinstance(images, torch.Tensor):
        if images.ndim == 3:
            images = images.unsqueeze(0)
        if images.ndim != 4 or images.shape[1] != 3:
            raise VlalInputError(
                f"image tensors must have shape (n, 3, H, W) (preprocessed); got {tuple(images.shape)}"
                + (" — this looks like a feature matrix; this tuner needs images" if images.ndim == 2 else "")
            )
        if not images.is_floating_point():  # raw 0-255 pixels are not preprocessed images
            raise VlalInputError(
                f"image tensors must be preprocessed float tensors (resized, scaled and normalised with the model's "
                f"mean / std); got dtype {images.dtype}. Pass PIL images or paths and vlal preprocesses them")
        if not torch.isfinite(images).all():
            bad = int(torch.nonzero(~torch.isfinite(images).flatten(1).all(1))[0, 0])
            raise VlalInputError(f"image tensor {bad} holds NaN or inf")
        return ImageSource(images, "tensor")
    if isinstance(images, (list, tuple)):
        items = list(images)
        if not items:
            raise VlalInputError("no images given (empty list)")
        if all(isinstance(x, (str, os.PathLike)) for x in items):
            missing = [str(x) for x in items if not os.path.isfile(x)]
            if missing:
                raise FileNotFoundError(f"{len(missing)} image file(s) not found, e.g. {missing[0]}")
            return ImageSource([Path(x) for x in items], "paths")
        if all(_is_pil(x) for x in items):
            return ImageSource(items, "pil")
        if all(isinstance(x, (torch.Tensor, np.ndarray)) and np.ndim(x) == 3 for x in items):
            return as_image_source(torch.stack([torch.as_tensor(x) for x in items]))
        raise VlalInputError(
            "a list of images must hold only paths, only PIL images or only (3, H, W) tensors; "
            f"got {sorted({type(x).__name__ for x in items})}"
        )
    raise VlalInputError(
        "images must be a folder, a list of paths / PIL images / (3, H, W) tensors, or an (n, 3, H, W) "
        f"tensor; got {type(images).__name__}"
    )
