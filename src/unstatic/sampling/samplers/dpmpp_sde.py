"""Multistep DPM-Solver++ SDE samplers: 2M SDE and 3M SDE (Lu et al. 2022b, Sec. 4 / Appendix; the
stochastic variants as in k-diffusion and Gonzalez et al. 2023 "SEEDS").

Plain Gaussian noise is used between grid points: on a fixed grid it *is* the Brownian increment, and
it costs microseconds where a Brownian tree costs milliseconds per step.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from unstatic.denoisers.protocol import Cond, Denoiser
from unstatic.sampling.checks import check_output, prepare
from unstatic.sampling.noise import make_noise_source
from unstatic.sampling.progress import Callback, StepInfo
from unstatic.sampling.steps import weighted_sum


def sample_dpmpp_2m_sde(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Cond = None,
    callback: Callback | None = None,
    noise=None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    solver_type: str = "midpoint",
) -> Tensor:
    """DPM-Solver++(2M) SDE: ``x' = e^{-(1+eta)h} x + (1 - e^{-(1+eta)h}) D + c (D - D_prev) / r
    + sigma' sqrt(1 - e^{-2 eta h}) z`` with ``c`` from the midpoint or Heun rule."""
    if solver_type not in ("midpoint", "heun"):
        raise ValueError(f"solver_type must be 'midpoint' or 'heun', got {solver_type!r}")
    sig, rows = prepare(x, sigmas)
    steps = len(sig) - 1
    source = make_noise_source(noise, x) if eta else None
    prev, h_last = None, None
    for i in range(steps):
        sigma, sigma_next = sig[i], sig[i + 1]
        denoised = denoiser(x, rows[i], cond)
        if sigma_next == 0:
            x = denoised.clone()
        else:
            h = math.log(sigma / sigma_next)
            eta_h = eta * h
            decay = math.exp(-h - eta_h)
            target = denoised
            if prev is not None:
                r = h_last / h
                if solver_type == "midpoint":
                    c = 0.5 * (1 - decay) / r
                else:
                    c = (1 - (1 - decay) / (h + eta_h)) / r
                target = torch.lerp(denoised, prev, -c / (1 - decay))  # folds c (D - D_prev) into the lerp
            x = torch.lerp(target, x, decay)
            if eta:
                x.add_(source(), alpha=sigma_next * math.sqrt(-math.expm1(-2 * eta_h)) * s_noise)
            h_last = h
        prev = denoised
        if callback is not None and callback(StepInfo(i, steps, sigma, sigma_next, x, denoised)):
            return check_output(denoised, "dpmpp_2m_sde")
    return check_output(x, "dpmpp_2m_sde")


def sample_dpmpp_3m_sde(
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
    """DPM-Solver++(3M) SDE: third-order multistep in lambda with ``phi_2, phi_3`` corrections
    (Lu et al. 2022b, Eq. for 3rd-order multistep; k-diffusion ``sample_dpmpp_3m_sde``)."""
    sig, rows = prepare(x, sigmas)
    steps = len(sig) - 1
    source = make_noise_source(noise, x) if eta else None
    d1, d2, h_1, h_2 = None, None, None, None  # last two clean estimates and step sizes
    for i in range(steps):
        sigma, sigma_next = sig[i], sig[i + 1]
        denoised = denoiser(x, rows[i], cond)
        if sigma_next == 0:
            x = denoised.clone()
        else:
            h = math.log(sigma / sigma_next)
            h_eta = h * (eta + 1)
            decay = math.exp(-h_eta)
            phi_2 = math.expm1(-h_eta) / h_eta + 1
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                phi_3 = phi_2 / h_eta - 0.5
                # correction = phi_2 * d1 - phi_3 * d2 written on (D, D_1, D_2)
                a = r0 / (r0 + r1)
                w_d1 = (1 + a) / r0, -(1 + a) / r0 - a / r1, a / r1  # d1 = d1_0 + a (d1_0 - d1_1)
                w_d2 = 1 / (r0 * (r0 + r1)), -1 / (r0 * (r0 + r1)) - 1 / (r1 * (r0 + r1)), 1 / (r1 * (r0 + r1))
                w = [phi_2 * p - phi_3 * q for p, q in zip(w_d1, w_d2)]
                k = 1 - decay
                target = weighted_sum((1 + w[0] / k, denoised), (w[1] / k, d1), (w[2] / k, d2))
            elif h_1 is not None:
                r = h_1 / h
                target = torch.lerp(denoised, d1, -phi_2 / (r * (1 - decay)))
            else:
                target = denoised
            x = torch.lerp(target, x, decay)
            if eta:
                x.add_(source(), alpha=sigma_next * math.sqrt(-math.expm1(-2 * h * eta)) * s_noise)
            h_1, h_2 = h, h_1
        d1, d2 = denoised, d1
        if callback is not None and callback(StepInfo(i, steps, sigma, sigma_next, x, denoised)):
            return check_output(denoised, "dpmpp_3m_sde")
    return check_output(x, "dpmpp_3m_sde")
