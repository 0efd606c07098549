"""Prompt tuners for CLIP that implement the loop's ``Tuner`` protocol: CoOp, VPT, MaPLe.

Each tuner trains only its prompt parameters; every weight of the CLIP model stays
frozen (``requires_grad=False``). ``fit(inputs, labels)`` restarts from the prompts'
initial state every call and trains on all the labels it is given (the paper reloads
zero-shot CLIP and re-tunes after every active-learning round); ``predict_proba``
returns Eq. 1 probabilities ``softmax(cos(f(x), t_i) / T)`` of the current model.

Settings live in one frozen config per tuner (:class:`PromptTunerConfig` and its
subclasses :class:`CoOpConfig`, :class:`VPTConfig`, :class:`MaPLeConfig`), built from the
constructor's keywords; CoOp and MaPLe share the learnable text context
(:class:`TextContext`); the learning-rate schedule is torch's ``CosineAnnealingLR`` and
the augmentation torchvision's ``RandomResizedCrop`` + ``RandomHorizontalFlip``.

References
----------
- CoOp: K. Zhou, J. Yang, C. C. Loy, Z. Liu. "Learning to Prompt for Vision-Language
  Models", IJCV 2022.
- VPT: M. Jia et al. "Visual Prompt Tuning", ECCV 2022.
- MaPLe: M. U. Khattak, H. Rasheed, M. Maaz, S. Khan, F. S. Khan. "MaPLe: Multi-modal
  Prompt Learning", CVPR 2023.
- B. Safaei, V. M. Patel. "Active Learning for Vision-Language Models", WACV 2025
  (training settings of CoOp, Sec. 5).
"""

from __future__ import annotations

import abc
import dataclasses
import math
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .._io import atomic_write
from .._validation import check_bool
from .._warnings import warn_caller
from ..exceptions import VlalInputError
from ..tuners import Tuner
from ._encode import DEFAULT_TEMPLATE, _check_clip, encode_class_names, encode_images, prompt_texts
from ._images import as_image_source
from ._loading import ClipModel, same_weights
from ._towers import TextTower, check_vit, encode_image_prompted, encode_text_prompted, text_tower

__all__ = ["PromptTuner", "CoOp", "VPT", "MaPLe", "PromptTunerConfig", "CoOpConfig", "VPTConfig", "MaPLeConfig",
           "TextContext"]

_FORMAT = "vlal-prompts"
_FORMAT_VERSION = 1


def _check_pos_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise VlalInputError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def _check_nonneg(value, name: str) -> float:
    v = float(value)
    if not (v >= 0 and math.isfinite(v)):
        raise VlalInputError(f"{name} must be a finite number >= 0; got {value!r}")
    return v


# --------------------------------------------------------------------------- settings

@dataclasses.dataclass(frozen=True)
class PromptTunerConfig:
    """Settings every prompt tuner shares (frozen; checked and normalised on construction).

    Attributes
    ----------
    template : str, default "a photo of a {}."
        Hand-written prompt of the zero-shot text features.
    temperature : float, default 0.01
        ``T`` of Eq. 1, in training and prediction.
    epochs, batch_size, lr, momentum, weight_decay : training settings (SGD)
        Defaults: CoOp's (200, 32, 0.002, 0.9, 0.005); each tuner's config sets its own.
    warmup_epochs : int, default 1
        Epochs at the constant ``warmup_lr`` before the cosine schedule (Dassl-style).
    warmup_lr : float, default 1e-5
    eval_batch_size : int, default 64
        Images per forward pass in prediction.
    seed : int, default 0
        Fixes prompt initialisation, shuffling and augmentation: ``fit`` is reproducible.
    progress : bool, default False
        tqdm bar over epochs.

    Raises
    ------
    vlal.VlalInputError
        ``temperature <= 0``, non-positive ``epochs`` / ``batch_size`` / ``eval_batch_size``,
        negative or non-finite ``lr`` / ``momentum`` / ``weight_decay`` / ``warmup_lr``,
        negative ``warmup_epochs``.
    """

    template: str = DEFAULT_TEMPLATE
    temperature: float = 0.01
    epochs: int = 200
    batch_size: int = 32
    lr: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 0.005
    warmup_epochs: int = 1
    warmup_lr: float = 1e-5
    eval_batch_size: int = 64
    seed: int = 0
    progress: bool = False

    def __post_init__(self):
        if not self.temperature > 0:
            raise VlalInputError(f"temperature must be > 0; got {self.temperature}")
        checked = {
            "temperature": float(self.temperature),
            "epochs": _check_pos_int(self.epochs, "epochs"),
            "batch_size": _check_pos_int(self.batch_size, "batch_size"),
            "lr": _check_nonneg(self.lr, "lr"),
            "momentum": _check_nonneg(self.momentum, "momentum"),
            "weight_decay": _check_nonneg(self.weight_decay, "weight_decay"),
            "warmup_epochs": int(self.warmup_epochs),
            "warmup_lr": _check_nonneg(self.warmup_lr, "warmup_lr"),
            "eval_batch_size": _check_pos_int(self.eval_batch_size, "eval_batch_size"),
            "seed": int(self.seed),
            "progress": bool(self.progress),
        }
        if checked["warmup_epochs"] < 0:
            raise VlalInputError(f"warmup_epochs must be >= 0; got {self.warmup_epochs}")
        for name, value in checked.items():
            object.__setattr__(self, name, value)


