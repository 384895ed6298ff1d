"""Second-order single-step samplers: Heun (EDM), DPM-Solver-2 and its ancestral variant."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from unstatic.denoisers.protocol import Cond, Denoiser
from unstatic.sampling.checks import check_output, prepare
from unstatic.sampling.noise import make_noise_source
from unstatic.sampling.progress import Callback, StepInfo
from unstatic.sampling.steps import ancestral_split, churn_gamma, churned_denoise, ddim_step, final_estimate


def sample_heun(
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
    """Heun's 2nd-order method with optional churn (Karras et al. 2022, Algorithm 2). Two denoiser calls per
    step except the last, which goes to sigma = 0 without one."""
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
            x_euler = ddim_step(x, denoised, sigma, sigma_next)
            denoised_2 = denoiser(x_euler, rows[i + 1], cond)
            # x + dt/2 (d + d2) = mean of x and [x_euler + dt * d2]; the bracket is a lerp of (x_euler, D2),
            # computed in x_euler's memory (the denoiser is done with it).
            x = torch.lerp(x, x_euler.lerp_(denoised_2, sigma / sigma_next - 1), 0.5)
        prev = (denoised, sigma)
        if callback is not None and callback(StepInfo(i, steps, sigma, sigma_next, x, denoised)):
            return check_output(denoised, "heun")
    return check_output(x, "heun")


def _midpoint_step(denoiser, x, denoised, sigma: float, sigma_to: float, cond, like_row: Tensor) -> Tensor:
    """DPM-Solver-2: an Euler half step to the log-midpoint, then a full step with the slope found there
    (Lu et al. 2022, Algorithm 1 with r = 1/2, as in k-diffusion's ``sample_dpm_2``)."""
    sigma_mid = math.sqrt(sigma * sigma_to)
    x_mid = ddim_step(x, denoised, sigma, sigma_mid)
    denoised_mid = denoiser(x_mid, like_row.new_full(like_row.shape, sigma_mid), cond)
    # x_mid - D_mid in x_mid's memory: the denoiser is done with it.
    return torch.add(x, x_mid.sub_(denoised_mid), alpha=(sigma_to - sigma) / sigma_mid)


def sample_dpm_2(
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
    """DPM-Solver-2 in the sigma frame with optional churn (Lu et al. 2022; k-diffusion ``sample_dpm_2``)."""
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
            x = _midpoint_step(denoiser, x, denoised, sigma, sigma_next, cond, rows[i])
        prev = (denoised, sigma)
        if callback is not None and callback(StepInfo(i, steps, sigma, sigma_next, x, denoised)):
            return check_output(denoised, "dpm_2")
    return check_output(x, "dpm_2")


def sample_dpm_2_ancestral(
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
    """Ancestral DPM-Solver-2: a midpoint step to ``sigma_down`` plus fresh noise (k-diffusion
    ``sample_dpm_2_ancestral``)."""
    sig, rows = prepare(x, sigmas)
    steps = len(sig) - 1
    source = make_noise_source(noise, x)
    for i in range(steps):
        sigma, sigma_next = sig[i], sig[i + 1]
        denoised = denoiser(x, rows[i], cond)
        sigma_down, sigma_up = ancestral_split(sigma, sigma_next, eta)
        if sigma_down == 0:
            x = denoised.clone()
        else:
            x = _midpoint_step(denoiser, x, denoised, sigma, sigma_down, cond, rows[i])
        if sigma_up:
            x.add_(source(), alpha=sigma_up * s_noise)
        if callback is not None and callback(StepInfo(i, steps, sigma, sigma_next, x, denoised)):
            return check_output(denoised, "dpm_2_ancestral")
    return check_output(x, "dpm_2_ancestral")
