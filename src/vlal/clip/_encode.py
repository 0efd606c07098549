"""Encoding images and class names with a CLIP model, zero-shot probabilities, cached embeddings."""

from __future__ import annotations

import json
import logging
import string
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .._io import savez_atomic
from ..exceptions import VlalInputError
from .._warnings import warn_caller
from .._validation import check_temperature
from ..scoring import _zero_shot_probs
from ._images import as_image_source
from ._loading import ClipModel

__all__ = ["DEFAULT_TEMPLATE", "encode_images", "encode_class_names", "zero_shot_proba", "embed", "prompt_texts"]

log = logging.getLogger(__name__)

#: The hand-written prompt of CLIP zero-shot and of CoOp's initialisation (paper Sec. 3.1).
DEFAULT_TEMPLATE = "a photo of a {}."

#: Version of the cache layout written by :func:`embed`.
CACHE_VERSION = 1


def _check_clip(clip) -> ClipModel:
    if not isinstance(clip, ClipModel):
        raise VlalInputError(f"expected a vlal.clip.ClipModel (from load_clip); got {type(clip).__name__}")
    return clip


def prompt_texts(class_names: Sequence[str], template: str = DEFAULT_TEMPLATE) -> list[str]:
    """``template.format(name)`` per class, underscores in names read as spaces (as CoOp does)."""
    if isinstance(class_names, str):
        raise VlalInputError("class_names must be a sequence of names, not one string")
    names = [str(n).replace("_", " ").strip() for n in class_names]
    if not names or any(not n for n in names):
        raise VlalInputError("class_names must be a non-empty list of non-empty names")
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(str(template)) if f is not None]
        ok = fields == [("", "", None)]  # one bare {}: no name, format spec or conversion
    except ValueError:  # unbalanced braces
        ok = False
    if not isinstance(template, str) or not ok:
        raise VlalInputError(f"template must hold exactly one '{{}}' where the class name goes (write a literal brace "
                             f"as '{{{{' or '}}}}'); got {template!r}")
    seen: dict[str, int] = {}
    for n in names:
        seen[n] = seen.get(n, 0) + 1
    twice = [n for n, c in seen.items() if c > 1]
    if twice:
        warn_caller(f"class names repeat ({', '.join(map(repr, twice[:5]))}): those classes get identical text "
                    "features, so zero-shot cannot tell them apart", UserWarning)
    return [template.format(n) for n in names]


@torch.no_grad()
def encode_images(clip: ClipModel, images, *, batch_size: int = 64, progress: bool = True) -> np.ndarray:
    """L2-normalised CLIP image features.

    Parameters
    ----------
    clip : ClipModel
    images
        A folder (class sub-folders or flat), a list of paths / PIL images / (3, H, W)
        tensors, or a preprocessed tensor (n, 3, H, W); see :func:`vlal.clip.as_image_source`.
    batch_size : int, default 64
    progress : bool, default True
        tqdm bar over batches.

    Returns
    -------
    ndarray (n, d), float32, unit rows.

    Raises
    ------
    vlal.VlalInputError, FileNotFoundError
        Unusable image input.
    """
    from tqdm.auto import tqdm

    clip = _check_clip(clip)
    src = as_image_source(images)
    if src.kind == "tensor" and tuple(src.items.shape[2:]) != tuple(clip.image_size):
        raise VlalInputError(f"preprocessed image tensors must be {tuple(clip.image_size)} pixels for "
                             f"{clip.model_name}; got {tuple(src.items.shape[2:])}")
    out = np.empty((len(src), clip.embed_dim), dtype=np.float32)
    model, dev = clip.model, clip.device
    bar = tqdm(total=len(src), desc="encode images", unit="img", disable=not progress, leave=False)
    for s, batch in zip(range(0, len(src), batch_size), src.batches(clip.preprocess, batch_size)):
        f = model.encode_image(batch.to(dev))
        out[s : s + f.shape[0]] = torch.nn.functional.normalize(f.float(), dim=-1).cpu().numpy()
        bar.update(f.shape[0])
    bar.close()
    return out


