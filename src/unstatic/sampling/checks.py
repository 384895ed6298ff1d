"""Input validation shared by every sampler: clear errors instead of silent wrong results."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from unstatic.sampling.steps import FINAL_STEPS


class NonFiniteError(FloatingPointError):
    """A sampler was given, or produced, NaN or infinite values."""


def prepare(x: Tensor, sigmas: Tensor, final_step: str = "plain") -> tuple[list[float], tuple[Tensor, ...]]:
    """Validate a sampler's inputs; return sigmas as Python floats and per-step per-sample sigma rows.

    The rows (``steps + 1`` tensors of shape ``[B]``, x's dtype and device) are built in one go so the loop
    does no tensor work to hand the denoiser its sigma.
    """
    if final_step not in FINAL_STEPS:
        raise ValueError(f"final_step must be one of {FINAL_STEPS}, got {final_step!r}")
    if not isinstance(x, Tensor) or x.ndim < 1:
        raise TypeError("x must be a tensor with a leading batch dimension")
    sigmas = torch.as_tensor(sigmas)
    if sigmas.ndim != 1:
        raise ValueError(f"sigmas must be a 1-D tensor, got shape {tuple(sigmas.shape)}")
    if len(sigmas) < 2:
        raise ValueError("sigmas must hold at least 2 noise levels (zero steps requested?)")
    values = sigmas.tolist()
    if not all(math.isfinite(s) for s in values):
        raise ValueError(f"sigmas must be finite, got {values}")
    if values[-1] < 0:
        raise ValueError(f"sigmas must be non-negative, got {values[-1]}")
    for i in range(len(values) - 1):
        if not values[i + 1] < values[i]:
            raise ValueError(
                f"sigmas must strictly decrease: sigmas[{i}] = {values[i]} is followed by sigmas[{i + 1}] = {values[i + 1]}"
            )
    if not bool(torch.isfinite(x).all()):
        raise NonFiniteError("x contains NaN or infinite values")
    rows = sigmas.to(x.device, x.dtype)[:, None].expand(len(values), x.shape[0]).unbind(0)
    return values, rows


def check_output(x: Tensor, name: str) -> Tensor:
    """Raise if sampling produced non-finite values (a broken denoiser), rather than return them."""
    if not bool(torch.isfinite(x).all()):
        raise NonFiniteError(f"sampler {name!r} produced NaN or infinite values; the denoiser returned non-finite output")
    return x
