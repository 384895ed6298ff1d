"""The U-Net's stages: a down block (residual blocks, optional attention, then downsampling), the middle block,
and an up block that concatenates the down path's skip connections (Ronneberger et al. 2015, "U-Net", Fig. 1;
Ho et al. 2020, Appendix B; Rombach et al. 2022, Sec. 3.3 for the transformer variant).

Every block is one class whose attention is chosen by :class:`AttentionOptions`: none (diffusers'
``DownBlock2D``), single-head-per-``head_dim`` self-attention with GroupNorm and a residual (``AttnDownBlock2D``,
DDPM) or a spatial transformer with cross-attention (``CrossAttnDownBlock2D``, Stable Diffusion). Parameter
names are diffusers' (``resnets.{j}``, ``attentions.{j}``, ``downsamplers.0.conv``, ``upsamplers.0.conv``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from unstatic.networks.attention import Attention, Transformer2DModel
from unstatic.networks.resnet import Downsample2D, ResnetBlock2D, Upsample2D

ATTENTION_KINDS = ("self", "transformer")


@dataclass(frozen=True)
class ResnetOptions:
    """What every residual block of one network shares."""

    temb_channels: int
    groups: int
    eps: float
    dropout: float
    time_embedding_norm: str

    def block(self, in_channels: int, out_channels: int, output_scale_factor: float = 1.0) -> ResnetBlock2D:
        return ResnetBlock2D(
            in_channels, out_channels, self.temb_channels, groups=self.groups, eps=self.eps, dropout=self.dropout,
            time_embedding_norm=self.time_embedding_norm, output_scale_factor=output_scale_factor,
        )


@dataclass(frozen=True)
class AttentionOptions:
    """The attention layer of one block.

    ``kind="self"``: :class:`Attention` over the pixels with a GroupNorm of ``groups`` groups (none when
    ``groups`` is None) and a residual connection, as DDPM's U-Net (Ho et al. 2020, Appendix B).
    ``kind="transformer"``: :class:`Transformer2DModel` with ``layers`` transformer blocks, cross-attending
    to a context of width ``cross_attention_dim`` (self-attention only when None).
    """

    kind: str
    heads: int
    head_dim: int
    groups: int | None
    eps: float = 1e-6
    cross_attention_dim: int | None = None
    layers: int = 1
    use_linear_projection: bool = False
    only_cross_attention: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ATTENTION_KINDS:
            raise ValueError(f"attention kind must be one of {ATTENTION_KINDS}, got {self.kind!r}")

    def layer(self, channels: int, output_scale_factor: float = 1.0) -> nn.Module:
        if self.kind == "self":
            return Attention(
                channels, heads=self.heads, dim_head=self.head_dim, bias=True, norm_num_groups=self.groups, eps=self.eps,
                residual_connection=True, rescale_output_factor=output_scale_factor,
            )
        return Transformer2DModel(
            self.heads, self.head_dim, channels, num_layers=self.layers, norm_num_groups=self.groups,
            cross_attention_dim=self.cross_attention_dim, use_linear_projection=self.use_linear_projection,
            only_cross_attention=self.only_cross_attention,
        )


def _attend(layer: nn.Module, x: Tensor, context: Tensor | None) -> Tensor:
    return layer(x, context) if isinstance(layer, Transformer2DModel) else layer(x)


class DownBlock(nn.Module):
    """``num_layers`` x (residual block → attention), then an optional stride-2 conv. Returns the output and
    the skip connections it leaves for the up path (every layer's output and the downsampled result)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_layers: int,
        resnet: ResnetOptions,
        attention: AttentionOptions | None = None,
        add_downsample: bool = True,
        downsample_padding: int = 1,
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(resnet.block(in_channels if j == 0 else out_channels, out_channels) for j in range(num_layers))
        self.attentions = nn.ModuleList(attention.layer(out_channels) for _ in range(num_layers)) if attention else None
        self.downsamplers = None
        if add_downsample:
            self.downsamplers = nn.ModuleList([Downsample2D(out_channels, True, out_channels, downsample_padding)])

    def forward(self, x: Tensor, temb: Tensor, context: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        skips = []
        for j, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if self.attentions is not None:
                x = _attend(self.attentions[j], x, context)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x, skips


class MidBlock(nn.Module):
    """A residual block, then ``num_layers`` x (attention → residual block) at the lowest resolution.
    ``output_scale_factor`` divides every residual sum (diffusers' ``mid_block_scale_factor``)."""

    def __init__(
        self,
        channels: int,
        num_layers: int,
        resnet: ResnetOptions,
        attention: AttentionOptions | None = None,
        output_scale_factor: float = 1.0,
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(resnet.block(channels, channels, output_scale_factor) for _ in range(num_layers + 1))
        self.attentions = None
        if attention is not None:
            self.attentions = nn.ModuleList(attention.layer(channels, output_scale_factor) for _ in range(num_layers))

    def forward(self, x: Tensor, temb: Tensor, context: Tensor | None = None) -> Tensor:
        x = self.resnets[0](x, temb)
        for j, resnet in enumerate(self.resnets[1:]):
            if self.attentions is not None:
                x = _attend(self.attentions[j], x, context)
            x = resnet(x, temb)
        return x


class UpBlock(nn.Module):
    """``num_layers`` x (concatenate a skip connection → residual block → attention), then an optional
    nearest-neighbour upsampling with a conv.

    The skips arrive in the order the down path made them; the block takes them from the end. The last one it
    takes has ``skip_channels`` channels (the previous level's width), the others ``out_channels``.
    """

    def __init__(
        self,
        skip_channels: int,
        prev_output_channels: int,
        out_channels: int,
        num_layers: int,
        resnet: ResnetOptions,
        attention: AttentionOptions | None = None,
        add_upsample: bool = True,
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            resnet.block(
                (prev_output_channels if j == 0 else out_channels) + (skip_channels if j == num_layers - 1 else out_channels),
                out_channels,
            )
            for j in range(num_layers)
        )
        self.attentions = nn.ModuleList(attention.layer(out_channels) for _ in range(num_layers)) if attention else None
        self.upsamplers = nn.ModuleList([Upsample2D(out_channels, True, out_channels)]) if add_upsample else None

    def forward(self, x: Tensor, skips: list[Tensor], temb: Tensor, context: Tensor | None = None) -> Tensor:
        for j, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips[-1 - j]], dim=1), temb)
            if self.attentions is not None:
                x = _attend(self.attentions[j], x, context)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x
