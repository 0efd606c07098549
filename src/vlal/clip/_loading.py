"""Loading open_clip models without touching the network.

vlal never downloads weights unless asked to (``allow_download=True``): an open_clip
tag is resolved against the local caches (Hugging Face hub cache, open_clip's URL
cache), and when the file is not there :class:`~vlal.WeightsNotFoundError` is raised at
once, before any model is built, with instructions for passing a local file.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..exceptions import VlalInputError, WeightsNotFoundError
from .._warnings import warn_caller

__all__ = ["ClipModel", "RandomWeightsWarning", "load_clip"]

_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz", ".tar")


class ModelSpecError(VlalInputError):
    """The model name or ``pretrained`` value names no open_clip model / tag / file (nothing was read)."""


def same_weights(a: str, b: str) -> bool:
    """Two :attr:`ClipModel.weights_id` name the same weights. A file's id is
    ``path|size|mtime[|quick_gelu]``: a copy elsewhere (same file name, size and activation)
    counts as the same; tags and random seeds must be equal."""
    if a == b:
        return True
    x, y = a.split("|"), b.split("|")
    return len(x) == len(y) >= 3 and x[1] == y[1] and x[3:] == y[3:] and Path(x[0]).name == Path(y[0]).name


class RandomWeightsWarning(UserWarning):
    """A CLIP model was built with random weights: its features and predictions mean nothing."""


@dataclass
class ClipModel:
    """A frozen open_clip model with what is needed to feed it.

    Attributes
    ----------
    model : torch.nn.Module
        The open_clip model, in eval mode, every parameter with ``requires_grad=False``.
    tokenizer : callable
        ``list[str] -> LongTensor (n, context_length)``.
    preprocess : callable
        open_clip's inference transform, ``PIL.Image -> FloatTensor (3, H, W)``.
    model_name : str
        The open_clip architecture name (e.g. ``"ViT-B-32"``).
    pretrained : str or None
        The tag or the absolute checkpoint path the weights came from; ``None`` for
        random weights.
    weights_id : str
        What identifies the weights in caches: the tag, ``"<path>|<size>|<mtime_ns>"``
        for a file, or ``"random:seed=<s>"``; ``"|quick_gelu"`` is appended when QuickGELU
        is forced.
    device : torch.device
    preprocess_cfg : dict
        ``size`` (H, W), ``mean``, ``std``, ``interpolation``, ``resize_mode``.
    """

    model: torch.nn.Module
    tokenizer: Callable
    preprocess: Callable
    model_name: str
    pretrained: str | None
    weights_id: str
    device: torch.device
    preprocess_cfg: dict = field(default_factory=dict)

    @property
    def embed_dim(self) -> int:
        """Dimension ``d`` of the joint image-text embedding."""
        visual = self.model.visual
        out = getattr(visual, "output_dim", None)
        if out is None:
            out = visual.proj.shape[1]
        return int(out)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` in pixels of the preprocessed images the model takes."""
        size = self.preprocess_cfg["size"]
        return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))

    @property
    def is_random(self) -> bool:
        """True when the weights are random (``pretrained=None``): features are then meaningless."""
        return self.pretrained is None

    def cache_meta(self) -> dict[str, Any]:
        """What an embedding cache must match to be reused (model, weights, preprocessing)."""
        cfg = self.preprocess_cfg
        return {
            "model_name": self.model_name,
            "pretrained": "none" if self.pretrained is None else self.pretrained,
            "weights_id": self.weights_id,
            "image_size": list(self.image_size),
            "image_mean": [float(v) for v in cfg["mean"]],
            "image_std": [float(v) for v in cfg["std"]],
            "interpolation": str(cfg.get("interpolation", "")),
            "resize_mode": str(cfg.get("resize_mode", "")),
        }


def _weights_message(model_name: str, pretrained: str, looked_in: list[str], interface: str = "python") -> str:
    """The missing-weights message, with the way out in the words of the interface in use.

    ``interface``: ``"python"`` (arguments of :func:`load_clip`), ``"embed"`` (flags of
    ``vlal embed``) or ``"bench"`` (flags of ``vlal bench``).
    """
    where = "".join(f"\n  - {p}" for p in looked_in) or "\n  - (nowhere: unknown source)"
    head = (
        f"CLIP weights for model {model_name!r} with pretrained={pretrained!r} are not on this machine, "
        "and vlal does not download weights (the machine may be offline). Looked in:"
        f"{where}\n"
    )
    kinds = "(an OpenAI .pt file, an open_clip .bin/.pt or a .safetensors file all work)"
    if interface == "embed":
        return head + (
            f"Pass a local checkpoint file instead: --pretrained /path/to/{model_name}.pt {kinds}, "
            "or add --allow-download where a network exists."
        )
    if interface == "bench":
        return head + (
            f"Pass a local checkpoint file instead: --pretrained /path/to/{model_name}.pt {kinds} "
            "(the weights that embedded the --data file)."
        )
    return head + (
        "Pass a local checkpoint file instead, e.g.\n"
        f'  load_clip("{model_name}", pretrained="/path/to/{model_name}.pt")\n'
        f"{kinds}, or allow the download where a network exists: load_clip(..., allow_download=True)."
    )


