"""Forward passes over open_clip's towers with prompt tokens inserted (CoOp, VPT, MaPLe).

These re-run the blocks of ``model.transformer.resblocks`` (text) and
``model.visual.transformer.resblocks`` (image) one by one so that prompt tokens can
be placed in the input sequence and replaced before chosen layers. Without prompts
they reproduce ``model.encode_text`` / ``model.visual`` (checked in the tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from ..exceptions import VlalInputError

__all__ = ["TextTower", "text_tower", "check_vit", "encode_text_prompted", "encode_image_prompted"]


@dataclass
class TextTower:
    """The parts of an open_clip text tower used by the prompted forward."""

    token_embedding: torch.nn.Embedding
    positional_embedding: torch.Tensor
    transformer: torch.nn.Module
    ln_final: torch.nn.Module
    text_projection: object
    attn_mask: torch.Tensor | None
    pool_type: str
    eos_id: int | None

    @property
    def width(self) -> int:
        return int(self.token_embedding.embedding_dim)

    @property
    def n_layers(self) -> int:
        return len(self.transformer.resblocks)


def text_tower(model) -> TextTower:
    """The text tower of an open_clip ``CLIP`` or ``CustomTextCLIP`` (open_clip's own text transformer).

    Raises
    ------
    vlal.VlalInputError
        Hugging Face text towers, or text towers with an appended class token (CoCa).
    """
    src = model
    if not hasattr(model, "token_embedding"):
        src = getattr(model, "text", None)
        if src is None or not hasattr(src, "token_embedding") or not hasattr(src, "transformer"):
            raise VlalInputError(
                f"prompt tuning needs open_clip's own text transformer; {type(model).__name__} has "
                f"{type(src).__name__} (e.g. a Hugging Face text tower), which is not supported"
            )
        if getattr(src, "cls_emb", None) is not None or getattr(src, "use_pad_mask", False):
            raise VlalInputError("text towers with a class token or padding mask (CoCa-style) are not supported")
    pool_type = getattr(src, "text_pool_type", None) or getattr(src, "pool_type", "argmax")
    eos_id = getattr(src, "text_eos_id", None) if hasattr(src, "text_eos_id") else getattr(src, "eos_id", None)
    return TextTower(
        token_embedding=src.token_embedding,
        positional_embedding=src.positional_embedding,
        transformer=src.transformer,
        ln_final=src.ln_final,
        text_projection=src.text_projection,
        attn_mask=getattr(src, "attn_mask", None),
        pool_type=pool_type,
        eos_id=eos_id,
    )


def _pool_positions(tower: TextTower, token_ids: torch.Tensor) -> torch.Tensor:
    if tower.pool_type == "argmax":
        return token_ids.argmax(dim=-1)
    if tower.pool_type == "eos":
        return (token_ids == tower.eos_id).int().argmax(dim=-1)
    if tower.pool_type == "first":
        return torch.zeros(token_ids.shape[0], dtype=torch.long, device=token_ids.device)
    if tower.pool_type == "last":
        return torch.full((token_ids.shape[0],), token_ids.shape[1] - 1, dtype=torch.long, device=token_ids.device)
    raise VlalInputError(f"text pool type {tower.pool_type!r} is not supported for prompt tuning")


def _run_block(block, x: torch.Tensor, batch_first: bool, attn_mask=None) -> torch.Tensor:
    if batch_first:
        return block(x, attn_mask=attn_mask)
    return block(x.transpose(0, 1), attn_mask=attn_mask).transpose(0, 1)


def encode_text_prompted(
    tower: TextTower,
    embeddings: torch.Tensor,
    token_ids: torch.Tensor,
    deep_prompts: Sequence[torch.Tensor] | None = None,
    prompt_start: int = 1,
) -> torch.Tensor:
    """Text features from token embeddings, with optional deep prompts (MaPLe's language side).

    Parameters
    ----------
    tower : TextTower
    embeddings : FloatTensor (K, L, w)
        Token embeddings of the prompts (learnable context already in place).
    token_ids : LongTensor (K, L)
        The tokenised prompts (for the pooling position: the end-of-text token).
    deep_prompts : sequence of FloatTensor (n, w), optional
        ``deep_prompts[j]`` replaces positions ``prompt_start .. prompt_start + n`` of
        the sequence before layer ``j + 1`` (Khattak et al., CVPR 2023, Sec. 3.2).
    prompt_start : int, default 1
        First prompt position (after the start-of-text token).

    Returns
    -------
    FloatTensor (K, d), not normalised.

    Notes
    -----
    With a causal mask, positions after the pooled (end-of-text) token cannot influence
    it, so the sequence is cut after the last end-of-text position: the result is the
    same as on the full context, for a fraction of the cost.
    """
    pos = _pool_positions(tower, token_ids)
    length = embeddings.shape[1]
    mask = tower.attn_mask
    if mask is not None and tower.pool_type in ("argmax", "eos"):
        length = min(length, int(pos.max()) + 1)
    x = embeddings[:, :length] + tower.positional_embedding[:length].to(embeddings.dtype)
    if mask is not None:
        mask = mask[:length, :length].to(x.dtype)
    batch_first = getattr(tower.transformer, "batch_first", True)
    deep = list(deep_prompts or [])
    for i, block in enumerate(tower.transformer.resblocks):
        if 1 <= i <= len(deep):
            p = deep[i - 1]
            n = p.shape[0]
            p = p.unsqueeze(0).expand(x.shape[0], -1, -1)
            x = torch.cat([x[:, :prompt_start], p, x[:, prompt_start + n :]], dim=1)
        x = _run_block(block, x, batch_first, attn_mask=mask)
    x = tower.ln_final(x)
    pooled = x[torch.arange(x.shape[0], device=x.device), pos]
    proj = tower.text_projection
    if proj is None:
        return pooled
    if isinstance(proj, torch.nn.Linear):
        return proj(pooled)
    return pooled @ proj


def check_vit(visual) -> None:
    """Raise unless ``visual`` is open_clip's own ViT (VPT and MaPLe insert tokens into it).

    Raises
    ------
    vlal.VlalInputError
        ResNet or timm image towers, or attentional pooling.
    """
    from open_clip.transformer import VisionTransformer

    if not isinstance(visual, VisionTransformer):
        raise VlalInputError(
            f"VPT and MaPLe need open_clip's VisionTransformer image tower; got {type(visual).__name__} "
            "(use CoOp, which works with any image tower)"
        )
    if getattr(visual, "attn_pool", None) is not None:
        raise VlalInputError("image towers with attentional pooling are not supported by VPT / MaPLe")


def encode_image_prompted(
    visual,
    images: torch.Tensor,
    shallow: torch.Tensor | None = None,
    deep: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Image features of open_clip's ViT with visual prompt tokens (VPT-deep / MaPLe vision side).

    Parameters
    ----------
    visual : open_clip.transformer.VisionTransformer
    images : FloatTensor (B, 3, H, W), preprocessed
    shallow : FloatTensor (n, width), optional
        Prompt tokens appended after the patch tokens, before ``ln_pre`` and layer 0
        (no positional embedding), as in VPT / MaPLe.
    deep : sequence of FloatTensor (n, width), optional
        ``deep[j]`` replaces the ``n`` prompt tokens before layer ``j + 1``.

    Returns
    -------
    FloatTensor (B, d), not normalised. The prompt tokens are dropped before pooling.
    """
    b = images.shape[0]
    x = visual.conv1(images.to(visual.conv1.weight.dtype))
    x = x.reshape(b, x.shape[1], -1).permute(0, 2, 1)
    cls = visual.class_embedding.to(x.dtype).view(1, 1, -1).expand(b, -1, -1)
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
    n = 0
    if shallow is not None:
        n = shallow.shape[0]
        x = torch.cat([x, shallow.to(x.dtype).unsqueeze(0).expand(b, -1, -1)], dim=1)
    x = visual.ln_pre(x)
    deep = list(deep or [])
    if deep and n == 0:
        raise VlalInputError("deep visual prompts need shallow ones of the same length")
    batch_first = getattr(visual.transformer, "batch_first", True)
    for i, block in enumerate(visual.transformer.resblocks):
        if 1 <= i <= len(deep):
            x = torch.cat([x[:, :-n], deep[i - 1].to(x.dtype).unsqueeze(0).expand(b, -1, -1)], dim=1)
        x = _run_block(block, x, batch_first)
    if n:
        x = x[:, :-n]
    # open_clip's pooling without attentional pooling: ln_post then class token (or mean)
    if getattr(visual, "final_ln_after_pool", False):
        pooled = visual.ln_post(_global_pool(visual, x))
    else:
        pooled = _global_pool(visual, visual.ln_post(x))
    if visual.proj is not None:
        pooled = pooled @ visual.proj
    return pooled


def _global_pool(visual, x: torch.Tensor) -> torch.Tensor:
    kind = getattr(visual, "pool_type", "tok")
    if kind == "tok":
        return x[:, 0]
    if kind == "avg":
        return x[:, 1:].mean(dim=1)
    raise VlalInputError(f"image pool type {kind!r} is not supported by VPT / MaPLe")


def normalize(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=-1)
