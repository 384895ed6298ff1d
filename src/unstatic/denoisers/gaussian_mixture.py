"""An exact denoiser: Gaussian-mixture data, whose posterior mean is closed-form.

For data ``x0 ~ sum_k w_k N(mu_k, diag(s_k^2))`` the noisy marginal is
``p_sigma(x) = sum_k w_k N(x; mu_k, diag(s_k^2 + sigma^2))`` and Tweedie's formula gives
``E[x0 | x] = sum_k r_k(x) (mu_k + s_k^2 / (s_k^2 + sigma^2) (x - mu_k))`` with responsibilities
``r_k`` the component posteriors (Efron 2011, "Tweedie's formula and selection bias"; Karras et al. 2022, Eq. 3).
It is the ideal denoiser, so samplers can be checked against the truth and the demo needs no weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from unstatic.denoisers.protocol import Cond


@dataclass(frozen=True, eq=False)
class GaussianMixture:
    """Mixture of diagonal Gaussians over flattened samples of ``shape``.

    Args:
        means: ``[K, *shape]`` component means.
        stds: ``[K]`` (isotropic) or ``[K, *shape]`` (diagonal) component standard deviations.
        weights: ``[K]`` mixture weights (normalised here); uniform by default.
    """

    means: Tensor
    stds: Tensor
    weights: Tensor | None = None
    _log_weights: Tensor = field(init=False, repr=False)
    _var: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        means = torch.as_tensor(self.means, dtype=torch.float64)
        k = means.shape[0]
        stds = torch.as_tensor(self.stds, dtype=torch.float64)
        if stds.ndim == 1:
            stds = stds[:, None].expand(k, means[0].numel())
        var = stds.reshape(k, -1) ** 2
        if var.shape != (k, means[0].numel()):
            raise ValueError(f"stds must have shape [K] or [K, *shape]; got {tuple(self.stds.shape)}")
        weights = torch.ones(k, dtype=torch.float64) if self.weights is None else torch.as_tensor(self.weights)
        if weights.shape != (k,) or bool((weights <= 0).any()):
            raise ValueError("weights must be K positive numbers")
        object.__setattr__(self, "means", means)
        object.__setattr__(self, "_var", var)
        object.__setattr__(self, "_log_weights", (weights / weights.sum()).double().log())

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.means.shape[1:])

    @property
    def weights_normalised(self) -> Tensor:
        return self._log_weights.exp()

    def _posterior(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Responsibilities [B, K], flattened means [K, D] and shrink factors [B, K, D], in float64."""
        xf = x.reshape(x.shape[0], -1).double()
        s2 = sigma.double().reshape(-1, 1, 1) ** 2
        total_var = self._var.to(x.device) + s2  # [B, K, D]
        mu = self.means.reshape(len(self._var), -1).to(x.device)
        diff = xf[:, None, :] - mu[None]
        log_lik = -0.5 * ((diff**2 / total_var).sum(-1) + total_var.log().sum(-1) + xf.shape[1] * math.log(2 * math.pi))
        log_joint = log_lik + self._log_weights.to(x.device)
        resp = (log_joint - log_joint.logsumexp(-1, keepdim=True)).exp()
        return resp, mu, self._var.to(x.device) / total_var

    def __call__(self, x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
        """The exact posterior mean ``E[x0 | x]`` at noise level ``sigma`` ([B] or scalar)."""
        sigma = torch.as_tensor(sigma, device=x.device).expand(x.shape[0])
        resp, mu, shrink = self._posterior(x, sigma)
        xf = x.reshape(x.shape[0], -1).double()
        component_means = mu[None] + shrink * (xf[:, None, :] - mu[None])
        return (resp[..., None] * component_means).sum(1).reshape(x.shape).to(x.dtype)

    def score(self, x: Tensor, sigma: Tensor) -> Tensor:
        """``grad log p_sigma(x) = (E[x0 | x] - x) / sigma^2`` computed without dividing by sigma."""
        sigma = torch.as_tensor(sigma, device=x.device).expand(x.shape[0])
        resp, mu, _ = self._posterior(x, sigma)
        xf = x.reshape(x.shape[0], -1).double()
        total_var = self._var.to(x.device) + sigma.double().reshape(-1, 1, 1) ** 2
        component_scores = -(xf[:, None, :] - mu[None]) / total_var
        return (resp[..., None] * component_scores).sum(1).reshape(x.shape)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact draws from the data distribution (float64)."""
        k = torch.multinomial(self.weights_normalised, n, replacement=True, generator=generator)
        z = torch.randn(n, self.means[0].numel(), generator=generator, dtype=torch.float64)
        flat = self.means.reshape(len(self._var), -1)[k] + self._var[k].sqrt() * z
        return flat.reshape((n,) + self.shape)

    def component_of(self, x0: Tensor) -> Tensor:
        """The most likely component of each clean sample (for checking mixture weights)."""
        resp, _, _ = self._posterior(x0, torch.zeros(x0.shape[0], dtype=torch.float64))
        return resp.argmax(-1)

    def ode_solution(
        self, x: Tensor, sigma_start: float, sigma_end: float = 0.0, steps: int = 1000, rho: float = 3.0
    ) -> Tensor:
        """The probability-flow ODE's solution at ``sigma_end`` from ``x`` at ``sigma_start``, to near float64
        precision: classical RK4 on ``dx/dsigma = -sigma * score(x, sigma)``, which (unlike
        ``(x - D) / sigma``) stays smooth down to sigma = 0 for this data, on a grid dense near the end.
        """
        u = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
        grid = (sigma_end + (sigma_start - sigma_end) * (1 - u) ** rho).tolist()
        x = x.double()

        def slope(y: Tensor, s: float) -> Tensor:
            return -s * self.score(y, torch.full((y.shape[0],), s, dtype=torch.float64))

        for s, s_next in zip(grid[:-1], grid[1:]):
            h = s_next - s
            k1 = slope(x, s)
            k2 = slope(x + h / 2 * k1, s + h / 2)
            k3 = slope(x + h / 2 * k2, s + h / 2)
            k4 = slope(x + h * k3, s_next)
            x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return x
