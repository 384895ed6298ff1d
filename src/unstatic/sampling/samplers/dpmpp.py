"""DPM-Solver++ samplers in the sigma frame: 2M (multistep) and 2S ancestral (Lu et al. 2022b).

With ``lambda = -log sigma`` and ``h = lambda_next - lambda``, DPM-Solver++ integrates the data-prediction
ODE exactly for a clean estimate that is polynomial in lambda; every update is a lerp of ``x`` towards a
combination of clean estimates.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from unstatic.denoisers.protocol import Cond, Denoiser
from unstatic.sampling.checks import check_output, prepare
from unstatic.sampling.noise import make_noise_source
from unstatic.sampling.progress import Callback, StepInfo
from unstatic.sampling.steps import ancestral_split, ddim_step, final_estimate


def sample_dpmpp_2m(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Cond = None,
    callback: Callback | None = None,
    noise=None,
    final_step: str = "extrapolate",
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022b, Algorithm 2): ``D_d = (1 + 1/2r) D_i - (1/2r) D_{i-1}``,
    ``r = h_{i-1} / h_i``; first order on the first step."""
    sig, rows = prepare(x, sigmas, final_step)
    steps = len(sig) - 1
    prev = None
    for i in range(steps):
        sigma, sigma_next = sig[i], sig[i + 1]
        denoised = denoiser(x, rows[i], cond)
        if sigma_next == 0:
            x = final_estimate(denoised, sigma, prev, final_step)
        elif prev is None:
            x = ddim_step(x, denoised, sigma, sigma_next)
        else:
            r = math.log(prev[1] / sigma) / math.log(sigma / sigma_next)
            x = ddim_step(x, torch.lerp(denoised, prev[0], -1 / (2 * r)), sigma, sigma_next)
        prev = (denoised, sigma)
        if callback is not None and callback(StepInfo(i, steps, sigma, sigma_next, x, denoised)):
            return check_output(denoised, "dpmpp_2m")
    return check_output(x, "dpmpp_2m")


def sample_dpmpp_2s_ancestral(
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
    """Ancestral DPM-Solver++(2S) (Lu et al. 2022b, Algorithm 1 with r = 1/2; k-diffusion
    ``sample_dpmpp_2s_ancestral``): a single-step 2nd-order move to ``sigma_down``, then fresh noise."""
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
            sigma_mid = math.sqrt(sigma * sigma_down)  # lambda + h/2
            x_mid = ddim_step(x, denoised, sigma, sigma_mid)
            denoised_mid = denoiser(x_mid, rows[i].new_full(rows[i].shape, sigma_mid), cond)
            x = ddim_step(x, denoised_mid, sigma, sigma_down)
        if sigma_up:
            x.add_(source(), alpha=sigma_up * s_noise)
        if callback is not None and callback(StepInfo(i, steps, sigma, sigma_next, x, denoised)):
            return check_output(denoised, "dpmpp_2s_ancestral")
    return check_output(x, "dpmpp_2s_ancestral")
