"""Step arithmetic shared by samplers (all in the sigma frame; scalars are Python floats).

Writing updates as ``lerp``s of a clean estimate and ``x`` keeps every step at one or two fused tensor
ops: the sampler's own cost matters when the denoiser is cheap (small latents, distilled models).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from unstatic.sampling.noise import NoiseSource


def ddim_step(x: Tensor, denoised: Tensor, sigma: float, sigma_next: float) -> Tensor:
    """Exact solution of the probability-flow ODE ``dx/dsigma = (x - D) / sigma`` for constant ``D``:
    ``x_next = D + (sigma_next / sigma) (x - D)``.

    This is Euler's method in the sigma frame and DDIM (Song et al. 2021, Eq. 12; Karras et al. 2022, Sec. 4).
    """
    return torch.lerp(denoised, x, sigma_next / sigma)


def ancestral_split(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """Split a step to ``sigma_next`` into a deterministic step to ``sigma_down`` plus fresh noise ``sigma_up``.

    ``sigma_up = eta * sqrt(sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2)``: with eta = 1 this is the
    DDPM posterior q(x_next | x, x0) (Ho et al. 2020, Eq. 7), with eta the DDIM family (Song et al. 2021, Eq. 16).
    """
    if eta == 0 or sigma_next == 0:
        return sigma_next, 0.0
    up = min(sigma_next, eta * math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2))
    return math.sqrt(sigma_next**2 - up**2), up


def weighted_sum(*terms: tuple[float, Tensor]) -> Tensor:
    """``sum_k w_k t_k`` in ``len(terms)`` tensor ops."""
    (w0, t0), rest = terms[0], terms[1:]
    out = torch.mul(t0, w0)
    for w, t in rest:
        out.add_(t, alpha=w)
    return out


def churn_gamma(i: int, steps: int, sigma: float, s_churn: float, s_tmin: float, s_tmax: float) -> float:
    """EDM's stochastic churn factor (Karras et al. 2022, Algorithm 2, line 4)."""
    if s_churn <= 0 or not s_tmin <= sigma <= s_tmax:
        return 0.0
    return min(s_churn / steps, math.sqrt(2) - 1)


def apply_churn(x: Tensor, sigma: float, gamma: float, s_noise: float, noise: NoiseSource) -> tuple[Tensor, float]:
    """Raise the noise level from sigma to ``sigma_hat = sigma (1 + gamma)`` (Algorithm 2, lines 5-6)."""
    sigma_hat = sigma * (1 + gamma)
    return x + noise() * (s_noise * math.sqrt(sigma_hat**2 - sigma**2)), sigma_hat


def churned_denoise(denoiser, x: Tensor, row: Tensor, sigma: float, gamma: float, s_noise: float, source, cond):
    """Denoise at ``(x, sigma)``, first raising the noise level by EDM churn when ``gamma > 0``.

    Returns ``(x, sigma, denoised)`` at the (possibly raised) level.
    """
    if not gamma:
        return x, sigma, denoiser(x, row, cond)
    x, sigma_hat = apply_churn(x, sigma, gamma, s_noise, source)
    return x, sigma_hat, denoiser(x, row * (1 + gamma), cond)


def extrapolate_to_zero(denoised: Tensor, sigma: float, prev_denoised: Tensor, prev_sigma: float) -> Tensor:
    """The end point of the probability-flow ODE from the last two clean estimates on the trajectory.

    Along the ODE the clean estimate ``D`` is a smooth function of ``tau = sigma^2 / 2``: the ODE reads
    ``dx/dtau = -grad log p_tau(x)`` and ``p_tau`` solves the heat equation in tau. Writing
    ``x / sigma`` as an integral of ``D / sigma^2`` (the exponential-integrator form, Lu et al. 2022, Eq. 3.4)
    shows the exact end point is ``x(0) = D(sigma = 0)``. The usual last step returns ``D(sigma_min)`` instead,
    an O(sigma_min^2) error that dominates once the other steps are accurate; a line through
    ``(sigma_prev^2, D_prev)`` and ``(sigma^2, D)`` evaluated at 0 removes that term at no extra model call.
    """
    w = sigma**2 / (prev_sigma**2 - sigma**2)
    return torch.lerp(denoised, prev_denoised, -w)


FINAL_STEPS = ("extrapolate", "plain")

# Extrapolate only when the previous estimate is within this factor of sigma_min. Farther out (coarse
# grids: 15 Karras steps or fewer on SD's range) the line through it misses the curvature of D and loses
# to the plain step on broad data (benchmarks/sampler_accuracy.py and docs/architecture.md).
EXTRAPOLATE_MAX_RATIO = 1.8


def final_estimate(
    denoised: Tensor, sigma: float, prev: tuple[Tensor, float] | None, final_step: str
) -> Tensor:
    """The sample at sigma = 0 after a deterministic trajectory ending in ``(sigma, denoised)``.

    ``final_step="extrapolate"`` (the default everywhere) uses :func:`extrapolate_to_zero` when an earlier
    estimate on the same trajectory exists within :data:`EXTRAPOLATE_MAX_RATIO` of ``sigma``; ``"plain"``
    returns ``denoised`` as the reference libraries do.
    """
    if final_step == "extrapolate" and prev is not None and prev[1] <= EXTRAPOLATE_MAX_RATIO * sigma:
        return extrapolate_to_zero(denoised, sigma, prev[0], prev[1])
    return denoised
