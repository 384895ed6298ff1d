"""The denoising U-Net: one configurable network for pixel-space DDPM models and latent (Stable Diffusion 1.x/2.x)
models (Ronneberger et al. 2015; Ho et al. 2020, Appendix B; Dhariwal & Nichol 2021; Rombach et al. 2022).

``UNet(config)(x, timestep, cond)`` has the raw-network signature :class:`unstatic.denoisers.Preconditioned`
calls. ``cond`` is None, a context tensor ``[B, M, cross_attention_dim]`` (for a model without cross-attention
but with a class embedding, a tensor of class labels), or a mapping with any of ``context``, ``class_labels``
and ``added`` (added to the time embedding through ``add_embedding``: a vector, or for SDXL's "text_time"
conditioning the mapping ``{"text_embeds", "time_ids"}``, see :mod:`.unet_added`).

Parameter names are diffusers' (``UNet2DModel`` and ``UNet2DConditionModel``), so their checkpoints load by
name; :meth:`UNetConfig.from_diffusers` maps their ``config.json`` onto :class:`UNetConfig`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from unstatic.networks.embeddings import TimestepEmbedding, timestep_embedding
from unstatic.networks.group_norm import GroupNorm
from unstatic.networks.memory_format import activation_format, use_channels_last
from unstatic.networks.narrow_weights import input_dtype
from unstatic.networks.unet_added import added_features, added_input_dim, check_added
from unstatic.networks.unet_blocks import AttentionOptions, DownBlock, MidBlock, ResnetOptions, UpBlock
from unstatic.networks.unet_config import COND_KEYS, DOWN_BLOCKS, MID_BLOCKS, UP_BLOCKS, UNetConfig

__all__ = ["UNet", "UNetConfig"]


class UNet(nn.Module):
    """The U-Net (Ronneberger et al. 2015) as diffusion models use it (Ho et al. 2020, Appendix B):
    conv_in → down blocks (each leaves skip connections) → mid block → up blocks (each concatenates the
    matching skips) → GroupNorm, SiLU, conv_out; every residual block sees the time (+ class) embedding.

    ``gradient_checkpointing = True`` recomputes each block's activations in the backward pass instead of
    storing them when training (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost").
    """

    config_class = UNetConfig

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        self.gradient_checkpointing = False
        c = config.block_out_channels
        n = config.num_levels
        temb = config.time_embed_dim

        self.conv_in = nn.Conv2d(config.in_channels, c[0], config.conv_in_kernel, padding=config.conv_in_kernel // 2)
        self.time_embedding = TimestepEmbedding(c[0], temb)
        self.class_embedding = _class_embedding(config)
        added = added_input_dim(config)
        self.add_embedding = TimestepEmbedding(added, temb) if added else None

        resnet = ResnetOptions(temb, config.norm_num_groups, config.norm_eps, config.dropout, config.resnet_time_scale_shift)
        layers = config.per_level("layers_per_block")
        self.down_blocks = nn.ModuleList(
            DownBlock(
                c[max(i - 1, 0)], c[i], layers[i], resnet, self._attention(i, DOWN_BLOCKS[t]),
                add_downsample=i < n - 1, downsample_padding=config.downsample_padding,
            )
            for i, t in enumerate(config.down_block_types)
        )
        self.mid_block = None
        if config.mid_block_type is not None:
            kind = MID_BLOCKS[config.mid_block_type]
            attention = self._attention(n - 1, kind, mid=True) if config.mid_block_attention and config.mid_block_layers else None
            self.mid_block = MidBlock(c[-1], config.mid_block_layers, resnet, attention, config.mid_block_scale_factor)
        self.up_blocks = nn.ModuleList(
            UpBlock(
                c[max(level - 1, 0)], c[min(level + 1, n - 1)], c[level], layers[level] + 1, resnet,
                self._attention(level, UP_BLOCKS[t]), add_upsample=level > 0,
            )
            for level, t in zip(reversed(range(n)), config.up_block_types)
        )
        self.conv_norm_out = GroupNorm(config.norm_num_groups, c[0], eps=config.norm_eps)
        self.conv_out = nn.Conv2d(c[0], config.out_channels, config.conv_out_kernel, padding=config.conv_out_kernel // 2)
        if config.zero_init_out:
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)
        use_channels_last(self)  # conv weights in the activations' layout (see memory_format.py)

    def _attention(self, level: int, kind: str | None, mid: bool = False) -> AttentionOptions | None:
        """The attention of the blocks at ``level`` (diffusers' arguments for each block kind)."""
        cfg = self.config
        if kind is None:
            return None
        heads, head_dim = cfg.attention_shape(level, kind)
        if kind == "self":
            groups = cfg.norm_num_groups
            if mid:  # diffusers' UNetMidBlock2D drops the norm under scale-shift unless told otherwise
                groups = cfg.attn_norm_num_groups or (cfg.norm_num_groups if cfg.resnet_time_scale_shift == "default" else None)
            return AttentionOptions("self", heads, head_dim, groups, eps=cfg.norm_eps)
        return AttentionOptions(
            "transformer", heads, head_dim, cfg.norm_num_groups, cross_attention_dim=cfg.cross_attention_dim,
            layers=cfg.per_level("transformer_layers_per_block")[level], use_linear_projection=cfg.use_linear_projection,
            only_cross_attention=False if mid else bool(cfg.per_level("only_cross_attention")[level]),
        )

    # -- forward -----------------------------------------------------------------------------------------

    def forward(self, x: Tensor, timestep: Tensor | float, cond: Tensor | Mapping[str, Tensor] | None = None) -> Tensor:
        context, class_labels, added = self._split_cond(cond)
        self._check_inputs(x, timestep, context, class_labels, added)
        # A bf16/fp16 network takes a sampler's float32 x in its own dtype and hands back float32.
        given, dtype = x.dtype, input_dtype(self.conv_in)
        if given != dtype and x.is_floating_point():
            return self.forward(x.to(dtype), timestep, cond).to(given)
        if self.config.center_input_sample:
            x = 2 * x - 1.0
        emb = self.embed(x, timestep, class_labels, added)
        if context is not None:
            context = context.to(emb.dtype)  # e.g. a float32 text encoder feeding a bfloat16 U-Net

        # Activations in the conv weights' layout, channels-last by default, which every layer keeps (memory_format.py).
        h = self.conv_in(x.contiguous(memory_format=activation_format(self.conv_in.weight)))
        skips = [h]
        for block in self.down_blocks:
            h, block_skips = self._run(block, h, emb, context)
            skips.extend(block_skips)
        if self.mid_block is not None:
            h = self._run(self.mid_block, h, emb, context)
        for block in self.up_blocks:
            taken = len(block.resnets)
            h = self._run(block, h, skips[-taken:], emb, context)
            del skips[-taken:]
        return self.conv_out(self.conv_norm_out.with_silu(h)).contiguous()  # callers get a plain NCHW tensor

    def embed(self, x: Tensor, timestep: Tensor | float, class_labels: Tensor | None = None,
              added: Tensor | Mapping[str, Tensor] | None = None) -> Tensor:
        """The embedding every residual block sees: MLP of the sinusoidal timestep features
        (Ho et al. 2020, Appendix B), plus the class embedding and ``add_embedding(added)`` when configured."""
        cfg = self.config
        dtype = input_dtype(self.time_embedding)
        t = torch.as_tensor(timestep, device=x.device).reshape(-1).expand(x.shape[0])
        features = timestep_embedding(t, cfg.block_out_channels[0], cfg.flip_sin_to_cos, cfg.freq_shift)
        emb = self.time_embedding(features.to(dtype))
        if self.class_embedding is not None:
            labels = class_labels  # integer labels for nn.Embedding
            if cfg.class_embed_type == "timestep":
                labels = timestep_embedding(labels.reshape(-1), cfg.block_out_channels[0], cfg.flip_sin_to_cos, cfg.freq_shift)
            if cfg.class_embed_type != "embedding":
                labels = labels.to(dtype)
            emb = emb + self.class_embedding(labels).to(dtype)
        if self.add_embedding is not None:
            emb = emb + self.add_embedding(added_features(cfg, added).to(dtype))
        return emb

    def _run(self, block: nn.Module, *args: Any) -> Any:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def _split_cond(self, cond: Tensor | Mapping[str, Any] | None) -> tuple[Tensor | None, Tensor | None, Any]:
        if cond is None:
            return None, None, None
        if isinstance(cond, Mapping):
            unknown = sorted(set(cond) - set(COND_KEYS))
            if unknown:
                raise ValueError(f"unknown condition keys {unknown}; the U-Net reads {', '.join(COND_KEYS)}")
            return cond.get("context"), cond.get("class_labels"), cond.get("added")
        if not isinstance(cond, Tensor):
            raise TypeError(f"cond must be None, a tensor or a mapping, got {type(cond).__name__}")
        if not self.config.has_cross_attention and self.class_embedding is not None:
            return None, cond, None  # a class-conditional model without cross-attention: the tensor is the labels
        return cond, None, None

    def _check_inputs(self, x: Tensor, timestep: Any, context: Tensor | None, class_labels: Tensor | None, added: Any) -> None:
        """Cheap shape checks, so a wrong input fails here with its name rather than deep inside a block."""
        cfg = self.config
        if x.ndim != 4:
            raise ValueError(f"x must be a [B, C, H, W] batch, got shape {tuple(x.shape)}")
        b, channels, height, width = x.shape
        if channels != cfg.in_channels:
            raise ValueError(f"x has {channels} channels but the U-Net's in_channels is {cfg.in_channels}")
        factor = 2**cfg.num_downsamplings
        if height % factor or width % factor:
            raise ValueError(
                f"x's spatial size {height}x{width} must be divisible by {factor} (2^{cfg.num_downsamplings} downsamplings)"
            )
        steps = timestep.numel() if isinstance(timestep, Tensor) else 1
        if steps not in (1, b):
            raise ValueError(f"timestep must be a scalar or have one entry per sample ({b}), got {steps}")
        if cfg.has_cross_attention:
            if context is None:
                raise ValueError(
                    f"the U-Net cross-attends to a context: pass cond (or cond['context']) of shape [B, M, {cfg.cross_attention_dim}]"
                )
            if context.ndim != 3 or context.shape[-1] != cfg.cross_attention_dim:
                raise ValueError(
                    f"context must be [B, M, cross_attention_dim={cfg.cross_attention_dim}], got shape {tuple(context.shape)}"
                )
            if context.shape[0] != b:
                raise ValueError(f"context has batch {context.shape[0]} but x has {b}")
        elif context is not None:
            raise ValueError("the U-Net has no cross-attention (cross_attention_dim is None or no transformer blocks) but got a context")
        if self.class_embedding is not None:
            if class_labels is None:
                raise ValueError(f"the U-Net is class-conditional (class_embed_type {cfg.class_embed_type!r}): pass cond['class_labels']")
            if class_labels.shape[0] != b:
                raise ValueError(f"class_labels has batch {class_labels.shape[0]} but x has {b}")
            if cfg.class_embed_type == "embedding":
                if class_labels.is_floating_point() or class_labels.ndim != 1:
                    got = f"{class_labels.dtype} {tuple(class_labels.shape)}"
                    raise ValueError(f"class_labels must be integer labels of shape [B], got {got}")
                if class_labels.numel() and int(class_labels.max()) >= cfg.num_class_embeds:
                    raise ValueError(f"class_labels must lie in [0, num_class_embeds={cfg.num_class_embeds})")
        elif class_labels is not None:
            raise ValueError("the U-Net has no class embedding (class_embed_type is None) but got class_labels")
        check_added(cfg, added, b)

def _class_embedding(config: UNetConfig) -> nn.Module | None:
    kind, dim = config.class_embed_type, config.time_embed_dim
    if kind == "embedding":
        return nn.Embedding(config.num_class_embeds, dim)
    if kind == "timestep":
        return TimestepEmbedding(config.block_out_channels[0], dim)
    if kind == "identity":
        return nn.Identity()
    if kind == "projection":
        return TimestepEmbedding(config.projection_class_embeddings_input_dim, dim)
    if kind == "simple_projection":
        return nn.Linear(config.projection_class_embeddings_input_dim, dim)
    return None
