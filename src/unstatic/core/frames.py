"""Noise frames: the sigma frame ``x = x0 + sigma * eps`` and its variance-preserving and flow equivalents.

Every Gaussian forward process ``x_t = a_t * x0 + b_t * eps`` is the sigma-frame point
``x = x_t / a_t`` at ``sigma = b_t / a_t`` (Karras et al. 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models", Sec. 2 and Eq. 4). Samplers work in the sigma frame only;
these functions translate to and from the frames networks were trained in.

- VP (DDPM, Ho et al. 2020, Eq. 4): ``a = sqrt(alpha_bar)``, ``b = sqrt(1 - alpha_bar)``,
  so ``sigma = sqrt((1 - alpha_bar) / alpha_bar)`` and ``x_vp = x / sqrt(1 + sigma^2)``.
- Rectified flow (Liu et al. 2022; Lipman et al. 2023): ``a = 1 - t``, ``b = t``,
  so ``sigma = t / (1 - t)`` and ``x_flow = x / (1 + sigma)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Pure noise (zero terminal SNR, flow t = 1) is infinitely far away in the sigma frame. Like diffusers
# (which clamps alpha_bar to 2**-24 there), we stand in for it with sigma = 2**12 = 4096: the signal left
# in x is 2.4e-4 of the noise, below what any network resolves, and float32 keeps x / sigma exact.
INFINITE_NOISE_SIGMA = 4096.0


def per_sample(sigma: Tensor | float, x: Tensor) -> Tensor | float:
    """Reshape a per-sample sigma of shape [B] to broadcast over ``x`` of shape [B, ...]."""
    if isinstance(sigma, Tensor) and sigma.ndim == 1:
        return sigma.reshape(sigma.shape + (1,) * (x.ndim - 1))
    return sigma


def add_noise(x0: Tensor, noise: Tensor, sigma: Tensor | float) -> Tensor:
    """Forward process in the sigma frame: ``x = x0 + sigma * noise`` (Karras et al. 2022, Eq. 1)."""
    return x0 + per_sample(sigma, x0) * noise


def sigma_from_alpha_cumprod(alpha_cumprod: Tensor) -> Tensor:
    """``sigma = sqrt((1 - alpha_bar) / alpha_bar)`` (Karras et al. 2022, Table 1, VP column)."""
    return ((1 - alpha_cumprod) / alpha_cumprod).sqrt()


def alpha_cumprod_from_sigma(sigma: Tensor) -> Tensor:
    """``alpha_bar = 1 / (1 + sigma^2)``, the inverse of :func:`sigma_from_alpha_cumprod`."""
    return 1 / (1 + sigma**2)


def add_noise_vp(x0: Tensor, noise: Tensor, alpha_cumprod: Tensor | float) -> Tensor:
    """DDPM forward process ``sqrt(a) x0 + sqrt(1 - a) eps`` (Ho et al. 2020, Eq. 4)."""
    a = torch.as_tensor(alpha_cumprod, dtype=x0.dtype, device=x0.device)
    a = per_sample(a, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def to_vp_frame(x: Tensor, sigma: Tensor | float) -> Tensor:
    """Sigma-frame ``x`` to the VP frame: ``x / sqrt(1 + sigma^2)``."""
    s = per_sample(sigma, x)
    return x / (1 + s**2) ** 0.5


def from_vp_frame(x_vp: Tensor, sigma: Tensor | float) -> Tensor:
    """VP-frame ``x`` to the sigma frame: ``x * sqrt(1 + sigma^2)``."""
    s = per_sample(sigma, x_vp)
    return x_vp * (1 + s**2) ** 0.5


def flow_t_from_sigma(sigma: Tensor) -> Tensor:
    """Rectified-flow time ``t = sigma / (1 + sigma)``."""
    return sigma / (1 + sigma)


def sigma_from_flow_t(t: Tensor) -> Tensor:
    """``sigma = t / (1 - t)``; t = 1 maps to :data:`INFINITE_NOISE_SIGMA` rather than infinity."""
    t = torch.as_tensor(t)
    return (t / (1 - t)).clamp(max=INFINITE_NOISE_SIGMA)


def add_noise_flow(x0: Tensor, noise: Tensor, t: Tensor | float) -> Tensor:
    """Rectified-flow interpolation ``(1 - t) x0 + t eps`` (Liu et al. 2022, Eq. 1)."""
    t = per_sample(torch.as_tensor(t, dtype=x0.dtype, device=x0.device), x0)
    return (1 - t) * x0 + t * noise


def to_flow_frame(x: Tensor, sigma: Tensor | float) -> Tensor:
    """Sigma-frame ``x`` to the flow frame: ``x / (1 + sigma)``."""
    return x / (1 + per_sample(sigma, x))


def from_flow_frame(x_flow: Tensor, sigma: Tensor | float) -> Tensor:
    """Flow-frame ``x`` to the sigma frame: ``x * (1 + sigma)``."""
    return x_flow * (1 + per_sample(sigma, x_flow))
