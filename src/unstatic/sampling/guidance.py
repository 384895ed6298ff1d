"""Classifier-free guidance as a denoiser wrapper (Ho & Salimans 2022), with guidance rescale and a
sigma interval.

Guidance on clean estimates equals guidance on eps or v: at fixed ``(x, sigma)`` the conversions
between predictions are affine in the prediction with the same coefficients for both branches
(see :mod:`unstatic.core.predictions`), so ``D_u + w (D_c - D_u)`` is the usual rule in any space.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from unstatic.core.frames import per_sample
from unstatic.core.predictions import from_x0, to_x0
from unstatic.denoisers.protocol import Cond, Denoiser, concat_conds

RESCALE_SPACES = ("v", "eps", "x0")


def rescale_guidance(guided: Tensor, positive: Tensor, phi: float) -> Tensor:
    """Match the per-sample std of the guided prediction to the conditional one and blend by ``phi``
    (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed", Sec. 3.4, Eq. 15-16)."""
    dims = tuple(range(1, guided.ndim))
    ratio = positive.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True)
    return torch.lerp(guided, guided * ratio, phi)


@dataclass(frozen=True, eq=False)
class ClassifierFreeGuidance:
    """``D(x) = D(x, uncond) + scale (D(x, cond) - D(x, uncond))`` with both branches in one batched call.

    Args:
        denoiser: the model as a denoiser.
        cond: the positive condition (a batch the size of x).
        uncond: the unconditional or *negative* condition (a negative prompt's encoding goes here).
        scale: guidance scale; 1 means no guidance and costs a single call.
        rescale: guidance rescale ``phi`` in [0, 1] (0 = off).
        rescale_space: prediction space where the std is matched; ``"v"`` as Lin et al. (their models
            predict v), ``"eps"`` to match diffusers on eps-prediction models, or ``"x0"``.
        sigma_interval: ``(low, high)``: guide only while ``low <= sigma <= high`` (Kynkäänniemi et al. 2024,
            "Applying Guidance in a Limited Interval"); outside it the conditional branch runs alone.

    Conditions are bound here, so the sampler is called without ``cond``.
    """

    denoiser: Denoiser
    cond: Cond
    uncond: Cond
    scale: float = 5.0
    rescale: float = 0.0
    rescale_space: str = "v"
    sigma_interval: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.rescale <= 1.0:
            raise ValueError(f"guidance rescale must lie in [0, 1], got {self.rescale}")
        if self.rescale_space not in RESCALE_SPACES:
            raise ValueError(f"rescale_space must be one of {RESCALE_SPACES}, got {self.rescale_space!r}")
        if self.sigma_interval is not None and not self.sigma_interval[0] <= self.sigma_interval[1]:
            raise ValueError(f"sigma_interval must be (low, high) with low <= high, got {self.sigma_interval}")

    def _active(self, sigma: Tensor) -> Tensor | bool:
        if self.scale == 1.0:
            return False
        if self.sigma_interval is None:
            return True
        low, high = self.sigma_interval
        return (sigma >= low) & (sigma <= high)

    def __call__(self, x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
        if cond is not None:
            raise ValueError("ClassifierFreeGuidance binds its conditions; call the sampler without cond")
        active = self._active(sigma)
        if active is False or (isinstance(active, Tensor) and not bool(active.any())):
            return self.denoiser(x, sigma, self.cond)
        both = self.denoiser(torch.cat([x, x]), torch.cat([sigma, sigma]), concat_conds(self.cond, self.uncond))
        positive, negative = both.chunk(2)
        guided = torch.lerp(negative, positive, self.scale)
        if self.rescale:
            guided = self._rescaled(guided, positive, x, sigma)
        if isinstance(active, Tensor) and not bool(active.all()):
            guided = torch.where(per_sample(active, x), guided, positive)
        return guided

    def _rescaled(self, guided: Tensor, positive: Tensor, x: Tensor, sigma: Tensor) -> Tensor:
        s = per_sample(sigma, x)
        space = self.rescale_space
        g, p = from_x0(space, guided, x, s), from_x0(space, positive, x, s)
        return to_x0(space, rescale_guidance(g, p, self.rescale), x, s)
