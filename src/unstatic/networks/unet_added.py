"""What the U-Net adds to its time embedding besides the timestep: a plain vector (``addition_embed_dim``), or
SDXL's "text_time" conditioning (Podell et al. 2023, "SDXL: Improving Latent Diffusion Models for
High-Resolution Image Synthesis", Sec. 2.2): the pooled text embedding concatenated with sinusoidal features of
six numbers, the original image size ``(h, w)``, the crop's top-left corner ``(top, left)`` and the target size
``(h, w)``, each embedded like a timestep into ``addition_time_embed_dim`` channels. ``add_embedding`` (an MLP,
diffusers' name) maps the result into the time embedding's width. Names follow diffusers' ``added_cond_kwargs``
(``text_embeds``, ``time_ids``), so the condition reads the same in both libraries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from unstatic.networks.embeddings import timestep_embedding

TEXT_TIME = "text_time"
TEXT_TIME_KEYS = ("text_embeds", "time_ids")
TIME_IDS = 6  # original (h, w), crop (top, left), target (h, w)


def added_input_dim(config: Any) -> int | None:
    """The width ``add_embedding`` reads (None: the U-Net has no added conditioning)."""
    if config.addition_embed_type == TEXT_TIME:
        return config.projection_class_embeddings_input_dim
    return config.addition_embed_dim


def text_embeds_dim(config: Any) -> int:
    """The pooled text width a "text_time" U-Net expects: what is left of its MLP's input after the time ids."""
    return config.projection_class_embeddings_input_dim - TIME_IDS * config.addition_time_embed_dim


def added_features(config: Any, added: Tensor | Mapping[str, Tensor]) -> Tensor:
    """``add_embedding``'s input ``[B, added_input_dim]``: ``added`` itself, or for "text_time"
    ``cat(text_embeds, sinusoidal(time_ids))`` (SDXL Sec. 2.2, Eq. in "Conditioning the Model on Image Size")."""
    if config.addition_embed_type != TEXT_TIME:
        return added
    text, ids = added["text_embeds"], added["time_ids"]
    # every number gets its own addition_time_embed_dim-wide embedding, laid side by side: [B, 6 * dim]
    features = timestep_embedding(ids.reshape(-1), config.addition_time_embed_dim, config.flip_sin_to_cos, config.freq_shift)
    return torch.cat([text, features.reshape(text.shape[0], -1).to(text.dtype)], dim=-1)


def check_added(config: Any, added: Any, batch: int) -> None:
    """Raise naming what is wrong with ``cond['added']`` for this U-Net (None when it takes none)."""
    width = added_input_dim(config)
    if width is None:
        if added is not None:
            raise ValueError("the U-Net has no add_embedding (addition_embed_dim is None) but got cond['added']")
        return
    if config.addition_embed_type != TEXT_TIME:
        if not isinstance(added, Tensor) or added.ndim != 2 or tuple(added.shape) != (batch, width):
            shape = tuple(added.shape) if isinstance(added, Tensor) else type(added).__name__
            raise ValueError(f"cond['added'] must have shape [B, addition_embed_dim] = [{batch}, {width}], got {shape}")
        return
    if not isinstance(added, Mapping) or set(added) != set(TEXT_TIME_KEYS):
        got = sorted(added) if isinstance(added, Mapping) else type(added).__name__
        raise ValueError(f"this U-Net (addition_embed_type 'text_time', SDXL) needs cond['added'] = "
                         f"{{'text_embeds': [B, {text_embeds_dim(config)}], 'time_ids': [B, {TIME_IDS}]}}, got {got}")
    for key, expected in (("text_embeds", (batch, text_embeds_dim(config))), ("time_ids", (batch, TIME_IDS))):
        if tuple(added[key].shape) != expected:
            raise ValueError(f"cond['added']['{key}'] must have shape {list(expected)}, got {list(added[key].shape)}")
