"""Residual blocks and resolution changes (Ho et al. 2020, Appendix B; He et al. 2016)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unstatic.networks.group_norm import GroupNorm


class ResnetBlock2D(nn.Module):
    """GroupNorm → SiLU → conv → (+ time) → GroupNorm → SiLU → dropout → conv, plus a (1x1) shortcut.

    ``time_embedding_norm="default"`` adds the projected time embedding; ``"scale_shift"`` applies it as
    ``h * (1 + scale) + shift`` after the second norm (FiLM; Dhariwal & Nichol 2021, Sec. 3 "AdaGN").
    ``temb_channels=None`` builds a block without time conditioning (VAE).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        temb_channels: int | None = 512,
        groups: int = 32,
        groups_out: int | None = None,
        eps: float = 1e-6,
        dropout: float = 0.0,
        time_embedding_norm: str = "default",
        output_scale_factor: float = 1.0,
        use_in_shortcut: bool | None = None,
        conv_shortcut_bias: bool = True,
    ) -> None:
        super().__init__()
        if time_embedding_norm not in ("default", "scale_shift"):
            raise ValueError(f"time_embedding_norm must be 'default' or 'scale_shift', got {time_embedding_norm!r}")
        out_channels = out_channels or in_channels
        self.time_embedding_norm = time_embedding_norm
        self.output_scale_factor = output_scale_factor
        self.norm1 = GroupNorm(groups, in_channels, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = None
        if temb_channels is not None:
            width = 2 * out_channels if time_embedding_norm == "scale_shift" else out_channels
            self.time_emb_proj = nn.Linear(temb_channels, width)
        self.norm2 = GroupNorm(groups_out or groups, out_channels, eps=eps, affine=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nonlinearity = nn.SiLU()
        use_shortcut = in_channels != out_channels if use_in_shortcut is None else use_in_shortcut
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1, bias=conv_shortcut_bias) if use_shortcut else None

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        # Without autograd, SiLU and the residual add overwrite fresh intermediates in place: one activation-sized
        # buffer less at the block's peak (a 512 px VAE tile's 128 x 512 x 512 float32 map is 128 MiB).
        in_place = not torch.is_grad_enabled()
        h = self.conv1(self.norm1.with_silu(x))
        if self.time_emb_proj is not None and temb is not None:
            t = self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]
            if self.time_embedding_norm == "default":
                h = self.norm2.with_silu(h + t)
            else:
                scale, shift = t.chunk(2, dim=1)
                h = F.silu(self.norm2(h) * (1 + scale) + shift, inplace=in_place)
        else:
            h = self.norm2.with_silu(h)
        h = self.conv2(self.dropout(h))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        out = h.add_(x) if in_place and h.dtype == x.dtype else x + h  # (under autocast x may be wider)
        return out / self.output_scale_factor if self.output_scale_factor != 1.0 else out


class Downsample2D(nn.Module):
    """Halve the resolution: a stride-2 3x3 conv (``padding=0`` pads right/bottom first, as SD's VAE), or
    2x2 average pooling without ``use_conv``."""

    def __init__(self, channels: int, use_conv: bool = True, out_channels: int | None = None, padding: int = 1) -> None:
        super().__init__()
        out_channels = out_channels or channels
        self.padding = padding
        if use_conv:
            self.conv = nn.Conv2d(channels, out_channels, 3, stride=2, padding=padding)
        else:
            if out_channels != channels:
                raise ValueError("average-pool downsampling cannot change the channel count")
            self.conv = nn.AvgPool2d(2, 2)
        self.use_conv = use_conv

    def forward(self, x: Tensor) -> Tensor:
        if self.use_conv and self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample2D(nn.Module):
    """Double the resolution: nearest-neighbour interpolation, then an optional 3x3 conv
    (Odena et al. 2016, "Deconvolution and Checkerboard Artifacts")."""

    def __init__(self, channels: int, use_conv: bool = True, out_channels: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1) if use_conv else None

    def forward(self, x: Tensor, output_size: tuple[int, int] | None = None) -> Tensor:
        x = F.interpolate(x, size=output_size, mode="nearest") if output_size else F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.conv is not None else x