def _missing(model_name: str, pretrained: str, looked_in: list[str]) -> WeightsNotFoundError:
    """A :class:`WeightsNotFoundError` whose ``details`` let a CLI re-word it with its flags."""
    err = WeightsNotFoundError(_weights_message(model_name, pretrained, looked_in))
    err.details = (model_name, pretrained, list(looked_in))
    return err


def weights_message_for(err: BaseException, interface: str) -> str:
    """``str(err)``, re-worded for ``interface`` ("embed", "bench") when it is a missing-weights error."""
    details = getattr(err, "details", None)
    if isinstance(err, WeightsNotFoundError) and details:
        return _weights_message(*details, interface=interface)
    return str(err)


def _is_torchscript(path: str) -> bool:
    """True for TorchScript archives (OpenAI's original CLIP ``.pt`` files), by their structure.

    A TorchScript archive (``torch.jit.save``) is a zip whose entries all sit under one
    top-level folder ``<root>/`` and which holds ``<root>/data.pkl``, ``<root>/constants.pkl``
    and TorchScript source files ``<root>/code/**.py``. Entry names that merely *end* in
    ``constants.pkl`` or contain ``/code/`` elsewhere do not count: such a file goes to the
    weights-only loader, which refuses anything but tensors and plain containers.
    """
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    roots = {n.split("/", 1)[0] for n in names}
    if len(roots) != 1 or any("/" not in n for n in names):
        return False
    root = roots.pop()
    return (
        f"{root}/data.pkl" in names
        and f"{root}/constants.pkl" in names
        and any(n.startswith(f"{root}/code/") and n.endswith(".py") for n in names)
    )


def _torchscript_state_dict(path: str) -> dict:
    """The tensors of a TorchScript archive, read by ``torch.jit.load`` (never Python pickle).

    ``torch.jit.load`` rebuilds only TorchScript types from the archive, so a crafted file
    cannot run Python code; anything it cannot read raises :class:`VlalInputError`. The one
    place where loading *would* run the archive's own TorchScript code is a class's
    ``__setstate__``: an archive whose code defines one is refused before ``torch.jit.load``
    (CLIP's own archives, traced or scripted modules, define none).
    """
    with zipfile.ZipFile(path) as z:
        hooks = [n for n in z.namelist() if "/code/" in n and re.search(rb"\bdef\s+__setstate__\b", z.read(n))]
    if hooks:
        raise VlalInputError(
            f"refused to load checkpoint {path}: its TorchScript code defines __setstate__ ({hooks[0]}), which "
            "torch.jit.load would run while loading. Load it where you trust it and re-save the weights only, "
            "e.g. torch.save(torch.jit.load(path).state_dict(), 'weights.pt')")
    try:
        archive = torch.jit.load(path, map_location="cpu")
    except Exception as err:  # C++ deserialiser errors come as RuntimeError and friends
        raise VlalInputError(
            f"refused to load checkpoint {path}: it looks like a TorchScript archive but "
            f"torch.jit.load cannot read it ({str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__})"
        ) from err
    extras = ("input_resolution", "context_length", "vocab_size")
    # attn_mask buffers are rebuilt by open_clip (non-persistent there)
    return {k: v for k, v in archive.state_dict().items() if k not in extras and not k.endswith("attn_mask")}


def _load_state_dict_into(model, state_dict: dict, path: str) -> None:
    """Load OpenAI/open_clip weights into an open_clip model with open_clip's own conversions."""
    from open_clip.factory import (
        convert_state_dict,
        convert_to_custom_text_state_dict,
        resize_pos_embed,
        resize_text_pos_embed,
    )

    sd = convert_state_dict(model, dict(state_dict))
    if "positional_embedding" in sd and not hasattr(model, "positional_embedding"):
        sd = convert_to_custom_text_state_dict(sd)
    if "logit_scale" in sd and model.logit_scale.ndim != sd["logit_scale"].ndim:
        sd["logit_scale"] = sd["logit_scale"].reshape(model.logit_scale.shape)
    resize_pos_embed(sd, model)
    resize_text_pos_embed(sd, model)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0]
        raise VlalInputError(f"checkpoint {path} does not fit this architecture: {first}") from err


