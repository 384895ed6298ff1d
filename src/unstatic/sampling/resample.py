"""RePaint's resampling around any sampler: go down ``jump_length`` steps, noise back up, do it again.

Lugmayr et al. 2022 ("RePaint", Sec. 4.2 and Algorithm 1) let the generated region "harmonise" with the
known one by undoing steps: after denoising from ``sigma_i`` to ``sigma_j`` they add fresh noise back to
``sigma_i`` (in the sigma frame the forward process is ``x + sqrt(sigma_i^2 - sigma_j^2) * noise``) and
denoise again, ``jumps`` times per stretch. Here each stretch is an ordinary sampler call on the
sub-schedule ``sigmas[i : j + 1]``, so it works with every sampler and every wrapper; multistep samplers
restart their history at each stretch, as they do after any restart.
"""

from __future__ import annotations

import dataclasses

from torch import Tensor

from unstatic.denoisers.protocol import Cond, Denoiser
from unstatic.sampling.noise import make_noise_source
from unstatic.sampling.progress import Callback, StepInfo
from unstatic.sampling.registry import Sampler


def resampled_step_count(steps: int, jumps: int, jump_length: int) -> int:
    """Sampler steps run in all: every stretch but the last (which reaches 0) is run ``jumps`` times."""
    stretches = -(-steps // jump_length)
    return (stretches - 1) * jump_length * jumps + (steps - (stretches - 1) * jump_length)


def sample_resampled(
    sampler: Sampler,
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    jumps: int,
    jump_length: int,
    cond: Cond = None,
    callback: Callback | None = None,
    noise=None,
    **options,
) -> Tensor:
    """Run ``sampler`` over ``sigmas`` with RePaint resampling; ``jumps = 1`` is the plain sampler call.

    The callback sees global step numbers (``steps`` = :func:`resampled_step_count`); a callback that stops
    sampling stops the whole loop, which returns the latest clean estimate as every sampler does.
    """
    if jumps < 1 or jump_length < 1:
        raise ValueError(f"jumps and jump_length must be at least 1, got {jumps} and {jump_length}")
    steps = len(sigmas) - 1
    if jumps == 1:
        return sampler(denoiser, x, sigmas, cond=cond, callback=callback, noise=noise, **options)
    source = make_noise_source(noise, x)  # one stream for the samplers and the re-noising
    total, done, stopped = resampled_step_count(steps, jumps, jump_length), 0, False

    def relay(info: StepInfo) -> bool:
        nonlocal stopped
        stopped = bool(callback(dataclasses.replace(info, step=done + info.step, steps=total)))
        return stopped

    for i in range(0, steps, jump_length):
        j = min(i + jump_length, steps)
        repeats = jumps if j < steps else 1  # the last stretch ends at sigma = 0: nothing to undo
        for r in range(repeats):
            y = sampler(denoiser, x, sigmas[i : j + 1], cond=cond, noise=source,
                        callback=relay if callback is not None else None, **options)
            done += j - i
            if stopped:
                return y
            x = y + source() * float(sigmas[i] ** 2 - sigmas[j] ** 2) ** 0.5 if r < repeats - 1 else y
    return x