@torch.no_grad()
def encode_class_names(
    clip: ClipModel,
    class_names: Sequence[str],
    template: str | Sequence[str] = DEFAULT_TEMPLATE,
    *,
    batch_size: int = 256,
) -> np.ndarray:
    """L2-normalised text features of the class prompts (paper Eq. 1's ``t_i``).

    Parameters
    ----------
    clip : ClipModel
    class_names : sequence of str (K,)
        Underscores are read as spaces.
    template : str or sequence of str, default "a photo of a {}."
        With several templates, the normalised embeddings are averaged per class and
        normalised again (CLIP's prompt ensembling).
    batch_size : int, default 256

    Returns
    -------
    ndarray (K, d), float32, unit rows.
    """
    clip = _check_clip(clip)
    templates = [template] if isinstance(template, str) else list(template)
    if not templates:
        raise VlalInputError("template must be a string or a non-empty list of strings")
    acc = None
    for t in templates:
        texts = prompt_texts(class_names, t)
        parts = []
        for s in range(0, len(texts), batch_size):
            tokens = clip.tokenizer(texts[s : s + batch_size]).to(clip.device)
            parts.append(torch.nn.functional.normalize(clip.model.encode_text(tokens).float(), dim=-1))
        emb = torch.cat(parts)
        acc = emb if acc is None else acc + emb
    return torch.nn.functional.normalize(acc, dim=-1).cpu().numpy().astype(np.float32)


def zero_shot_proba(image_features, text_features, temperature: float = 0.01) -> np.ndarray:
    """CLIP zero-shot probabilities, paper Eq. 1: ``softmax_i(cos(f(x), t_i) / T)``.

    Parameters
    ----------
    image_features : array or tensor (n, d)
        Image features (normalised here).
    text_features : array or tensor (K, d)
        Class text features (normalised here).
    temperature : float, default 0.01
        ``T`` (CLIP's logit scale 100).

    Returns
    -------
    ndarray (n, K), float32; rows sum to 1.

    Raises
    ------
    vlal.VlalInputError
        Shapes that are not (n, d) and (K, d), non-finite values, ``temperature`` not a finite number > 0.
    """
    x, w = (
        v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v)) for v in (image_features, text_features)
    )
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
        raise VlalInputError(
            f"image_features (n, d) and text_features (K, d) must share d; got {tuple(x.shape)} and {tuple(w.shape)}"
        )
    temperature = check_temperature(temperature)
    x, w = x.detach().double().cpu(), w.detach().double().cpu()
    if not (torch.isfinite(x).all() and torch.isfinite(w).all()):
        raise VlalInputError("image_features and text_features must be finite")
    z, t = (torch.nn.functional.normalize(v, dim=-1).numpy() for v in (x, w))
    return _zero_shot_probs(z, t, temperature)  # Eq. 1, float64 logits and softmax


# --------------------------------------------------------------------------- cache


def _meta_arrays(meta: dict) -> dict[str, np.ndarray]:
    return {
        "model_name": np.asarray(meta["model_name"]),
        "pretrained": np.asarray(meta["pretrained"]),
        "image_size": np.asarray(meta["image_size"], dtype=np.int64),
        "image_mean": np.asarray(meta["image_mean"], dtype=np.float64),
        "image_std": np.asarray(meta["image_std"], dtype=np.float64),
        "embed_meta": np.asarray(json.dumps(meta, sort_keys=True)),
    }


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as err:  # unreadable / not an npz: recompute, never crash on a cache
        log.warning("ignoring unreadable embedding cache %s (%s)", path, err)
        return None