def _refused(path: str, err: BaseException) -> VlalInputError:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
    return VlalInputError(
        f"refused to load checkpoint {path}: it is not a plain weights file (vlal loads checkpoints with "
        f"torch.load(weights_only=True), which never runs code, and TorchScript archives with torch.jit.load). "
        f"Re-save it as tensors only, e.g. torch.save(model.state_dict(), 'weights.pt'), or as .safetensors. "
        f"({first})"
    )


def _find_cached_tag_file(
    open_clip, model_name: str, tag: str, cache_dir: str | None
) -> tuple[str | None, list[str]]:
    """The local file of an open_clip tag, or ``None``; plus the places looked in. No network."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    cfg = open_clip.get_pretrained_cfg(model_name, tag)
    looked: list[str] = []
    if cfg.get("file"):
        looked.append(cfg["file"])
        if os.path.isfile(cfg["file"]):
            return cfg["file"], looked
    hub = cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
            from huggingface_hub.constants import HF_HUB_CACHE
        except ImportError:  # pragma: no cover - open_clip depends on huggingface_hub
            try_to_load_from_cache = None
            HF_HUB_CACHE = "~/.cache/huggingface/hub"
        # open_clip's convention: "org/repo/" means the default file, "org/repo/file" a named one
        if hub.endswith("/"):
            repo_id, filename = hub.rstrip("/"), HF_WEIGHTS_NAME
        else:
            repo_id, filename = os.path.split(hub)
        names = []
        if filename == HF_WEIGHTS_NAME:
            names.append(HF_SAFE_WEIGHTS_NAME)
        elif filename.endswith((".bin", ".pth")):
            names.append(filename[:-4] + ".safetensors")
        names.append(filename)
        base = cache_dir or HF_HUB_CACHE
        for name in names:
            looked.append(f"Hugging Face cache {base}: {repo_id}/{name}")
            if try_to_load_from_cache is not None:
                found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
                if isinstance(found, str) and os.path.isfile(found):
                    return found, looked
    url = cfg.get("url", "")
    if url:
        target = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        looked.append(target)
        if os.path.isfile(target):
            return target, looked
    return None, looked


def _tag_preprocess_kwargs(cfg: dict) -> dict:
    out = {}
    for key, arg in (("mean", "image_mean"), ("std", "image_std"), ("interpolation", "image_interpolation"),
                     ("resize_mode", "image_resize_mode")):
        if cfg.get(key) is not None:
            out[arg] = cfg[key]
    return out


def load_clip(
    model_name: str,
    pretrained: str | os.PathLike | None = ...,
    device: str | torch.device = "cpu",
    *,
    cache_dir: str | None = None,
    allow_download: bool = False,
    quick_gelu: bool | None = None,
    seed: int = 0,
) -> ClipModel:
    """Build an open_clip model, offline, frozen, in eval mode.

    Parameters
    ----------
    model_name : str
        Any open_clip architecture (``open_clip.list_models()``), e.g. ``"ViT-B-32"``,
        ``"ViT-B-16"``, ``"RN50"``; ``"ViT-B/32"`` is accepted too. ``"local-dir:/path"``
        (a folder with ``open_clip_config.json`` and weights) and ``"hf-hub:org/repo"``
        (resolved in the local Hugging Face cache unless ``allow_download``) work as in
        open_clip; ``pretrained`` is then ignored (and may be left out). The weights file
        of such a folder is the one open_clip loads (``.safetensors`` first).
    pretrained : str, path or None; required for a plain architecture name
        An open_clip tag (``"openai"``, ``"laion2b_s34b_b79k"``, ...) resolved against the
        local caches only; or a local checkpoint file (OpenAI TorchScript ``.pt``, open_clip
        ``.pt``/``.bin``, ``.safetensors``); or ``None`` for **random weights** (a
        :class:`RandomWeightsWarning` is issued: features are then meaningless).
    device : str or torch.device, default "cpu"
    cache_dir : str, optional
        Where open_clip / Hugging Face keep downloaded weights (default: their defaults).
    allow_download : bool, default False
        Let open_clip download a tag's weights when they are not cached.
    quick_gelu : bool, optional
        Force QuickGELU activations. Default: as the tag's config says; ``True`` for
        TorchScript (OpenAI) files, whose models all use QuickGELU; else the architecture's.
    seed : int, default 0
        Seed of the random initialisation when ``pretrained`` is None (so that random
        models, and caches of their features, are reproducible).

    Returns
    -------
    ClipModel

    Raises
    ------
    vlal.WeightsNotFoundError
        The tag's weights are not in the local caches (and ``allow_download`` is False), or
        no file exists at the given path. Raised before any model is built.
    vlal.VlalInputError
        Unknown architecture, or a ``pretrained`` that is neither a known tag nor a path;
        or a checkpoint that is refused: files are read with ``torch.load(weights_only=True)``
        (tensors and plain containers only) and TorchScript archives, recognised by their
        structure, with ``torch.jit.load``; no checkpoint is ever unpickled in full, so no
        file can run code.
    """
    import open_clip

    name = str(model_name)
    schema = "hf-hub" if name.startswith("hf-hub:") else "local-dir" if name.startswith("local-dir:") else None
    if pretrained is ...:
        if schema is None:
            raise ModelSpecError(f"pretrained is required for {model_name!r}: a checkpoint file, an open_clip tag, "
                                 "or None for random weights")
        pretrained = None
    if schema is None:
        name = name.replace("/", "-")
        if open_clip.get_model_config(name) is None:
            known = ", ".join(open_clip.list_models()[:12])
            raise ModelSpecError(
                f"unknown open_clip model {model_name!r}; see open_clip.list_models() (e.g. {known}, ...)"
            )
    kwargs: dict[str, Any] = {"device": device}
    torchscript_file = None  # a TorchScript archive: read by torch.jit.load, never by pickle
    force_quick_gelu = bool(quick_gelu)
    build_name = name
    if schema is not None:
        # the architecture and weights come from the hub repo / the folder; `pretrained` is ignored
        if schema == "hf-hub" and not allow_download:
            build_name = _resolve_hf_hub_dir(name, cache_dir)
        if build_name.startswith("local-dir:"):
            ckpt = _checkpoint_in_dir(Path(build_name[len("local-dir:"):]))
            if ckpt is None:
                raise _missing(name, "(from the folder)", [build_name])
            st = os.stat(ckpt)
            weights_id = f"{ckpt}|{st.st_size}|{st.st_mtime_ns}"
        else:
            weights_id = name
        pretrained_arg, resolved = None, name
    elif pretrained is None:
        pretrained_arg = resolved = None
        weights_id = f"random:seed={int(seed)}"
    else:
        spec = os.fspath(pretrained)
        if os.path.isfile(spec):
            resolved = os.path.abspath(spec)
            st = os.stat(resolved)
            weights_id = f"{resolved}|{st.st_size}|{st.st_mtime_ns}"
            if _is_torchscript(resolved):
                # OpenAI's original files are TorchScript archives (QuickGELU models)
                torchscript_file = resolved
                if quick_gelu is None:
                    force_quick_gelu = True
            pretrained_arg = resolved
        elif open_clip.get_pretrained_cfg(name, spec):
            cfg = open_clip.get_pretrained_cfg(name, spec)
            if quick_gelu is None:
                force_quick_gelu = bool(cfg.get("quick_gelu", False))
            resolved, weights_id = spec, spec
            if allow_download:
                pretrained_arg = spec
                kwargs["cache_dir"] = cache_dir
            else:
                local, looked = _find_cached_tag_file(open_clip, name, spec, cache_dir)
                if local is None:
                    raise _missing(name, spec, looked)
                pretrained_arg = local
                kwargs.update(_tag_preprocess_kwargs(cfg))
                if _is_torchscript(local):
                    torchscript_file = local
        elif os.sep in spec or "/" in spec or spec.lower().endswith(_CHECKPOINT_SUFFIXES):
            raise _missing(name, spec, [os.path.abspath(spec) + " (no such file)"])
        else:
            tags = open_clip.list_pretrained_tags_by_model(name)
            raise ModelSpecError(
                f"pretrained={spec!r} is neither a file nor an open_clip tag of {name!r} "
                f"(tags: {', '.join(tags) or 'none'}); pass a checkpoint path or None for random weights"
            )

    if force_quick_gelu:
        weights_id += "|quick_gelu"  # same weights, other activation: other features
    if pretrained is None and schema is None:
        msg = (
            f"CLIP model {name!r} is built with RANDOM weights (pretrained=None): its features, "
            "zero-shot probabilities and tuned prompts are MEANINGLESS; use this only for tests "
            "and timing. Pass pretrained='/path/to/checkpoint.pt' for real results."
        )
        warn_caller(msg, RandomWeightsWarning)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=None, force_quick_gelu=force_quick_gelu, **kwargs
            )
    elif torchscript_file is not None:
        state = _torchscript_state_dict(torchscript_file)
        with torch.random.fork_rng(devices=[]):  # the random init is overwritten; keep the caller's RNG
            model, _, preprocess = open_clip.create_model_and_transforms(
                build_name, pretrained=None, force_quick_gelu=force_quick_gelu, **kwargs
            )
        _load_state_dict_into(model, state, torchscript_file)
    else:
        # weights_only=True always: no checkpoint, whatever its name or content, can run code
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                build_name, pretrained=pretrained_arg, force_quick_gelu=force_quick_gelu,
                weights_only=True, **kwargs,
            )
        except FileNotFoundError as err:  # safety net: open_clip's own missing-file errors
            raise WeightsNotFoundError(str(err)) from err
        except pickle.UnpicklingError as err:  # the weights-only unpickler met a non-tensor object
            raise _refused(str(pretrained_arg or build_name), err) from err
        except RuntimeError as err:
            where = str(pretrained_arg or build_name)
            if "weights_only" in str(err) or "TorchScript" in str(err):
                raise _refused(where, err) from err
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise VlalInputError(f"cannot load checkpoint {where}: {first}") from err
        except (ValueError, AttributeError, KeyError, TypeError) as err:
            # e.g. a .npy/.npz, which open_clip reads as big_vision weights of a timm model
            where = str(pretrained_arg or build_name)
            if "allow_pickle" in str(err):
                raise _refused(where, err) from err
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise VlalInputError(f"cannot load checkpoint {where} into {build_name}: {type(err).__name__}: {first} "
                                 "(vlal reads .pt / .bin / .safetensors state dicts and OpenAI TorchScript "
                                 "archives; .npy / .npz are big_vision weights of timm-based models only)") from err
    model.eval()
    model.requires_grad_(False)
    tokenizer = open_clip.get_tokenizer(build_name)
    pcfg = dict(open_clip.get_model_preprocess_cfg(model))
    pcfg.setdefault("interpolation", "bicubic")
    pcfg.setdefault("resize_mode", "shortest")
    return ClipModel(
        model=model,
        tokenizer=tokenizer,
        preprocess=preprocess,
        model_name=name,
        pretrained=resolved,
        weights_id=weights_id,
        device=torch.device(device),
        preprocess_cfg=pcfg,
    )


def _resolve_hf_hub_dir(name: str, cache_dir: str | None) -> str:
    """``hf-hub:org/repo`` -> ``local-dir:<cached snapshot>`` without network, or raise."""
    from huggingface_hub import try_to_load_from_cache

    repo_id = name[len("hf-hub:"):]
    found = try_to_load_from_cache(repo_id, "open_clip_config.json", cache_dir=cache_dir)
    if not (isinstance(found, str) and os.path.isfile(found)):
        raise _missing(name, "(from the hub repo)", [f"Hugging Face cache: {repo_id}"])
    return "local-dir:" + str(Path(found).parent)


#: open_clip's preference among the weights files of a ``local-dir:`` folder (open_clip 3.x,
#: ``factory._find_checkpoint_in_dir``), used when that function is not there to ask.
_DIR_CHECKPOINT_ORDER = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                         "open_clip_pytorch_model.bin", "open_clip_pytorch_model.pth",
                         "model.safetensors", "pytorch_model.bin", "pytorch_model.pth", "model.pth")


def _checkpoint_in_dir(folder: Path) -> str | None:
    """The weights file open_clip loads from a ``local-dir:`` folder (or None): the file that
    identifies the weights in the ``embed`` cache and in saved prompts, so it must be the same
    one. open_clip's own chooser is asked when it exists; else its rule, restated."""
    if not (folder / "open_clip_config.json").is_file():
        return None
    from open_clip import factory

    find = getattr(factory, "_find_checkpoint_in_dir", None)
    if find is not None:
        hit = find(folder)
        return None if hit is None else str(Path(hit).resolve())
    found = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")) + sorted(folder.glob("*.pth"))
    found.sort(key=lambda p: p.suffix != ".safetensors")  # stable: safetensors first, then by name
    named = sorted((p for p in found if p.name in _DIR_CHECKPOINT_ORDER), key=lambda p: _DIR_CHECKPOINT_ORDER.index(p.name))
    hits = named or found
    return str(hits[0].resolve()) if hits else None
