"""Gaussian data with correlated pixels, where everything inpainting should produce is closed-form.

For ``x0 ~ N(mu, S)`` the posterior mean at noise ``sigma`` is ``mu + S (S + sigma^2 I)^-1 (x - mu)`` (Tweedie;
Efron 2011), and the unknown pixels given the known ones are ``N(mu_u + S_uk S_kk^-1 (x_k - mu_k),
S_uu - S_uk S_kk^-1 S_ku)`` (the Gaussian conditioning formula). :class:`ExactInpaintingNet` is the ideal
inpainting network: it reads the mask and the masked image from its extra channels, as a trained one would.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import Tensor, nn

from unstatic.core.continuous import EDMSchedule
from unstatic.denoisers.precondition import INPUT_SCALINGS
from unstatic.models import DiffusionModel, DiffusionSpec, ScheduleSpec

F64 = torch.float64


class Gaussian:
    """``N(mu, S)`` over flattened samples; ``cov`` must be symmetric positive definite."""

    def __init__(self, mu: Tensor, cov: Tensor) -> None:
        self.mu, self.cov = mu.to(F64), cov.to(F64)

    def posterior_mean(self, flat: Tensor, sigma: Tensor, mu: Tensor | None = None, cov: Tensor | None = None) -> Tensor:
        mu = self.mu if mu is None else mu
        cov = self.cov if cov is None else cov
        eye = torch.eye(len(mu), dtype=F64)
        s2 = sigma.to(F64).reshape(-1, 1, 1) ** 2
        gain = cov[None] @ torch.linalg.inv(cov[None] + s2 * eye)
        return mu + (gain @ (flat.to(F64) - mu)[..., None])[..., 0]

    def denoiser(self, x: Tensor, sigma: Tensor, cond=None) -> Tensor:
        """The exact joint denoiser ``E[x0 | x]`` for x of any shape ``[B, ...]`` with ``numel = len(mu)``."""
        sigma = torch.as_tensor(sigma).expand(x.shape[0])
        return self.posterior_mean(x.reshape(x.shape[0], -1), sigma).reshape(x.shape).to(x.dtype)

    def conditional(self, unknown: Tensor, known_values: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and covariance of the pixels where ``unknown`` (bool, flat) given the others equal ``known_values``."""
        u, k = unknown, ~unknown
        s_kk, s_uk = self.cov[k][:, k], self.cov[u][:, k]
        mean = self.mu[u] + s_uk @ torch.linalg.solve(s_kk, known_values.to(F64) - self.mu[k])
        return mean, self.cov[u][:, u] - s_uk @ torch.linalg.solve(s_kk, s_uk.T)


def correlated(n: int = 4, scale: float = 1.0, rho: float = 0.8) -> Gaussian:
    """Pixels with covariance ``scale^2 rho^|i - j|`` (neighbours strongly correlated) and unequal variances."""
    i = torch.arange(n)
    spread = scale * torch.linspace(0.7, 1.3, n, dtype=F64)
    cov = rho ** (i[:, None] - i[None]).abs().to(F64) * spread[:, None] * spread[None]
    return Gaussian(torch.linspace(-0.3, 0.3, n, dtype=F64) * scale, cov)


class ExactInpaintingNet(nn.Module):
    """An x0-predicting network over ``[B, 2C + 1, H, W]`` inputs (x scaled as a VP model's, mask, masked image)
    that returns the exact conditional posterior mean: the known pixels, and for the unknown ones
    ``E[x0_u | x_u, x0_k]`` under the conditional Gaussian."""

    def __init__(self, data: Gaussian, channels: int) -> None:
        super().__init__()
        self.data, self.channels, self.schedule = data, channels, EDMSchedule()
        self.config = SimpleNamespace(in_channels=2 * channels + 1, num_downsamplings=0)
        self.dummy = nn.Parameter(torch.zeros(()))  # so the model has a device
        self.calls = 0

    def forward(self, x_in: Tensor, timestep: Tensor, cond=None) -> Tensor:
        self.calls += 1
        c = self.channels
        sigma = self.schedule.sigma_at(timestep.reshape(-1).double()).expand(x_in.shape[0])
        x = x_in[:, :c].double() / INPUT_SCALINGS["vp"](sigma.reshape(-1, 1, 1, 1), 0.5)
        unknown = x_in[0, c : c + 1].expand(c, -1, -1).reshape(-1) >= 0.5
        known = x_in[0, c + 1 :].reshape(-1)[~unknown]
        mean, cov = self.data.conditional(unknown, known)
        out = x_in[:, c + 1 :].double().reshape(x_in.shape[0], -1).clone()
        out[:, unknown] = self.data.posterior_mean(x.reshape(x.shape[0], -1)[:, unknown], sigma, mean, cov)
        return out.reshape(x_in[:, :c].shape).to(x_in.dtype)


class ExactNet(nn.Module):
    """The exact joint denoiser as an ordinary x0-predicting network (for the any-model inpainting path)."""

    def __init__(self, data: Gaussian, channels: int) -> None:
        super().__init__()
        self.data, self.schedule = data, EDMSchedule()
        self.config = SimpleNamespace(in_channels=channels, num_downsamplings=0)
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x_in: Tensor, timestep: Tensor, cond=None) -> Tensor:
        sigma = self.schedule.sigma_at(timestep.reshape(-1).double()).expand(x_in.shape[0])
        x = x_in.double() / INPUT_SCALINGS["vp"](sigma.reshape(-1, 1, 1, 1), 0.5)
        return self.data.denoiser(x, sigma).to(x_in.dtype)


def exact_model(network: nn.Module, side: int, channels: int = 1) -> DiffusionModel:
    """A :class:`DiffusionModel` around an exact network: x0 prediction on EDM's sigma range."""
    spec = DiffusionSpec(prediction="x0", schedule=ScheduleSpec(kind="edm"), image_size=side, channels=channels)
    return DiffusionModel(network, spec)
