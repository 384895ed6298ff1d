"""Discrete-time training schedules: beta schedules, zero-terminal-SNR rescaling and the timestep <-> sigma map.

A discrete VP model is trained at integer timesteps ``t = 0 .. T-1`` with ``alpha_bar_t = prod(1 - beta)``
(Ho et al. 2020, Eq. 4); in the sigma frame timestep ``t`` is ``sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from unstatic.core.frames import sigma_from_alpha_cumprod

BETA_SCHEDULES = ("linear", "scaled_linear", "cosine", "sigmoid")

# diffusers stands in for alpha_bar = 0 (zero terminal SNR) with 2**-24; so do we, for identical sigmas.
_ZERO_SNR_ALPHA_BAR = 2.0**-24


def cosine_alpha_bar(t: Tensor, s: float = 0.008) -> Tensor:
    """iDDPM's ``alpha_bar(t) = cos^2(((t + s) / (1 + s)) * pi / 2)`` for t in [0, 1] (Nichol & Dhariwal 2021, Eq. 17)."""
    return torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2


def make_betas(
    schedule: str,
    num_train_timesteps: int = 1000,
    beta_start: float = 0.0001,
    beta_end: float = 0.02,
) -> Tensor:
    """Betas of a named schedule, in float64.

    - ``linear``: DDPM (Ho et al. 2020, Sec. 4), ``linspace(beta_start, beta_end, T)``.
    - ``scaled_linear``: Stable Diffusion / LDM, ``linspace(sqrt(beta_start), sqrt(beta_end), T)^2``.
    - ``cosine``: iDDPM (Nichol & Dhariwal 2021, Eq. 17), ``beta_t = min(1 - alpha_bar(t+1)/alpha_bar(t), 0.999)``.
    - ``sigmoid``: GeoDiff (Xu et al. 2022), ``sigmoid(linspace(-6, 6, T)) * (beta_end - beta_start) + beta_start``.
    """
    if num_train_timesteps < 2:
        raise ValueError(f"num_train_timesteps must be at least 2, got {num_train_timesteps}")
    T = num_train_timesteps
    f64 = torch.float64
    if schedule == "linear":
        return torch.linspace(beta_start, beta_end, T, dtype=f64)
    if schedule == "scaled_linear":
        return torch.linspace(beta_start**0.5, beta_end**0.5, T, dtype=f64) ** 2
    if schedule == "cosine":
        t = torch.arange(T + 1, dtype=f64) / T
        alpha_bar = cosine_alpha_bar(t)
        return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
    if schedule == "sigmoid":
        return torch.sigmoid(torch.linspace(-6, 6, T, dtype=f64)) * (beta_end - beta_start) + beta_start
    raise ValueError(f"unknown beta schedule {schedule!r}; expected one of {', '.join(BETA_SCHEDULES)}")


def rescale_zero_terminal_snr(betas: Tensor) -> Tensor:
    """Shift and scale ``sqrt(alpha_bar)`` so the last timestep has zero SNR and the first is unchanged.

    Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed", Algorithm 1.
    """
    alphas_bar_sqrt = torch.cumprod(1 - betas.double(), 0).sqrt()
    first, last = alphas_bar_sqrt[0].clone(), alphas_bar_sqrt[-1].clone()
    alphas_bar_sqrt = (alphas_bar_sqrt - last) * first / (first - last)
    alphas_bar = alphas_bar_sqrt**2
    alphas = torch.cat([alphas_bar[:1], alphas_bar[1:] / alphas_bar[:-1]])
    return 1 - alphas


@dataclass(frozen=True, eq=False)
class DiscreteSchedule:
    """The noise levels of a model trained at integer timesteps, and the map between timesteps and sigma.

    ``interpolation`` decides how fractional timesteps map to sigma and back: ``"log"`` interpolates
    log-sigma (k-diffusion, A1111, ComfyUI), ``"linear"`` interpolates sigma (diffusers' Euler-family
    schedulers). The two agree exactly at integer timesteps.
    """

    alphas_cumprod: Tensor
    interpolation: str = "log"
    sigmas: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ac = torch.as_tensor(self.alphas_cumprod, dtype=torch.float64)
        if ac.ndim != 1 or len(ac) < 2:
            raise ValueError("alphas_cumprod must be a 1-D tensor with at least 2 entries")
        if not bool(((ac >= 0) & (ac <= 1)).all()):
            raise ValueError("alphas_cumprod must lie in [0, 1]")
        if self.interpolation not in ("log", "linear"):
            raise ValueError(f"interpolation must be 'log' or 'linear', got {self.interpolation!r}")
        sigmas = sigma_from_alpha_cumprod(ac.clamp(min=_ZERO_SNR_ALPHA_BAR))
        if not bool((sigmas[1:] > sigmas[:-1]).all()):
            raise ValueError("alphas_cumprod must strictly decrease with t (every beta in (0, 1))")
        object.__setattr__(self, "alphas_cumprod", ac)
        object.__setattr__(self, "sigmas", sigmas)

    @classmethod
    def from_betas(cls, betas: Tensor, interpolation: str = "log") -> DiscreteSchedule:
        return cls(torch.cumprod(1 - torch.as_tensor(betas, dtype=torch.float64), 0), interpolation)

    @classmethod
    def from_config(
        cls,
        beta_schedule: str = "scaled_linear",
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        num_train_timesteps: int = 1000,
        rescale_betas_zero_snr: bool = False,
        interpolation: str = "log",
    ) -> DiscreteSchedule:
        """Build from the fields of a diffusers scheduler config; the defaults are Stable Diffusion 1.x/2.x's."""
        betas = make_betas(beta_schedule, num_train_timesteps, beta_start, beta_end)
        if rescale_betas_zero_snr:
            betas = rescale_zero_terminal_snr(betas)
        return cls.from_betas(betas, interpolation)

    @property
    def num_train_timesteps(self) -> int:
        return len(self.sigmas)

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return float(self.sigmas[-1])

    def _table(self) -> Tensor:
        return self.sigmas.log() if self.interpolation == "log" else self.sigmas

    def sigma_at(self, timestep: Tensor | float) -> Tensor:
        """Sigma at (possibly fractional) timesteps in [0, T-1], interpolating between integer ones."""
        t = torch.as_tensor(timestep, dtype=torch.float64).clamp(0, self.num_train_timesteps - 1)
        low = t.floor().clamp(max=self.num_train_timesteps - 2).long()
        table = self._table()
        value = torch.lerp(table[low], table[low + 1], t - low)
        return value.exp() if self.interpolation == "log" else value

    def timestep_at(self, sigma: Tensor | float) -> Tensor:
        """The fractional timestep whose sigma is ``sigma`` (inverse of :meth:`sigma_at`)."""
        table = self._table()
        s = torch.as_tensor(sigma, dtype=torch.float64)
        value = (s.log() if self.interpolation == "log" else s).contiguous()
        high = torch.searchsorted(table, value).clamp(1, len(table) - 1)
        low = high - 1
        w = (value - table[low]) / (table[high] - table[low])
        return (low + w).clamp(0, len(table) - 1)