@dataclasses.dataclass(frozen=True)
class CoOpConfig(PromptTunerConfig):
    """:class:`CoOp`'s settings: the paper's SGD schedule plus the context (``ctx_init``, ``n_ctx``)."""

    ctx_init: str | None = "a photo of a"
    n_ctx: int | None = None

    def __post_init__(self):
        super().__post_init__()
        if self.n_ctx is not None:
            object.__setattr__(self, "n_ctx", _check_pos_int(self.n_ctx, "n_ctx"))


@dataclasses.dataclass(frozen=True)
class VPTConfig(PromptTunerConfig):
    """:class:`VPT`'s settings (MaPLe's released VPT configuration)."""

    n_tokens: int = 8
    prompt_depth: int | None = None
    epochs: int = 5
    batch_size: int = 4
    lr: float = 0.0025
    weight_decay: float = 5e-4
    augment: bool = True

    def __post_init__(self):
        object.__setattr__(self, "n_tokens", _check_pos_int(self.n_tokens, "n_tokens"))
        super().__post_init__()
        if self.prompt_depth is not None:
            object.__setattr__(self, "prompt_depth", _check_pos_int(self.prompt_depth, "prompt_depth"))
        check_bool(self.augment, "augment")
        object.__setattr__(self, "augment", bool(self.augment))


@dataclasses.dataclass(frozen=True)
class MaPLeConfig(PromptTunerConfig):
    """:class:`MaPLe`'s settings (MaPLe's released configuration)."""

    n_ctx: int = 2
    prompt_depth: int = 9
    ctx_init: str | None = "a photo of a"
    epochs: int = 5
    batch_size: int = 4
    lr: float = 0.0035
    weight_decay: float = 5e-4
    augment: bool = True

    def __post_init__(self):
        object.__setattr__(self, "n_ctx", _check_pos_int(self.n_ctx, "n_ctx"))
        object.__setattr__(self, "prompt_depth", _check_pos_int(self.prompt_depth, "prompt_depth"))
        super().__post_init__()
        check_bool(self.augment, "augment")
        object.__setattr__(self, "augment", bool(self.augment))


def _epoch_lrs(optimizer: torch.optim.Optimizer, config: PromptTunerConfig) -> Iterator[int]:
    """Set the learning rate of each epoch in turn; yields the epoch index.

    ``config.warmup_lr`` for the first ``config.warmup_epochs`` epochs, then torch's
    ``CosineAnnealingLR(T_max=epochs)`` at the epoch's own index, ``0.5 lr (1 + cos(pi e / E))``:
    the cosine counts the warm-up epochs too, as Dassl's constant warm-up does with its one
    warm-up epoch (``SequentialLR`` would restart the cosine after the warm-up instead).
    """
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    for epoch in range(config.epochs):
        scheduled = [group["lr"] for group in optimizer.param_groups]
        if epoch < config.warmup_epochs:
            for group in optimizer.param_groups:
                group["lr"] = config.warmup_lr
        yield epoch
        for group, lr in zip(optimizer.param_groups, scheduled):  # the cosine continues from its own value
            group["lr"] = lr
        if epoch + 1 < config.epochs:
            cosine.step()


# --------------------------------------------------------------------------- shared text context

