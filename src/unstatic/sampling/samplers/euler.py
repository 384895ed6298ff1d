"""Euler-family samplers: Euler (+ EDM churn), Euler ancestral, DDIM and DDPM.

In the sigma frame DDIM with eta = 0 *is* Euler's method on the probability-flow ODE, and DDIM with
eta > 0 (DDPM at eta = 1) *is* the ancestral Euler step (Karras et al. 2022, Sec. 4; Song et al. 2021,
Eq. 12 and 16), so the four names share two loops; parity tests against diffusers' DDIM/DDPM schedulers
show the equivalence numerically.
"""

from __future__ import annotations

import math

from torch import Tensor

from unstatic.denoisers.protocol import Cond, Denoiser
from unstatic.sampling.checks import check_output, prepare
from unstatic.sampling.noise import make_noise_source
from unstatic.sampling.progress import Callback, StepInfo
from unstatic.sampling.steps import ancestral_split, churn_gamma, churned_denoise, ddim_step, final_estimate


def sample_euler(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Cond = None,
    callback: Callback | None = None,
    noise=None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = math.inf,
    s_noise: float = 1.0,
    final_step: str = "extrapolate",
) -> Tensor:
    """Euler's method on the probability-flow ODE, with EDM's optional churn (Karras et al. 2022, Algorithm 2
    without the second-order correction)."""
    sig, rows = prepare(x, sigmas, final_step)
    steps = len(sig) - 1
    source = make_noise_source(noise, x) if s_churn > 0 else None
    prev = None
    for i in range(steps):
        sigma, sigma_next = sig[i], sig[i + 1]
        gamma = churn_gamma(i, steps, sigma, s_churn, s_tmin, s_tmax)
        x, sigma, denoised = churned_denoise(denoiser, x, rows[i], sigma, gamma, s_noise, source, cond)
        if gamma:
            prev = None  # churn left the previous trajectory
        if sigma_next == 0:
            x = final_estimate(denoised, sigma, prev, final_step)
        else:
            x = ddim_step(x, denoised, sigma, sigma_next)
        prev = (denoised, sigma)
        if callback is not None and callback(StepInfo(i, steps, sigma, sigma_next, x, denoised)):
            return check_output(denoised, "euler")
    return check_output(x, "euler")


def sample_euler_ancestral(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Cond = None,
    callback: Callback | None = None,
    noise=None,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> Tensor:
    """Ancestral sampling: a deterministic step to ``sigma_down`` plus fresh noise ``sigma_up``
    (Ho et al. 2020, Algorithm 2, for eta = 1; Song et al. 2021, Eq. 12/16 for general eta)."""
    sig, rows = prepare(x, sigmas)
    steps = len(sig) - 1
    source = make_noise_source(noise, x)
    for i in range(steps):
        sigma, sigma_next = sig[i], sig[i + 1]
        denoised = denoiser(x, rows[i], cond)
        sigma_down, sigma_up = ancestral_split(sigma, sigma_next, eta)
        x = ddim_step(x, denoised, sigma, sigma_down)
        if sigma_up:
            x.add_(source(), alpha=sigma_up * s_noise)
        if callback is not None and callback(StepInfo(i, steps, sigma, sigma_next, x, denoised)):
            return check_output(denoised, "euler_ancestral")
    return check_output(x, "euler_ancestral")


def sample_ddim(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Cond = None,
    callback: Callback | None = None,
    noise=None,
    eta: float = 0.0,
    final_step: str = "extrapolate",
) -> Tensor:
    """DDIM (Song et al. 2021, Eq. 12): deterministic for eta = 0, adds ``eta``-scaled posterior noise otherwise."""
    if eta == 0:
        return sample_euler(denoiser, x, sigmas, cond=cond, callback=callback, final_step=final_step)
    return sample_euler_ancestral(denoiser, x, sigmas, cond=cond, callback=callback, noise=noise, eta=eta)


def sample_ddpm(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Cond = None,
    callback: Callback | None = None,
    noise=None,
) -> Tensor:
    """DDPM ancestral sampling from the posterior ``q(x_next | x, x0 = D(x))`` with the "fixed small"
    variance (Ho et al. 2020, Eq. 6-7 and Algorithm 2), for any subsequence of noise levels."""
    return sample_euler_ancestral(denoiser, x, sigmas, cond=cond, callback=callback, noise=noise, eta=1.0)
