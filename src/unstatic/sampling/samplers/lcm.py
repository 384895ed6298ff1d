"""Consistency-model multistep sampling (Song et al. 2023, Algorithm 1; Luo et al. 2023, LCM)."""

from __future__ import annotations

from torch import Tensor

from unstatic.denoisers.protocol import Cond, Denoiser
from unstatic.sampling.checks import check_output, prepare
from unstatic.sampling.noise import make_noise_source
from unstatic.sampling.progress import Callback, StepInfo


def sample_lcm(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Cond = None,
    callback: Callback | None = None,
    noise=None,
) -> Tensor:
    """Jump to the clean estimate, then re-noise it to the next level: ``x' = D(x) + sigma' z``.

    Meant for consistency / LCM-distilled models, whose denoiser already maps any noise level to the data.
    """
    sig, rows = prepare(x, sigmas)
    steps = len(sig) - 1
    source = make_noise_source(noise, x)
    for i in range(steps):
        denoised = denoiser(x, rows[i], cond)
        x = denoised.clone() if sig[i + 1] == 0 else denoised.add(source(), alpha=sig[i + 1])
        if callback is not None and callback(StepInfo(i, steps, sig[i], sig[i + 1], x, denoised)):
            return check_output(denoised, "lcm")
    return check_output(x, "lcm")
