"""Noise schedules of continuous-time models, and the protocol every schedule meets.

A schedule tells spacings the model's noise range and how its own time coordinate (what the
network is fed as its noise level, "timestep") maps to sigma.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from unstatic.core.frames import INFINITE_NOISE_SIGMA, sigma_from_flow_t

_TABLE_SIZE = 1000


class NoiseSchedule(Protocol):
    """What spacings need from a model: its sigma range, a table of its sigmas, and timestep <-> sigma."""

    sigma_min: float
    sigma_max: float
    sigmas: Tensor  # ascending table of the noise levels the model knows (the training timesteps)

    def sigma_at(self, timestep: Tensor | float) -> Tensor: ...

    def timestep_at(self, sigma: Tensor | float) -> Tensor: ...


def _table(schedule, lo: float, hi: float) -> Tensor:
    t = torch.linspace(lo, hi, _TABLE_SIZE, dtype=torch.float64)
    return schedule.sigma_at(t)


@dataclass(frozen=True)
class EDMSchedule:
    """EDM's continuous sigma range with ``c_noise = ln(sigma) / 4`` (Karras et al. 2022, Table 1)."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5

    def sigma_at(self, timestep: Tensor | float) -> Tensor:
        return torch.exp(4 * torch.as_tensor(timestep, dtype=torch.float64))

    def timestep_at(self, sigma: Tensor | float) -> Tensor:
        return torch.as_tensor(sigma, dtype=torch.float64).log() / 4

    @property
    def sigmas(self) -> Tensor:
        return _table(self, math.log(self.sigma_min) / 4, math.log(self.sigma_max) / 4)


@dataclass(frozen=True)
class VPSDESchedule:
    """Continuous VP-SDE (Song et al. 2021) in the sigma frame, EDM Table 1 "VP" column.

    ``sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)``, network input ``c_noise = (M - 1) t``.
    """

    beta_min: float = 0.1
    beta_d: float = 19.9
    eps_t: float = 1e-5
    M: int = 1000

    def _sigma_of_t(self, t: Tensor) -> Tensor:
        return torch.sqrt(torch.expm1(0.5 * self.beta_d * t**2 + self.beta_min * t))

    def sigma_at(self, timestep: Tensor | float) -> Tensor:
        return self._sigma_of_t(torch.as_tensor(timestep, dtype=torch.float64) / (self.M - 1))

    def timestep_at(self, sigma: Tensor | float) -> Tensor:
        s = torch.as_tensor(sigma, dtype=torch.float64)
        t = (torch.sqrt(self.beta_min**2 + 2 * self.beta_d * torch.log1p(s**2)) - self.beta_min) / self.beta_d
        return (self.M - 1) * t

    @property
    def sigma_min(self) -> float:
        return float(self._sigma_of_t(torch.tensor(self.eps_t, dtype=torch.float64)))

    @property
    def sigma_max(self) -> float:
        return float(self._sigma_of_t(torch.tensor(1.0, dtype=torch.float64)))

    @property
    def sigmas(self) -> Tensor:
        return _table(self, float(self.timestep_at(self.sigma_min)), float(self.M - 1))


def shift_flow_t(t: Tensor, shift: float) -> Tensor:
    """SD3's resolution shift of flow time, ``shift t / (1 + (shift - 1) t)`` (Esser et al. 2024, Sec. 5.3.2)."""
    return shift * t / (1 + (shift - 1) * t)


@dataclass(frozen=True)
class FlowSchedule:
    """Rectified-flow time ``t in (0, 1]``, fed to the network as ``t * multiplier``; ``shift`` bends the table.

    Time ``t`` is the sigma-frame point ``sigma = t / (1 - t)``; t = 1 (pure noise) is represented by
    :data:`~unstatic.core.frames.INFINITE_NOISE_SIGMA`.
    """

    shift: float = 1.0
    multiplier: float = 1000.0
    num_train_timesteps: int = 1000

    def sigma_at(self, timestep: Tensor | float) -> Tensor:
        return sigma_from_flow_t(torch.as_tensor(timestep, dtype=torch.float64) / self.multiplier)

    def timestep_at(self, sigma: Tensor | float) -> Tensor:
        s = torch.as_tensor(sigma, dtype=torch.float64)
        return s / (1 + s) * self.multiplier

    @property
    def sigmas(self) -> Tensor:
        T = self.num_train_timesteps
        t = shift_flow_t(torch.arange(1, T + 1, dtype=torch.float64) / T, self.shift)
        return sigma_from_flow_t(t)

    @property
    def sigma_min(self) -> float:
        return float(self.sigmas[0])

    @property
    def sigma_max(self) -> float:
        return INFINITE_NOISE_SIGMA
