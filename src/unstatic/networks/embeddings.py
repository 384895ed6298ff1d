"""Noise-level embeddings: sinusoidal features of the timestep and the MLP that widens them."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def timestep_embedding(
    timesteps: Tensor,
    dim: int,
    flip_sin_to_cos: bool = True,
    downscale_freq_shift: float = 0.0,
    scale: float = 1.0,
    max_period: float = 10000.0,
) -> Tensor:
    """Sinusoidal embedding ``[sin(t w_i), cos(t w_i)]`` with ``w_i = max_period^(-i / (dim/2 - shift))``
    (Vaswani et al. 2017, Sec. 3.5; Ho et al. 2020, Appendix B). ``flip_sin_to_cos`` puts cos first
    (Stable Diffusion); ``downscale_freq_shift = 1`` is the DDPM/CIFAR-10 variant. Returns float32 ``[B, dim]``."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device)
    frequencies = torch.exp(exponent / (half - downscale_freq_shift))
    angles = scale * timesteps.float()[:, None] * frequencies[None]
    embedding = torch.cat([angles.sin(), angles.cos()], dim=-1)
    if flip_sin_to_cos:
        embedding = torch.cat([embedding[:, half:], embedding[:, :half]], dim=-1)
    if dim % 2:
        embedding = nn.functional.pad(embedding, (0, 1))
    return embedding


class TimestepEmbedding(nn.Module):
    """``linear_2(silu(linear_1(e)))``: the time-embedding MLP (Ho et al. 2020, Appendix B)."""

    def __init__(self, in_channels: int, time_embed_dim: int, out_dim: int | None = None) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, time_embed_dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(time_embed_dim, out_dim or time_embed_dim)

    def forward(self, sample: Tensor) -> Tensor:
        return self.linear_2(self.act(self.linear_1(sample)))
