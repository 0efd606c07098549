"""CLIP adapters (the ``[clip]`` extra: torch, open_clip_torch, pillow).

- :func:`load_clip` — an open_clip model, offline, frozen; a missing tag raises
  :class:`vlal.WeightsNotFoundError` at once; ``pretrained=None`` gives random weights
  (with a :class:`RandomWeightsWarning`).
- :func:`encode_images`, :func:`encode_class_names`, :func:`embed` — L2-normalised
  features, cached in ``.npz`` files that the benchmark reads.
- :func:`zero_shot_proba` — paper Eq. 1 with ``T = 0.01``.
- :class:`CoOp`, :class:`VPT`, :class:`MaPLe` — prompt tuners implementing the loop's
  ``Tuner`` protocol (``fit`` / ``predict_proba``), for :func:`vlal.loop.run_active_learning`.

>>> from vlal.clip import load_clip, embed, CoOp                   # doctest: +SKIP
>>> clip = load_clip("ViT-B-16", pretrained="/path/to/ViT-B-16.pt")  # doctest: +SKIP

Names are imported lazily, so ``import vlal.clip`` (and ``vlal.clip.cli``) does not load
torch; the first use of one of them does.
"""

from __future__ import annotations

import importlib

__all__ = [
    "ClipModel",
    "RandomWeightsWarning",
    "load_clip",
    "ImageFolder",
    "ImageSource",
    "scan_image_folder",
    "as_image_source",
    "DEFAULT_TEMPLATE",
    "encode_images",
    "encode_class_names",
    "zero_shot_proba",
    "embed",
    "embed_ray",
    "PromptTuner",
    "CoOp",
    "VPT",
    "MaPLe",
    "PromptTunerConfig",
    "CoOpConfig",
    "VPTConfig",
    "MaPLeConfig",
    "TextContext",
]

_WHERE = {
    "ClipModel": "_loading",
    "RandomWeightsWarning": "_loading",
    "load_clip": "_loading",
    "ImageFolder": "_images",
    "ImageSource": "_images",
    "scan_image_folder": "_images",
    "as_image_source": "_images",
    "DEFAULT_TEMPLATE": "_encode",
    "encode_images": "_encode",
    "encode_class_names": "_encode",
    "zero_shot_proba": "_encode",
    "embed": "_encode",
    "embed_ray": "_ray",
    "PromptTuner": "_tuners",
    "CoOp": "_tuners",
    "VPT": "_tuners",
    "MaPLe": "_tuners",
    "PromptTunerConfig": "_tuners",
    "CoOpConfig": "_tuners",
    "VPTConfig": "_tuners",
    "MaPLeConfig": "_tuners",
    "TextContext": "_tuners",
}


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'vlal.clip' has no attribute {name!r}")
    try:
        mod = importlib.import_module(f".{module}", __name__)
    except ImportError as err:
        if err.name in ("torch", "open_clip", "PIL", "torchvision"):
            raise ImportError(
                f"vlal.clip.{name} needs the [clip] extra ({err.name} is missing): pip install -e '.[clip]' in the vlal checkout"
            ) from err
        raise
    value = getattr(mod, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
