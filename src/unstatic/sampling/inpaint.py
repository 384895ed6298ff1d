"""Inpainting as wrappers: keep the known pixels with any model, or condition an inpainting model on them.

Masks here are float tensors in [0, 1] broadcastable to the image, **1 = repaint**, 0 = keep (a feathered
mask blends in between). Images are in the model's data range ([-1, 1]).

With any model (:class:`KnownRegionDenoiser`) the known region is imposed on the clean estimate the sampler
receives: ``D'(x) = mask * D(x) + (1 - mask) * image``. Samplers are plain functions that own their loop, so a
wrapper cannot touch ``x`` between steps; it does not need to. Every sampler step moves ``x`` toward its clean
estimate along ``x_next = D + sigma_next / sigma * (x - D)`` (plus fresh noise for stochastic samplers), so
with ``D = image`` on the known region, the known part of ``x`` stays ``image + sigma * noise``: the correctly
noised original at every sigma, as RePaint (Lugmayr et al. 2022, "RePaint: Inpainting using Denoising
Diffusion Probabilistic Models", Eq. 8) re-imposes it, and A1111's ``CFGDenoiser`` does the same by replacing
the known part of ``denoised``. The unknown region sees that noisy original, so it is conditioned on a *noisy*
view of the known pixels: an approximation (exact only when the two regions are independent), which RePaint's
resampling (:mod:`unstatic.sampling.resample`) reduces and an inpainting model avoids. Pipelines also blend
the final image with the original through the mask, so kept pixels come back bit-exact.

An inpainting model (:class:`InpaintingConditioned`) has ``2 C + 1`` input channels: ``x`` then the mask then
the masked image, concatenated after the input scaling, as Stable Diffusion's inpainting U-Net is fed
(diffusers ``StableDiffusionInpaintPipeline``: ``cat([latents, mask, masked_image_latents], dim=1)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from unstatic.denoisers.protocol import Cond, Denoiser, Network


def blend_known(sample: Tensor, image: Tensor, mask: Tensor) -> Tensor:
    """``mask * sample + (1 - mask) * image``: the sample where repainted, the original where kept."""
    return torch.lerp(image.to(sample), sample, mask.to(sample))


@dataclass(frozen=True, eq=False)
class KnownRegionDenoiser:
    """A denoiser whose clean estimate agrees with ``image`` wherever ``mask`` is 0 (any model, any sampler).

    Args:
        denoiser: the model as a denoiser (guidance included, if any: this wraps outside it).
        image: ``[B or 1, C, H, W]`` the original, in the data range.
        mask: ``[B or 1, 1 or C, H, W]`` in [0, 1], 1 = repaint.
    """

    denoiser: Denoiser
    image: Tensor
    mask: Tensor

    def __call__(self, x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
        return blend_known(self.denoiser(x, sigma, cond), self.image, self.mask)


def masked_image(image: Tensor, mask: Tensor) -> Tensor:
    """What an inpainting model is shown: the original with the region to repaint set to 0 (mid-grey in
    [-1, 1]), diffusers' ``image * (mask < 0.5)``."""
    return image * (mask < 0.5).to(image)


@dataclass(frozen=True, eq=False)
class InpaintingConditioned:
    """A raw inpainting network seen as an ordinary one: appends the mask and the masked image as channels.

    Args:
        network: ``network(cat([x_in, mask, masked], 1), timestep, cond)`` with ``2 C + 1`` input channels.
        mask: ``[B, 1, H, W]``, binarised at 0.5 (inpainting models are trained on hard masks).
        masked: ``[B, C, H, W]`` the masked image (:func:`masked_image`).

    Guidance batches several copies of each sample (``[x, x]``), so the extra channels are tiled to the
    batch of ``x_in``.
    """

    network: Network
    mask: Tensor
    masked: Tensor

    def __call__(self, x_in: Tensor, timestep: Tensor, cond: Cond = None) -> Tensor:
        copies, rest = divmod(x_in.shape[0], self.mask.shape[0])
        if rest:
            raise ValueError(f"a batch of {x_in.shape[0]} is not a multiple of the {self.mask.shape[0]} masks given")
        mask = (self.mask >= 0.5).to(x_in).repeat(copies, 1, 1, 1)
        masked = self.masked.to(x_in).repeat(copies, 1, 1, 1)
        return self.network(torch.cat([x_in, mask, masked], dim=1), timestep, cond)
