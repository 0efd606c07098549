"""Prompt tuners for CLIP that implement the loop's ``Tuner`` protocol: CoOp, VPT, MaPLe.

Each tuner trains only its prompt parameters; every weight of the CLIP model stays
frozen (``requires_grad=False``). ``fit(inputs, labels)`` restarts from the prompts'
initial state every call and trains on all the labels it is given (the paper reloads
zero-shot CLIP and re-tunes after every active-learning round); ``predict_proba``
returns Eq. 1 probabilities ``softmax(cos(f(x), t_i) / T)`` of the current model.

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

import math
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .._io import atomic_write
from ..exceptions import VlalInputError
from ..tuners import Tuner
from ._encode import DEFAULT_TEMPLATE, _check_clip, encode_class_names, encode_images, prompt_texts
from ._images import as_image_source
from ._loading import ClipModel
from ._towers import check_vit, encode_image_prompted, encode_text_prompted, text_tower

__all__ = ["PromptTuner", "CoOp", "VPT", "MaPLe"]

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


class PromptTuner(Tuner):
    """Shared machinery of the prompt tuners (training loop, prediction, save / load).

    Subclasses define the prompt parameters (:meth:`_build`, :meth:`_reset`), how
    inputs become training tensors (:meth:`_prepare`) and the logits (:meth:`_logits`).

    Parameters
    ----------
    clip : ClipModel
        From :func:`vlal.clip.load_clip`; frozen here (``requires_grad=False`` on all
        of its parameters, eval mode).
    class_names : sequence of str (K,)
    template : str, default "a photo of a {}."
        Hand-written prompt of the zero-shot text features.
    temperature : float, default 0.01
        ``T`` of Eq. 1, in training and prediction.
    epochs, batch_size, lr, momentum, weight_decay : training settings (SGD)
    warmup_epochs : int
        Epochs at the constant ``warmup_lr`` before the cosine schedule (Dassl-style).
    warmup_lr : float, default 1e-5
    eval_batch_size : int, default 64
        Images per forward pass in prediction.
    seed : int, default 0
        Fixes prompt initialisation, shuffling and augmentation: ``fit`` is reproducible.
    progress : bool, default False
        tqdm bar over epochs.
    """

    #: Short name written into saved prompt files.
    kind = "prompt"

    def __init__(
        self,
        clip: ClipModel,
        class_names: Sequence[str],
        *,
        template: str = DEFAULT_TEMPLATE,
        temperature: float = 0.01,
        epochs: int,
        batch_size: int,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float,
        warmup_epochs: int = 1,
        warmup_lr: float = 1e-5,
        eval_batch_size: int = 64,
        seed: int = 0,
        progress: bool = False,
    ):
        self.clip = _check_clip(clip)
        self.clip.model.eval()
        self.clip.model.requires_grad_(False)
        prompt_texts(class_names, template)  # validates
        self.class_names = [str(n) for n in class_names]
        self.template = template
        if not temperature > 0:
            raise VlalInputError(f"temperature must be > 0; got {temperature}")
        self.temperature = float(temperature)
        self.epochs = _check_pos_int(epochs, "epochs")
        self.batch_size = _check_pos_int(batch_size, "batch_size")
        self.lr = _check_nonneg(lr, "lr")
        self.momentum = _check_nonneg(momentum, "momentum")
        self.weight_decay = _check_nonneg(weight_decay, "weight_decay")
        self.warmup_epochs = int(warmup_epochs)
        if self.warmup_epochs < 0:
            raise VlalInputError(f"warmup_epochs must be >= 0; got {warmup_epochs}")
        self.warmup_lr = _check_nonneg(warmup_lr, "warmup_lr")
        self.eval_batch_size = _check_pos_int(eval_batch_size, "eval_batch_size")
        self.seed = int(seed)
        self.progress = bool(progress)
        self.device = self.clip.device
        zs = encode_class_names(self.clip, self.class_names, template)
        self.zero_shot_text = torch.from_numpy(zs).to(self.device)
        self.prompts = torch.nn.Module()
        self._build()
        self.prompts.to(self.device)
        self._reset(torch.Generator().manual_seed(self.seed))
        self.tuned = False
        self.loss_history_: list[float] = []
        self._text_cache: torch.Tensor | None = None

    # ------------------------------------------------------------------ hooks
    def _build(self) -> None:  # create parameters (shapes) and fixed tensors
        raise NotImplementedError

    def _reset(self, gen: torch.Generator) -> None:  # initial (pre-training) prompt values
        raise NotImplementedError

    def _prepare(self, inputs) -> torch.Tensor:  # training inputs, all rows
        raise NotImplementedError

    def _logits(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def _predict_logits(self, inputs) -> torch.Tensor:
        raise NotImplementedError

    def _config(self) -> dict:  # shape-defining settings, checked by load_prompts
        return {}

    # ------------------------------------------------------------------ public
    @property
    def n_classes(self) -> int:
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

    def _lr_at(self, epoch: int) -> float:
        if epoch < self.warmup_epochs:
            return self.warmup_lr
        return 0.5 * self.lr * (1.0 + math.cos(math.pi * epoch / self.epochs))

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
        gen = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            self._reset(gen)
        self.tuned = False
        self._text_cache = None
        self.loss_history_ = []
        y_np = self._check_labels(labels)
        if y_np.size == 0:
            return self
        x = self._prepare(inputs)
        self._check_labels(y_np, x.shape[0])
        y = torch.from_numpy(y_np).to(self.device)
        params = self.prompt_parameters()
        opt = torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        n = x.shape[0]
        # Dassl's train loader (CoOp / MaPLe code) drops the last partial batch once n >= batch size
        drop_last = n >= self.batch_size
        from tqdm.auto import tqdm

        for epoch in tqdm(range(self.epochs), desc=f"{self.kind} fit", disable=not self.progress, leave=False):
            for group in opt.param_groups:
                group["lr"] = self._lr_at(epoch)
            perm = torch.randperm(n, generator=gen)
            stop = n - n % self.batch_size if drop_last else n
            total, count = 0.0, 0
            for s in range(0, stop, self.batch_size):
                idx = perm[s : s + self.batch_size].to(self.device)
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
                    "tuned": bool(self.tuned),
                    "state": state,
                },
                fh,
            )

    def load_prompts(self, path):
        """Load prompts written by :meth:`save_prompts` of the same tuner type and settings.

        Returns
        -------
        self

        Raises
        ------
        vlal.VlalInputError
            Not a vlal prompt file, another tuner type, other shape settings or class names.
        FileNotFoundError
            No such file.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no prompt file at {path}")
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != _FORMAT:
            raise VlalInputError(f"{path} is not a vlal prompt file")
        if blob["tuner"] != self.kind:
            raise VlalInputError(f"{path} holds {blob['tuner']} prompts; this tuner is {self.kind}")
        if blob["config"] != self._config():
            raise VlalInputError(f"{path} was saved with settings {blob['config']}; this tuner has {self._config()}")
        if list(blob["class_names"]) != self.class_names:
            raise VlalInputError(f"{path} was tuned for other class names (first: {blob['class_names'][:3]})")
        if blob["model_name"] != self.clip.model_name or blob["weights_id"] != self.clip.weights_id:
            warnings.warn(
                f"{path} was tuned on {blob['model_name']} ({blob['weights_id']}); loading it into "
                f"{self.clip.model_name} ({self.clip.weights_id})",
                stacklevel=2,
            )
        self.prompts.load_state_dict({k: v.to(self.device) for k, v in blob["state"].items()})
        self.tuned = bool(blob["tuned"])
        self._text_cache = None
        return self

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.clip.model_name!r}, K={self.n_classes}, epochs={self.epochs}, "
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
            return F.normalize(x.to(self.device), dim=-1)
        feats = encode_images(self.clip, inputs, batch_size=self.eval_batch_size, progress=False)
        return torch.from_numpy(feats).to(self.device)

    def _tokenize_prompts(self, ctx_init: str | None, n_ctx: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Token ids (K, L) of ``"<context> <name>."`` and the init vectors of the first ``n_ctx`` context tokens."""
        tower = text_tower(self.clip.model)
        if ctx_init is not None:
            words = ctx_init.strip()
            ids = self.clip.tokenizer([words])[0]
            n_init = int(ids.argmax()) - 1  # tokens between start- and end-of-text
            if n_ctx > n_init:
                raise VlalInputError(
                    f"n_ctx={n_ctx} exceeds the {n_init} tokens of ctx_init={ctx_init!r}; "
                    "use ctx_init=None for random context vectors"
                )
            with torch.no_grad():
                init = tower.token_embedding(ids[1 : 1 + n_ctx].to(self.device)).detach().clone()
        else:
            words = " ".join(["X"] * n_ctx)
            init = None
        names = [n.replace("_", " ").strip() for n in self.class_names]
        token_ids = self.clip.tokenizer([f"{words} {n}." for n in names]).to(self.device)
        return token_ids, init


def _normal_(t: torch.Tensor, gen: torch.Generator, std: float) -> None:
    t.copy_(torch.randn(t.shape, generator=gen) * std)


def _uniform_(t: torch.Tensor, gen: torch.Generator, bound: float) -> None:
    t.copy_((torch.rand(t.shape, generator=gen) * 2 - 1) * bound)


class CoOp(PromptTuner):
    """CoOp: a shared learnable text context ``[V_1 .. V_M] [CLASS].`` (Zhou et al., IJCV 2022).

    Paper Sec. 3.2: ``t_i = h([V_1, ..., V_M, C_i])``, one context shared by all classes,
    class token at the end, context initialised from the token embeddings of
    ``"a photo of a"`` (so M = 4 and the untrained tuner *is* zero-shot CLIP with the
    prompt "a photo of a {class}."). Only the M context vectors are trained.

    Inputs: cached image features (n, d) — the image encoder is frozen, so one training
    step costs one text-encoder pass over the K prompts — or images (folder, paths, PIL
    images, preprocessed tensors), encoded once per call. No data augmentation is applied
    (features are fixed).

    Parameters
    ----------
    clip : ClipModel
    class_names : sequence of str (K,)
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
    **kwargs
        See :class:`PromptTuner` (temperature, seed, progress, ...).

    Raises
    ------
    vlal.VlalInputError
        Empty class names, ``n_ctx`` longer than ``ctx_init``, bad settings; from ``fit``
        / ``predict_proba``: labels out of range, features of the wrong dimension.
    """

    kind = "CoOp"

    def __init__(
        self,
        clip: ClipModel,
        class_names: Sequence[str],
        *,
        ctx_init: str | None = "a photo of a",
        n_ctx: int | None = None,
        epochs: int = 200,
        batch_size: int = 32,
        lr: float = 0.002,
        momentum: float = 0.9,
        weight_decay: float = 0.005,
        warmup_epochs: int = 1,
        **kwargs,
    ):
        self.ctx_init = ctx_init
        self._n_ctx_arg = n_ctx
        super().__init__(
            clip, class_names, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
            weight_decay=weight_decay, warmup_epochs=warmup_epochs, **kwargs,
        )

    def _build(self) -> None:
        self.tower = text_tower(self.clip.model)
        n_words = None
        if self.ctx_init is not None:
            n_words = int(self.clip.tokenizer([self.ctx_init.strip()])[0].argmax()) - 1
        if self._n_ctx_arg is None:
            n_ctx = 16 if n_words is None else n_words
        else:
            n_ctx = _check_pos_int(self._n_ctx_arg, "n_ctx")
            if n_words is not None and n_ctx != n_words:
                raise VlalInputError(f"ctx_init={self.ctx_init!r} has {n_words} tokens but n_ctx={n_ctx}")
        self.n_ctx = n_ctx
        self.token_ids, self._ctx_init_vectors = self._tokenize_prompts(self.ctx_init, n_ctx)
        with torch.no_grad():
            emb = self.tower.token_embedding(self.token_ids)
        self._prefix = emb[:, :1].detach()
        self._suffix = emb[:, 1 + n_ctx :].detach()
        self.prompts.ctx = torch.nn.Parameter(torch.empty(n_ctx, self.tower.width))

    def _reset(self, gen):
        if self._ctx_init_vectors is not None:
            self.prompts.ctx.data.copy_(self._ctx_init_vectors)
        else:
            _normal_(self.prompts.ctx.data, gen, 0.02)

    def _config(self) -> dict:
        return {"n_ctx": self.n_ctx, "ctx_init": self.ctx_init}

    def text_features(self) -> torch.Tensor:
        """Normalised class text features (K, d) of the current context (differentiable)."""
        k = self.n_classes
        emb = torch.cat([self._prefix, self.prompts.ctx.unsqueeze(0).expand(k, -1, -1), self._suffix], dim=1)
        return F.normalize(encode_text_prompted(self.tower, emb, self.token_ids), dim=-1)

    def _prepare(self, inputs):
        return self._image_features_frozen(inputs)

    def _logits(self, x, gen=None):
        return x @ self.text_features().T / self.temperature

    def _predict_logits(self, inputs):
        x = self._image_features_frozen(inputs)
        if self._text_cache is None:
            self._text_cache = self.text_features().detach()
        return x @ self._text_cache.T / self.temperature


class _ImagePromptTuner(PromptTuner):
    """Tuners whose prompts live inside the image transformer: inputs must be images."""

    inputs = "images"

    def __init__(self, clip, class_names, *, augment: bool = True, **kwargs):
        self.augment = bool(augment)
        super().__init__(clip, class_names, **kwargs)

    def _prepare(self, inputs):
        return self._images(inputs)

    def _augment(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """Random resized crop (scale 0.08-1, ratio 3/4-4/3) and horizontal flip, per image.

        Applied to preprocessed tensors; both commute with the per-channel normalisation.
        """
        if not self.augment or gen is None:
            return x
        b, _, h, w = x.shape
        out = []
        for i in range(b):
            img = x[i]
            for _ in range(10):
                area = h * w * float(torch.empty(1).uniform_(0.08, 1.0, generator=gen))
                logr = float(torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3), generator=gen))
                cw = int(round(math.sqrt(area * math.exp(logr))))
                ch = int(round(math.sqrt(area / math.exp(logr))))
                if 0 < cw <= w and 0 < ch <= h:
                    top = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
                    left = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
                    img = img[:, top : top + ch, left : left + cw]
                    break
            if img.shape[1:] != (h, w):
                img = F.interpolate(img.unsqueeze(0), size=(h, w), mode="bilinear", align_corners=False)[0]
            if float(torch.rand(1, generator=gen)) < 0.5:
                img = img.flip(-1)
            out.append(img)
        return torch.stack(out)

    def _prompted_image_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _class_text(self, train: bool) -> torch.Tensor:
        raise NotImplementedError

    def _logits(self, x, gen=None):
        feats = F.normalize(self._prompted_image_features(self._augment(x, gen)), dim=-1)
        return feats @ self._class_text(train=True).T / self.temperature

    def _predict_logits(self, inputs):
        src = as_image_source(inputs)
        if not self.tuned:  # zero-shot CLIP: no prompts at all
            feats = torch.from_numpy(
                encode_images(self.clip, src, batch_size=self.eval_batch_size, progress=False)
            ).to(self.device)
            return feats @ self.zero_shot_text.T / self.temperature
        text = self._class_text(train=False)
        out = []
        for batch in src.batches(self.clip.preprocess, self.eval_batch_size):
            f = F.normalize(self._prompted_image_features(batch.to(self.device)), dim=-1)
            out.append(f @ text.T / self.temperature)
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
    n_tokens : int, default 8
    prompt_depth : int, optional
        Layers that get prompts (from the first); default all.
    epochs, batch_size, lr, momentum, weight_decay, warmup_epochs : training settings
    augment : bool, default True
    **kwargs
        See :class:`PromptTuner`.

    Raises
    ------
    vlal.VlalInputError
        Non-ViT image tower, ``prompt_depth`` above the number of layers, non-image inputs.
    """

    kind = "VPT"

    def __init__(
        self,
        clip: ClipModel,
        class_names: Sequence[str],
        *,
        n_tokens: int = 8,
        prompt_depth: int | None = None,
        epochs: int = 5,
        batch_size: int = 4,
        lr: float = 0.0025,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        warmup_epochs: int = 1,
        augment: bool = True,
        **kwargs,
    ):
        self.n_tokens = _check_pos_int(n_tokens, "n_tokens")
        self._depth_arg = prompt_depth
        super().__init__(
            clip, class_names, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
            weight_decay=weight_decay, warmup_epochs=warmup_epochs, augment=augment, **kwargs,
        )

    def _build(self):
        visual = self.clip.model.visual
        check_vit(visual)
        layers = len(visual.transformer.resblocks)
        depth = layers if self._depth_arg is None else _check_pos_int(self._depth_arg, "prompt_depth")
        if depth > layers:
            raise VlalInputError(f"prompt_depth={depth} exceeds the {layers} layers of the image transformer")
        self.prompt_depth = depth
        width = int(visual.conv1.out_channels)
        self.prompts.visual = torch.nn.Parameter(torch.empty(depth, self.n_tokens, width))

    def _reset(self, gen):
        _normal_(self.prompts.visual.data, gen, 0.02)

    def _config(self):
        return {"n_tokens": self.n_tokens, "prompt_depth": self.prompt_depth}

    def _prompted_image_features(self, x):
        p = self.prompts.visual
        return encode_image_prompted(self.clip.model.visual, x, shallow=p[0], deep=list(p[1:]))

    def _class_text(self, train):
        return self.zero_shot_text


class MaPLe(_ImagePromptTuner):
    """MaPLe: coupled vision-language prompts (Khattak et al., CVPR 2023).

    Language prompts: ``n_ctx`` context vectors in the first text layer (initialised from
    the first ``n_ctx`` tokens of ``ctx_init``; the prompt reads "a photo of a {class}."),
    and new ones replacing them before each of the next ``prompt_depth - 1`` text layers
    (N(0, 0.02^2)). Vision prompts are not free parameters: before image layer ``j`` they
    are a linear coupling function of the language prompts of text layer ``j``,
    ``V_j = F_j(P_j)``, ``F_j`` a Linear(text width -> vision width), one per layer. Trained:
    the language prompts and the coupling functions.

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
    n_ctx : int, default 2
    prompt_depth : int, default 9
        J; at most the number of layers of both towers.
    ctx_init : str or None, default "a photo of a"
    epochs, batch_size, lr, momentum, weight_decay, warmup_epochs : training settings
    augment : bool, default True
    **kwargs
        See :class:`PromptTuner`.

    Raises
    ------
    vlal.VlalInputError
        Non-ViT image tower, ``prompt_depth`` above the number of layers, non-image inputs.
    """

    kind = "MaPLe"

    def __init__(
        self,
        clip: ClipModel,
        class_names: Sequence[str],
        *,
        n_ctx: int = 2,
        prompt_depth: int = 9,
        ctx_init: str | None = "a photo of a",
        epochs: int = 5,
        batch_size: int = 4,
        lr: float = 0.0035,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        warmup_epochs: int = 1,
        augment: bool = True,
        **kwargs,
    ):
        self.n_ctx = _check_pos_int(n_ctx, "n_ctx")
        self.prompt_depth = _check_pos_int(prompt_depth, "prompt_depth")
        self.ctx_init = ctx_init
        super().__init__(
            clip, class_names, epochs=epochs, batch_size=batch_size, lr=lr, momentum=momentum,
            weight_decay=weight_decay, warmup_epochs=warmup_epochs, augment=augment, **kwargs,
        )

    def _build(self):
        visual = self.clip.model.visual
        check_vit(visual)
        self.tower = text_tower(self.clip.model)
        layers = min(len(visual.transformer.resblocks), self.tower.n_layers)
        if self.prompt_depth > layers:
            raise VlalInputError(f"prompt_depth={self.prompt_depth} exceeds the {layers} layers of the towers")
        self.token_ids, self._ctx_init_vectors = self._tokenize_prompts(self.ctx_init, self.n_ctx)
        with torch.no_grad():
            emb = self.tower.token_embedding(self.token_ids)
        self._prefix = emb[:, :1].detach()
        self._suffix = emb[:, 1 + self.n_ctx :].detach()
        wt, wv, j = self.tower.width, int(visual.conv1.out_channels), self.prompt_depth
        self.prompts.ctx = torch.nn.Parameter(torch.empty(self.n_ctx, wt))
        self.prompts.text_deep = torch.nn.Parameter(torch.empty(j - 1, self.n_ctx, wt))
        # coupling functions F_0 .. F_{J-1}: Linear(wt -> wv), stacked
        self.prompts.couple_weight = torch.nn.Parameter(torch.empty(j, wv, wt))
        self.prompts.couple_bias = torch.nn.Parameter(torch.empty(j, wv))

    def _reset(self, gen):
        if self._ctx_init_vectors is not None:
            self.prompts.ctx.data.copy_(self._ctx_init_vectors)
        else:
            _normal_(self.prompts.ctx.data, gen, 0.02)
        _normal_(self.prompts.text_deep.data, gen, 0.02)
        bound = 1.0 / math.sqrt(self.tower.width)  # torch.nn.Linear's default init range
        _uniform_(self.prompts.couple_weight.data, gen, bound)
        _uniform_(self.prompts.couple_bias.data, gen, bound)

    def _config(self):
        return {"n_ctx": self.n_ctx, "prompt_depth": self.prompt_depth, "ctx_init": self.ctx_init}

    def _vision_prompts(self) -> list[torch.Tensor]:
        p = self.prompts
        lang = [p.ctx] + list(p.text_deep)
        return [lang[i] @ p.couple_weight[i].T + p.couple_bias[i] for i in range(self.prompt_depth)]

    def text_features(self) -> torch.Tensor:
        """Normalised class text features (K, d) with the current language prompts (differentiable)."""
        k = self.n_classes
        emb = torch.cat([self._prefix, self.prompts.ctx.unsqueeze(0).expand(k, -1, -1), self._suffix], dim=1)
        deep = list(self.prompts.text_deep)
        return F.normalize(encode_text_prompted(self.tower, emb, self.token_ids, deep_prompts=deep), dim=-1)

    def _prompted_image_features(self, x):
        v = self._vision_prompts()
        return encode_image_prompted(self.clip.model.visual, x, shallow=v[0], deep=v[1:])

    def _class_text(self, train):
        if train:
            return self.text_features()
        if self._text_cache is None:
            self._text_cache = self.text_features().detach()
        return self._text_cache