class TextContext(torch.nn.Module):
    """CoOp's learnable text context ``[V_1 .. V_M] [CLASS].``, shared by :class:`CoOp` and :class:`MaPLe`.

    Holds the token ids ``(K, L)`` of ``"<context words> <class name>."`` for every class,
    the frozen token embeddings around the context (start-of-text; class name, full stop,
    end-of-text) and the trainable context ``ctx`` of shape ``(M, width)``. Only ``ctx`` is
    a parameter (the buffers are not saved: they follow from the model and class names).

    Parameters
    ----------
    tower : TextTower
        From :func:`vlal.clip._towers.text_tower` (not registered as a sub-module: its
        weights stay out of :meth:`parameters`).
    tokenizer : callable
        open_clip tokenizer of the model.
    class_names : sequence of str (K,)
    ctx_init : str or None
        Words whose token embeddings initialise the context (the first ``n_ctx`` of them);
        None: context vectors drawn from N(0, 0.02^2) at :meth:`reset`.
    n_ctx : int
        Context length M.
    device : torch.device

    Raises
    ------
    vlal.VlalInputError
        ``n_ctx`` longer than the tokens of ``ctx_init``.
    """

    def __init__(self, tower: TextTower, tokenizer, class_names: Sequence[str], ctx_init: str | None, n_ctx: int,
                 device):
        super().__init__()
        self.tower = tower
        if ctx_init is not None:
            words = ctx_init.strip()
            ids = tokenizer([words])[0]
            n_init = int(ids.argmax()) - 1  # tokens between start- and end-of-text
            if n_ctx > n_init:
                raise VlalInputError(
                    f"n_ctx={n_ctx} exceeds the {n_init} tokens of ctx_init={ctx_init!r}; "
                    "use ctx_init=None for random context vectors"
                )
            with torch.no_grad():
                init = tower.token_embedding(ids[1 : 1 + n_ctx].to(device)).detach().clone()
        else:
            words = " ".join(["X"] * n_ctx)
            init = None
        names = [n.replace("_", " ").strip() for n in class_names]
        token_ids = tokenizer([f"{words} {n}." for n in names]).to(device)
        with torch.no_grad():
            emb = tower.token_embedding(token_ids)
        self.register_buffer("token_ids", token_ids, persistent=False)
        self.register_buffer("prefix", emb[:, :1].detach(), persistent=False)
        self.register_buffer("suffix", emb[:, 1 + n_ctx :].detach(), persistent=False)
        self.register_buffer("init_vectors", init, persistent=False)
        self.ctx = torch.nn.Parameter(torch.empty(n_ctx, tower.width))

    @staticmethod
    def n_words(tokenizer, ctx_init: str) -> int:
        """Number of tokens of ``ctx_init`` (between start- and end-of-text)."""
        return int(tokenizer([ctx_init.strip()])[0].argmax()) - 1

    @torch.no_grad()
    def reset(self, gen: torch.Generator) -> None:
        """Initial context: the ``ctx_init`` token embeddings, or N(0, 0.02^2) drawn from ``gen``."""
        if self.init_vectors is not None:
            self.ctx.copy_(self.init_vectors)
        else:
            _normal_(self.ctx, gen, 0.02)

    def forward(self, deep_prompts: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Normalised class text features ``(K, d)`` of the current context (differentiable).

        ``deep_prompts`` (MaPLe): context replacements before the next text layers.
        """
        k = self.token_ids.shape[0]
        emb = torch.cat([self.prefix, self.ctx.unsqueeze(0).expand(k, -1, -1), self.suffix], dim=1)
        return F.normalize(encode_text_prompted(self.tower, emb, self.token_ids, deep_prompts=deep_prompts), dim=-1)


# --------------------------------------------------------------------------- base

class PromptTuner(Tuner):
    """Shared machinery of the prompt tuners (training loop, prediction, save / load).

    Subclasses define their settings (:attr:`config_class`, a :class:`PromptTunerConfig`
    subclass), the prompt parameters (:meth:`_build`, :meth:`_reset`), how inputs become
    training tensors (:meth:`_prepare`) and the logits (:meth:`_logits`,
    :meth:`_predict_logits`); the hooks are abstract.

    Parameters
    ----------
    clip : ClipModel
        From :func:`vlal.clip.load_clip`; frozen here (``requires_grad=False`` on all
        of its parameters, eval mode).
    class_names : sequence of str (K,)
    config : PromptTunerConfig, optional
        The settings; default ``config_class()`` (the tuner's published defaults).
    **settings
        Fields of the config (``epochs=5``, ``lr=...``, see :class:`PromptTunerConfig` and
        the tuner's own config); they replace those of ``config``.

    Attributes
    ----------
    config : PromptTunerConfig
        The settings; each field is also readable as an attribute (``tuner.epochs``).
    """

    #: Short name written into saved prompt files.
    kind = "prompt"
    #: The settings' type.
    config_class: type[PromptTunerConfig] = PromptTunerConfig

    def __init__(self, clip: ClipModel, class_names: Sequence[str], config: PromptTunerConfig | None = None,
                 **settings):
        self.clip = _check_clip(clip)
        self.clip.model.eval()
        self.clip.model.requires_grad_(False)
        if config is None:
            config = self.config_class(**settings)
        elif not isinstance(config, self.config_class):
            raise VlalInputError(f"config must be a {self.config_class.__name__}; got {type(config).__name__}")
        elif settings:
            config = dataclasses.replace(config, **settings)
        self.config = config
        prompt_texts(class_names, config.template)  # validates
        self.class_names = [str(n) for n in class_names]
        self.device = self.clip.device
        zs = encode_class_names(self.clip, self.class_names, config.template)
        self.zero_shot_text = torch.from_numpy(zs).to(self.device)
        self.prompts = self._build()
        self.prompts.to(self.device)
        self._reset(torch.Generator().manual_seed(config.seed))
        self.tuned = False
        self.loss_history_: list[float] = []
        self._text_cache: torch.Tensor | None = None

    def __getattr__(self, name: str):
        # settings read as attributes (tuner.epochs); only called when normal lookup fails
        config = self.__dict__.get("config")
        if config is not None and name in {f.name for f in dataclasses.fields(config)}:
            return getattr(config, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ------------------------------------------------------------------ hooks
    @abc.abstractmethod
    def _build(self) -> torch.nn.Module:
        """Create the prompt parameters (and fixed tensors); return the module that holds them."""

    @abc.abstractmethod
    def _reset(self, gen: torch.Generator) -> None:
        """Set the initial (pre-training) prompt values, drawing randomness from ``gen`` only."""

    @abc.abstractmethod
    def _prepare(self, inputs) -> torch.Tensor:
        """Training inputs, all rows."""

    @abc.abstractmethod
    def _logits(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """Training logits (differentiable) of prepared rows ``x``; ``gen`` drives augmentation."""

    @abc.abstractmethod
    def _predict_logits(self, inputs) -> torch.Tensor:
        """Logits of the current model for prediction."""

    def _config(self) -> dict:  # shape-defining settings, checked by load_prompts
        return {}
    # ------------------------------------------------------------------ public
    @property
    def n_classes(self) -> int:
        """Number of classes ``K`` (the class names)."""
        return len(self.class_names)

    def prompt_parameters(self) -> list[torch.nn.Parameter]:
        """The trainable tensors (nothing of the CLIP model is among them)."""
        return list(self.prompts.parameters())

    def n_trainable(self) -> int:
        """Number of trained scalars."""
        return int(sum(p.numel() for p in self.prompt_parameters()))

    def _check_labels(self, labels, n: int | None = None) -> np.ndarray:
        y = np.asarray(labels)
        if y.ndim != 1:
            raise VlalInputError(f"labels must be 1-D; got shape {y.shape}")
        if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= self.n_classes):
            raise VlalInputError(
                f"labels must be integer class ids in [0, {self.n_classes}); got {y.min()}..{y.max()}"
            )
        if n is not None and y.shape[0] != n:
            raise VlalInputError(f"got {n} inputs but {y.shape[0]} labels")
        return y.astype(np.int64)

    def training_loss(self, inputs, labels) -> torch.Tensor:
        """Mean cross-entropy of the current prompts on ``inputs`` (differentiable, scalar).

        No augmentation; used for diagnostics and gradient checks.
        """
        x = self._prepare(inputs)
        y = torch.from_numpy(self._check_labels(labels, x.shape[0])).to(self.device)
        return F.cross_entropy(self._logits(x), y)

    def fit(self, inputs, labels):
        """Re-initialise the prompts and train them on all ``(inputs, labels)``.

        Parameters
        ----------
        inputs
            What the tuner consumes (see the class docstring), one row per label.
        labels : array-like (n,) of int in ``[0, K)``

        Returns
        -------
        self

        Raises
        ------
        vlal.VlalInputError
            Bad labels, inputs of the wrong kind or length.
        """
        cfg = self.config
        y_np = self._check_labels(labels)  # inputs and labels first: a fit that raises changes nothing
        if y_np.size:
            x = self._prepare(inputs)
            self._check_labels(y_np, x.shape[0])
        gen = torch.Generator().manual_seed(cfg.seed)
        with torch.no_grad():
            self._reset(gen)
        self.tuned = False
        self._text_cache = None
        self.loss_history_ = []
        if y_np.size == 0:
            return self
        y = torch.from_numpy(y_np).to(self.device)
        params = self.prompt_parameters()
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        n = x.shape[0]
        # Dassl's train loader (CoOp / MaPLe code) drops the last partial batch once n >= batch size
        drop_last = n >= cfg.batch_size
        from tqdm.auto import tqdm

        epochs = _epoch_lrs(opt, cfg)  # sets each epoch's learning rate
        for _ in tqdm(epochs, total=cfg.epochs, desc=f"{self.kind} fit", disable=not cfg.progress, leave=False):
            perm = torch.randperm(n, generator=gen)
            stop = n - n % cfg.batch_size if drop_last else n
            total, count = 0.0, 0
            for s in range(0, stop, cfg.batch_size):
                idx = perm[s : s + cfg.batch_size].to(self.device)
                loss = F.cross_entropy(self._logits(x[idx], gen), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * idx.numel()
                count += idx.numel()
            self.loss_history_.append(total / max(count, 1))
        self.tuned = True
        return self

    @torch.no_grad()
    def predict_proba(self, inputs) -> np.ndarray:
        """Class probabilities (Eq. 1) of the current model; zero-shot CLIP before any fit.

        Returns
        -------
        ndarray (m, K), float32
        """
        logits = self._predict_logits(inputs)
        return torch.softmax(logits.double(), dim=-1).cpu().numpy().astype(np.float32)

    def save_prompts(self, path) -> None:
        """Write the prompt tensors and what they belong to (``torch.save``; loadable weights-only)."""
        state = {k: v.detach().cpu().clone() for k, v in self.prompts.state_dict().items()}
        with atomic_write(Path(path), "wb") as fh:  # temp name, fsync, os.replace
            torch.save(
                {
                    "format": _FORMAT,
                    "version": _FORMAT_VERSION,
                    "tuner": self.kind,
                    "model_name": self.clip.model_name,
                    "weights_id": self.clip.weights_id,
                    "class_names": list(self.class_names),
                    "config": self._config(),
                    "predict": self._predict_settings(),
                    "tuned": bool(self.tuned),
                    "state": state,
                },
                fh,
            )

    def _predict_settings(self) -> dict:
        """Settings that change predictions without changing the prompt shapes (checked by load_prompts)."""
        return {"template": self.config.template, "temperature": float(self.config.temperature)}

    def load_prompts(self, path, *, other_weights: bool = False):
        """Load prompts written by :meth:`save_prompts` of the same tuner type and settings.

        The file is read with ``torch.load(weights_only=True)`` (tensors and plain containers:
        no code runs). Everything it records must match this tuner: tuner type, prompt shapes,
        class names, template and temperature, and the CLIP model and weights (prompts tuned on
        other weights are meaningless on these, even where the shapes fit).

        Parameters
        ----------
        path : path
        other_weights : bool, default False
            Accept prompts tuned on another model or other weights (with a warning), e.g. a
            checkpoint re-saved in another format. Shapes must still fit.

        Returns
        -------
        self

        Raises
        ------
        vlal.VlalInputError
            Not a vlal prompt file (unreadable, or fields missing), another tuner type, other
            shape settings, class names, template or temperature, another model or weights
            (unless ``other_weights``), tensors that do not fit or are not finite.
        FileNotFoundError
            No such file.
        """
        import pickle
        import zipfile

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no prompt file at {path}")
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, KeyError, ValueError, OSError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise VlalInputError(f"{path} is not a vlal prompt file: torch.load (weights only, nothing executed) "
                                 f"cannot read it ({type(err).__name__}: {first})") from None
        need = ("tuner", "model_name", "weights_id", "class_names", "config", "tuned", "state")
        if not isinstance(blob, dict) or blob.get("format") != _FORMAT or any(k not in blob for k in need):
            missing = [k for k in need if not isinstance(blob, dict) or k not in blob]
            raise VlalInputError(f"{path} is not a vlal prompt file" + (f" (missing {missing})" if missing else ""))
        if blob["tuner"] != self.kind:
            raise VlalInputError(f"{path} holds {blob['tuner']} prompts; this tuner is {self.kind}")
        if blob["config"] != self._config():
            raise VlalInputError(f"{path} was saved with settings {blob['config']}; this tuner has {self._config()}")
        if list(blob["class_names"]) != self.class_names:
            raise VlalInputError(f"{path} was tuned for other class names (first: {blob['class_names'][:3]})")
        if "predict" in blob and blob["predict"] != self._predict_settings():  # files of vlal <= stop 22 lack it
            raise VlalInputError(f"{path} was tuned with {blob['predict']}; this tuner has {self._predict_settings()}")
        same = blob["model_name"] == self.clip.model_name and same_weights(str(blob["weights_id"]), self.clip.weights_id)
        if not same:
            msg = (f"{path} was tuned on {blob['model_name']} ({blob['weights_id']}); this tuner's model is "
                   f"{self.clip.model_name} ({self.clip.weights_id})")
            if not other_weights:
                raise VlalInputError(msg + "; pass other_weights=True to load it anyway")
            warn_caller(msg, UserWarning)
        state = blob["state"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise VlalInputError(f"{path}: 'state' must map names to tensors")
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise VlalInputError(f"{path}: prompt tensor {bad[0]!r} holds NaN or inf")
        before = {k: v.detach().clone() for k, v in self.prompts.state_dict().items()}
        try:
            self.prompts.load_state_dict({k: v.to(self.device) for k, v in state.items()})
        except RuntimeError as err:  # torch may have copied the tensors that fit: put the prompts back
            self.prompts.load_state_dict(before)
            first = (str(err).strip().splitlines() or ["?"])[0][:300]
            raise VlalInputError(f"{path}: its prompt tensors do not fit this tuner ({first})") from None
        self.tuned = bool(blob["tuned"])
        self._text_cache = None
        return self

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.clip.model_name!r}, n_classes={self.n_classes}, epochs={self.epochs}, "
            f"batch_size={self.batch_size}, lr={self.lr}, trainable={self.n_trainable()}, tuned={self.tuned})"
        )

    # ------------------------------------------------------------------ helpers
    def _images(self, inputs) -> torch.Tensor:
        """Preprocessed image tensor (n, 3, H, W) of every row of ``inputs``."""
        src = as_image_source(inputs)
        return src.batch(slice(0, len(src)), self.clip.preprocess).to(self.device)

    def _image_features_frozen(self, inputs) -> torch.Tensor:
        """Normalised features (n, d): 2-D inputs are taken as cached image features."""
        if isinstance(inputs, (np.ndarray, torch.Tensor)) and np.ndim(inputs) == 2:
            x = torch.as_tensor(np.asarray(inputs) if isinstance(inputs, np.ndarray) else inputs).float()
            if x.shape[1] != self.clip.embed_dim:
                raise VlalInputError(
                    f"features have d={x.shape[1]} but the model's embedding has d={self.clip.embed_dim}"
                )
            if not torch.isfinite(x).all():
                raise VlalInputError("features contain NaN or inf")
            zero = torch.nonzero(x.norm(dim=1) == 0)
            if zero.numel():
                raise VlalInputError(f"features row {int(zero[0, 0])} has zero norm (no direction to normalise)")
            return F.normalize(x.to(self.device), dim=-1)
        feats = encode_images(self.clip, inputs, batch_size=self.config.eval_batch_size, progress=False)
        return torch.from_numpy(feats).to(self.device)


def _normal_(t: torch.Tensor, gen: torch.Generator, std: float) -> None:
    t.copy_(torch.randn(t.shape, generator=gen) * std)


def _uniform_(t: torch.Tensor, gen: torch.Generator, bound: float) -> None:
    t.copy_((torch.rand(t.shape, generator=gen) * 2 - 1) * bound)


class CoOp(PromptTuner):
    """CoOp: a shared learnable text context ``[V_1 .. V_M] [CLASS].`` (Zhou et al., IJCV 2022).

    Paper Sec. 3.2: ``t_i = h([V_1, ..., V_M, C_i])``, one context shared by all classes,
    class token at the end, context initialised from the token embeddings of
    ``"a photo of a"`` (so M = 4 and the untrained tuner *is* zero-shot CLIP with the
    prompt "a photo of a {class}."). Only the M context vectors (a :class:`TextContext`)
    are trained.

    Inputs: cached image features (n, d) — the image encoder is frozen, so one training
    step costs one text-encoder pass over the K prompts — or images (folder, paths, PIL
    images, preprocessed tensors), encoded once per call. No data augmentation is applied
    (features are fixed).

    Parameters
    ----------
    clip : ClipModel
    class_names : sequence of str (K,)
    config : CoOpConfig, optional
    ctx_init : str or None, default "a photo of a"
        Words whose embeddings initialise the context; None: random N(0, 0.02^2) vectors.
    n_ctx : int, optional
        Context length M; default: the number of tokens of ``ctx_init`` (4), or 16 when
        ``ctx_init`` is None (CoOp's default).
    epochs : int, default 200
    batch_size : int, default 32
    lr : float, default 0.002
    momentum : float, default 0.9
    weight_decay : float, default 0.005
        SGD with a cosine schedule: the paper's settings (Safaei & Patel, Sec. 5).
    warmup_epochs : int, default 1
        One epoch at ``warmup_lr`` = 1e-5 first, as in CoOp's released configuration.
    **settings
        Other fields of :class:`CoOpConfig` / :class:`PromptTunerConfig` (temperature,
        seed, progress, ...).

    Raises
    ------
    vlal.VlalInputError
        Empty class names, ``n_ctx`` longer than ``ctx_init``, bad settings; from ``fit``
        / ``predict_proba``: labels out of range, features of the wrong dimension.
    """

    kind = "CoOp"
    config_class = CoOpConfig

    def _build(self) -> TextContext:
        cfg = self.config
        self.tower = text_tower(self.clip.model)
        n_words = None if cfg.ctx_init is None else TextContext.n_words(self.clip.tokenizer, cfg.ctx_init)
        if cfg.n_ctx is None:
            n_ctx = 16 if n_words is None else n_words
        else:
            n_ctx = cfg.n_ctx
            if n_words is not None and n_ctx != n_words:
                raise VlalInputError(f"ctx_init={cfg.ctx_init!r} has {n_words} tokens but n_ctx={n_ctx}")
        self.n_ctx = n_ctx
        return TextContext(self.tower, self.clip.tokenizer, self.class_names, cfg.ctx_init, n_ctx, self.device)

    def _reset(self, gen):
        self.prompts.reset(gen)

    def _config(self) -> dict:
        return {"n_ctx": self.n_ctx, "ctx_init": self.config.ctx_init}

    def text_features(self) -> torch.Tensor:
        """Normalised class text features (K, d) of the current context (differentiable)."""
        return self.prompts()

    def _prepare(self, inputs):
        return self._image_features_frozen(inputs)

    def _logits(self, x, gen=None):
        return x @ self.text_features().T / self.config.temperature

    def _predict_logits(self, inputs):
        x = self._image_features_frozen(inputs)
        if self._text_cache is None:
            self._text_cache = self.text_features().detach()
        return x @ self._text_cache.T / self.config.temperature


class _ImagePromptTuner(PromptTuner):
    """Tuners whose prompts live inside the image transformer: inputs must be images."""

    inputs = "images"

    def _prepare(self, inputs):
        return self._images(inputs)

    def _augment(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """torchvision's random resized crop (scale 0.08-1, ratio 3/4-4/3) and horizontal flip, per image.

        Applied to preprocessed tensors; both commute with the per-channel normalisation.
        The crop is resized back bilinearly without antialiasing. torchvision draws from
        torch's global generator: it is forked and seeded from ``gen``, so a ``fit`` stays
        reproducible and leaves the global generator untouched.
        """
        if not self.config.augment or gen is None:
            return x
        from torchvision import transforms as T

        augment = T.Compose([
            T.RandomResizedCrop(tuple(x.shape[-2:]), scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                                interpolation=T.InterpolationMode.BILINEAR, antialias=False),
            T.RandomHorizontalFlip(0.5),
        ])
        seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return torch.stack([augment(img) for img in x])

    @abc.abstractmethod
    def _prompted_image_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image features (n, d), not normalised, of preprocessed images with the current prompts."""

    @abc.abstractmethod
    def _class_text(self, train: bool) -> torch.Tensor:
        """Normalised class text features (K, d): differentiable when ``train``, else may be cached."""

    def _logits(self, x, gen=None):
        feats = F.normalize(self._prompted_image_features(self._augment(x, gen)), dim=-1)
        return feats @ self._class_text(train=True).T / self.config.temperature

    def _predict_logits(self, inputs):
        src = as_image_source(inputs)
        t, bs = self.config.temperature, self.config.eval_batch_size
        if not self.tuned:  # zero-shot CLIP: no prompts at all
            feats = torch.from_numpy(encode_images(self.clip, src, batch_size=bs, progress=False)).to(self.device)
            return feats @ self.zero_shot_text.T / t
        text = self._class_text(train=False)
        out = []
        for batch in src.batches(self.clip.preprocess, bs):
            f = F.normalize(self._prompted_image_features(batch.to(self.device)), dim=-1)
            out.append(f @ text.T / t)
        return torch.cat(out)


class VPT(_ImagePromptTuner):
    """VPT-deep for CLIP: learnable tokens in the input of every image-transformer layer (Jia et al., ECCV 2022).

    ``n_tokens`` prompt vectors are appended to the patch tokens before the first layer
    and replaced by new ones before each of the next ``prompt_depth - 1`` layers; the
    text side is fixed (zero-shot text features of ``template``), so CLIP's text
    embeddings act as the classifier. Only the prompt tokens, shape
    ``(prompt_depth, n_tokens, width)``, are trained.

    Before any ``fit`` (and after a fit on no labels) predictions are zero-shot CLIP; a
    fit draws the prompts afresh (N(0, 0.02^2), seeded) and trains them.

    Defaults are those of the VPT configuration released with MaPLe (Khattak et al.,
    ``configs/trainers/VPT/vit_b16_c2_ep5_batch4_4.yaml`` in
    github.com/muzairkhattak/multimodal-prompt-learning): 8 tokens in all 12 layers,
    SGD lr 0.0025, batch 4, 5 epochs, cosine schedule after one warm-up epoch at 1e-5,
    random-resized-crop + flip augmentation; momentum 0.9 and weight decay 5e-4 are
    Dassl's defaults there. The active-learning paper does not state its VPT settings.

    Inputs: images (a folder, a list of paths / PIL images / (3, H, W) tensors, or a
    preprocessed (n, 3, H, W) tensor). Feature matrices are rejected.

    Parameters
    ----------
    clip : ClipModel
        Must have open_clip's VisionTransformer image tower.
    class_names : sequence of str (K,)
    config : VPTConfig, optional
    n_tokens : int, default 8
    prompt_depth : int, optional
        Layers that get prompts (from the first); default all.
    epochs, batch_size, lr, momentum, weight_decay, warmup_epochs : training settings
    augment : bool, default True
    **settings
        Other fields of :class:`VPTConfig` / :class:`PromptTunerConfig`.

    Raises
    ------
    vlal.VlalInputError
        Non-ViT image tower, ``prompt_depth`` above the number of layers, non-image inputs.
    """

    kind = "VPT"
    config_class = VPTConfig

    def _build(self) -> torch.nn.Module:
        visual = self.clip.model.visual
        check_vit(visual)
        layers = len(visual.transformer.resblocks)
        depth = layers if self.config.prompt_depth is None else self.config.prompt_depth
        if depth > layers:
            raise VlalInputError(f"prompt_depth={depth} exceeds the {layers} layers of the image transformer")
        self.prompt_depth = depth
        width = int(visual.conv1.out_channels)
        prompts = torch.nn.Module()
        prompts.visual = torch.nn.Parameter(torch.empty(depth, self.config.n_tokens, width))
        return prompts

    def _reset(self, gen):
        _normal_(self.prompts.visual.data, gen, 0.02)

    def _config(self):
        return {"n_tokens": self.config.n_tokens, "prompt_depth": self.prompt_depth}

    def _prompted_image_features(self, x):
        p = self.prompts.visual
        return encode_image_prompted(self.clip.model.visual, x, shallow=p[0], deep=list(p[1:]))

    def _class_text(self, train):
        return self.zero_shot_text


class MaPLe(_ImagePromptTuner):
    """MaPLe: coupled vision-language prompts (Khattak et al., CVPR 2023).

    Language prompts: ``n_ctx`` context vectors in the first text layer (a
    :class:`TextContext` initialised from the first ``n_ctx`` tokens of ``ctx_init``; the
    prompt reads "a photo of a {class}."), and new ones replacing them before each of the
    next ``prompt_depth - 1`` text layers (N(0, 0.02^2)). Vision prompts are not free
    parameters: before image layer ``j`` they are a linear coupling function of the
    language prompts of text layer ``j``, ``V_j = F_j(P_j)``, ``F_j`` a Linear(text width
    -> vision width), one per layer. Trained: the language prompts and the coupling
    functions.

    Before any ``fit`` (and after a fit on no labels) predictions are zero-shot CLIP; a
    fit re-initialises the prompts (seeded) and trains them.

    Defaults are those of MaPLe's released configuration
    (``configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml``, github.com/muzairkhattak/
    multimodal-prompt-learning): 2 context tokens, depth J = 9, ``ctx_init`` "a photo of a",
    SGD lr 0.0035, batch 4, 5 epochs, cosine schedule after one warm-up epoch at 1e-5,
    random-resized-crop + flip; momentum 0.9 and weight decay 5e-4 (Dassl defaults). The
    active-learning paper does not state its MaPLe settings.

    Inputs: images, as for :class:`VPT`.

    Parameters
    ----------
    clip : ClipModel
        Must have open_clip's VisionTransformer image tower and text transformer.
    class_names : sequence of str (K,)
    config : MaPLeConfig, optional
    n_ctx : int, default 2
    prompt_depth : int, default 9
        J; at most the number of layers of both towers.
    ctx_init : str or None, default "a photo of a"
    epochs, batch_size, lr, momentum, weight_decay, warmup_epochs : training settings
    augment : bool, default True
    **settings
        Other fields of :class:`MaPLeConfig` / :class:`PromptTunerConfig`.

    Raises
    ------
    vlal.VlalInputError
        Non-ViT image tower, ``prompt_depth`` above the number of layers, non-image inputs.
    """

    kind = "MaPLe"
    config_class = MaPLeConfig

    def _build(self) -> TextContext:
        cfg = self.config
        visual = self.clip.model.visual
        check_vit(visual)
        self.tower = text_tower(self.clip.model)
        layers = min(len(visual.transformer.resblocks), self.tower.n_layers)
        if cfg.prompt_depth > layers:
            raise VlalInputError(f"prompt_depth={cfg.prompt_depth} exceeds the {layers} layers of the towers")
        # the text context holds every prompt parameter, so the saved keys stay those of format version 1
        prompts = TextContext(self.tower, self.clip.tokenizer, self.class_names, cfg.ctx_init, cfg.n_ctx, self.device)
        wt, wv, j = self.tower.width, int(visual.conv1.out_channels), cfg.prompt_depth
        prompts.text_deep = torch.nn.Parameter(torch.empty(j - 1, cfg.n_ctx, wt))
        # coupling functions F_0 .. F_{J-1}: Linear(wt -> wv), stacked
        prompts.couple_weight = torch.nn.Parameter(torch.empty(j, wv, wt))
        prompts.couple_bias = torch.nn.Parameter(torch.empty(j, wv))
        return prompts

    def _reset(self, gen):
        self.prompts.reset(gen)
        _normal_(self.prompts.text_deep.data, gen, 0.02)
        bound = 1.0 / math.sqrt(self.tower.width)  # torch.nn.Linear's default init range
        _uniform_(self.prompts.couple_weight.data, gen, bound)
        _uniform_(self.prompts.couple_bias.data, gen, bound)

    def _config(self):
        cfg = self.config
        return {"n_ctx": cfg.n_ctx, "prompt_depth": cfg.prompt_depth, "ctx_init": cfg.ctx_init}

    def _vision_prompts(self) -> list[torch.Tensor]:
        p = self.prompts
        lang = [p.ctx] + list(p.text_deep)
        return [lang[i] @ p.couple_weight[i].T + p.couple_bias[i] for i in range(self.config.prompt_depth)]

    def text_features(self) -> torch.Tensor:
        """Normalised class text features (K, d) with the current language prompts (differentiable)."""
        return self.prompts(deep_prompts=list(self.prompts.text_deep))

    def _prompted_image_features(self, x):
        v = self._vision_prompts()
        return encode_image_prompted(self.clip.model.visual, x, shallow=v[0], deep=v[1:])

    def _class_text(self, train):
        if train:
            return self.text_features()
        if self._text_cache is None:
            self._text_cache = self.text_features().detach()
        return self._text_cache