def embed(
    clip: ClipModel,
    images,
    out=None,
    *,
    class_names: Sequence[str] | None = None,
    test_images=None,
    template: str = DEFAULT_TEMPLATE,
    batch_size: int = 64,
    progress: bool = True,
    reuse_cache: bool = True,
) -> dict[str, np.ndarray]:
    """Encode a pool (and optionally a test split) and the class names; cache them in an ``.npz``.

    The file has the keys of the benchmark files (``pool_features``, ``pool_labels``,
    ``test_features``, ``test_labels``) plus ``class_names``, ``text_features`` and ``probs``
    (the pool's zero-shot probabilities, :func:`zero_shot_proba`, T = 0.01) when the
    class names are known (given, or the class sub-folders of ``images``), ``pool_paths``
    / ``test_paths`` for path inputs, and what produced it: ``model_name``, ``pretrained``,
    ``image_size``, ``image_mean``, ``image_std`` and ``embed_meta`` (JSON, with image
    fingerprints). With ``reuse_cache``, an existing ``out`` whose model, weights,
    preprocessing and images all match is reused instead of re-encoding (text features are
    recomputed when the class names or the template changed).

    Parameters
    ----------
    clip : ClipModel
    images
        The pool: a folder of class sub-folders (labels from them), a flat folder, a list
        of paths / PIL images, or a preprocessed tensor (n, 3, H, W).
    out : path, optional
        Where to write the ``.npz`` (nothing is written when None).
    class_names : sequence of str, optional
        Overrides the folder names (e.g. readable names for WordNet ids), in label order:
        one per class sub-folder, in the sub-folders' sorted order.
    test_images : optional
        A test split in the same forms; its class folders must match the pool's.
    template : str, default "a photo of a {}."
    batch_size : int, default 64
    progress : bool, default True
    reuse_cache : bool, default True

    Returns
    -------
    dict of str -> ndarray
        What was (or would be) written; features float32 (n, d), unit rows.

    Raises
    ------
    vlal.VlalInputError
        Unusable images, class names that do not match the labels (fewer names than labels;
        for a folder of class sub-folders, another number of names than sub-folders, or the
        sub-folder names in another order).
    """
    clip = _check_clip(clip)
    splits = {"pool": as_image_source(images)}
    if test_images is not None:
        splits["test"] = as_image_source(test_images)
    names = list(class_names) if class_names is not None else splits["pool"].class_names
    folders = splits["pool"].class_names
    if class_names is not None and folders is not None:  # labels are the positions of the sorted sub-folders
        if len(names) != len(folders):
            raise VlalInputError(f"class_names has {len(names)} names but the pool has {len(folders)} class "
                                 f"sub-folders ({', '.join(folders[:5])}{', ...' if len(folders) > 5 else ''}); "
                                 "give one name per sub-folder, in the sub-folders' sorted order")
        if names != folders and sorted(map(str, names)) == sorted(folders):
            raise VlalInputError("class_names are the sub-folder names in another order; labels follow the sorted "
                                 f"sub-folders ({', '.join(folders[:5])}{', ...' if len(folders) > 5 else ''}), so "
                                 "give the names in that order (or omit class_names to use the folder names)")
    if names is not None:
        prompt_texts(names, template)  # validates
        for split, src in splits.items():
            if src.labels is not None and src.labels.max() >= len(names):
                raise VlalInputError(f"{split} has {int(src.labels.max()) + 1} classes but {len(names)} class names")
    test = splits.get("test")
    if test is not None and test.class_names is not None and splits["pool"].class_names is not None:
        if test.class_names != splits["pool"].class_names:
            raise VlalInputError("the test folder's class sub-folders differ from the pool's")

    meta = clip.cache_meta()
    meta["cache_version"] = CACHE_VERSION
    meta["template"] = template
    for split, src in splits.items():
        meta[f"{split}_fingerprint"] = src.fingerprint()
    meta["class_names"] = names

    cached = None
    if out is not None and reuse_cache and Path(out).exists():
        cached = _read_cache(Path(out))
    old_meta = {}
    if cached is not None and "embed_meta" in cached:
        old_meta = json.loads(str(cached["embed_meta"]))
    same_model = old_meta.get("cache_version") == CACHE_VERSION and all(
        old_meta.get(k) == meta[k] for k in clip.cache_meta()
    )

    result: dict[str, np.ndarray] = {}
    for split, src in splits.items():
        key = f"{split}_features"
        if same_model and old_meta.get(f"{split}_fingerprint") == meta[f"{split}_fingerprint"] and key in cached:
            log.info("reusing cached %s features from %s", split, out)
            result[key] = cached[key].astype(np.float32, copy=False)
        else:
            result[key] = encode_images(clip, src, batch_size=batch_size, progress=progress)
        if src.labels is not None:
            result[f"{split}_labels"] = src.labels
        if src.paths() is not None:
            result[f"{split}_paths"] = np.asarray(src.paths())
    if names is not None:
        result["class_names"] = np.asarray(names)
        if same_model and old_meta.get("class_names") == names and old_meta.get("template") == template \
                and "text_features" in cached:
            result["text_features"] = cached["text_features"].astype(np.float32, copy=False)
        else:
            result["text_features"] = encode_class_names(clip, names, template)
        # zero-shot class probabilities of the pool (what `vlal select --probs OUT` reads)
        result["probs"] = zero_shot_proba(result["pool_features"], result["text_features"]).astype(np.float32)
    result.update(_meta_arrays(meta))
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        savez_atomic(out, **result)  # temporary name in the same folder, fsync, os.replace
    return result
