"""Inpainting: repaint the white part of a mask, keep the rest, with any model (known region re-imposed at every
step, optionally with RePaint resampling) or with an inpainting model (mask and masked image as extra input
channels). The wrappers are in :mod:`unstatic.sampling.inpaint`; this module prepares masks and images (in
latent space for latent models), runs them through the img2img core, and puts the result back.

Bad input: a mask of another size than the image is resized to it (warning); an all-black mask repaints
nothing, so the image comes back unchanged without a model call (warning); an all-white mask is img2img of
the whole image at ``strength`` (txt2img at strength 1). Image modes follow
:mod:`unstatic.pipelines.source_image`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from unstatic.models.folder import DiffusionModel
from unstatic.pipelines.generation import results, run_generation
from unstatic.pipelines.img2img import ImageInput
from unstatic.pipelines.masks import feather, fit_mask, load_mask, mask_box
from unstatic.pipelines.source_image import image_tensor, resize, working_size
from unstatic.pipelines.generation import GeneratedImage
from unstatic.sampling.from_model import downsampling_factor
from unstatic.sampling.inpaint import InpaintingConditioned, KnownRegionDenoiser, blend_known, masked_image

MaskInput = str | Path | Image.Image | Tensor  # a file, a PIL image, or [1, H, W] / [H, W] in [0, 1]


def is_inpainting_model(model: DiffusionModel) -> bool:
    """True for a network with ``2 C + 1`` input channels (x, mask, masked image), as SD's inpainting U-Net."""
    in_channels = getattr(getattr(model.network, "config", None), "in_channels", model.spec.channels)
    return in_channels == 2 * model.spec.channels + 1


def mask_tensor(mask: MaskInput) -> Tensor:
    """``[1, H, W]`` float from any :data:`MaskInput`."""
    if isinstance(mask, Tensor):
        return (mask[None] if mask.ndim == 2 else mask).float()
    return load_mask(mask)


def inpaint_tensors(
    model: DiffusionModel, image: Tensor, hard: Tensor, soft: Tensor, prompt: str | Sequence[str],
    *, jumps: int = 1, jump_length: int = 10, **options: Any,
) -> tuple[Tensor, list[str], int, dict[str, Any]]:
    """Inpaint ``image`` ``[C, H, W]`` (a size the model takes) where ``soft`` (``[1, H, W]``, feathered) is
    white; ``hard`` is the unfeathered mask an inpainting model is shown. Returns what ``run_generation`` returns,
    with the kept region blended back exactly.

    A latent model works on the image's latents (VAE posterior mean) with the masks brought to the latent grid
    (:func:`latent_masks`); an inpainting model is shown the latents of the masked image, as SD's inpainting
    U-Net was trained (Rombach et al. 2022, Sec. 4.5). The kept region is blended back in pixels after decoding,
    so it comes back exactly, as in pixel space."""
    image_b = image[None]
    cells, hard_cells, soft_cells = _to_cells(model, image_b, hard, soft)
    conditioned = is_inpainting_model(model)
    masked = _encode(model, masked_image(image_b, hard[None])) if conditioned else None
    images, rows, seed, parameters = run_generation(
        model, image, prompt,
        wrap_network=(lambda network: InpaintingConditioned(network, hard_cells[None], masked)) if conditioned else None,
        wrap_denoiser=lambda denoiser: KnownRegionDenoiser(denoiser, cells, soft_cells[None]),
        jumps=jumps, jump_length=jump_length, **options,
    )
    if jumps > 1:
        parameters.update({"Resample jumps": jumps, "Jump length": jump_length})
    return blend_known(images, image_b, soft[None]), rows, seed, parameters


def latent_masks(hard: Tensor, soft: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Pixel masks (``[1, H, W]``) on a latent grid of ``height`` x ``width`` cells: the hard mask by nearest
    neighbour, as diffusers' inpainting pipeline resizes it (so an inpainting U-Net sees the kind of mask it
    was trained on); the feathered one by area averaging, so a cell is repainted in proportion to its pixels."""
    if tuple(hard.shape[-2:]) == (height, width):
        return hard, soft
    nearest = torch.nn.functional.interpolate(hard[None], size=(height, width), mode="nearest")[0]
    area = torch.nn.functional.interpolate(soft[None], size=(height, width), mode="area")[0]
    return nearest, area.clamp(0, 1)


def _encode(model: DiffusionModel, images: Tensor) -> Tensor:
    """Images to what the network samples (latents, or the images themselves), on the CPU like the masks."""
    if model.vae is None:
        return images
    return model.encode(images.to(next(model.vae.parameters()).device)).cpu()


def _to_cells(model: DiffusionModel, image: Tensor, hard: Tensor, soft: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The image and both masks in the space the network samples."""
    cells = _encode(model, image)
    return (cells, *latent_masks(hard, soft, *cells.shape[-2:]))


def inpaint(
    model: DiffusionModel,
    image: ImageInput,
    mask: MaskInput,
    prompt: str | Sequence[str],
    *,
    mask_blur: float = 4.0,
    strength: float = 1.0,
    only_masked: bool = False,
    padding: int = 32,
    width: int | None = None,
    height: int | None = None,
    **options: Any,
) -> list[GeneratedImage]:
    """Repaint the white part of ``mask`` in ``image`` with ``prompt``.

    ``mask_blur`` feathers the mask (Gaussian, std in pixels). ``strength`` < 1 starts from the noised original
    instead of pure noise (A1111's "original" masked content). ``only_masked`` crops a box around the mask
    (grown by ``padding`` px, widened to the working aspect), works on it at ``width`` x ``height`` (default: the
    model's training size), and pastes it back through the feathered mask; otherwise the whole image is worked on
    at its own size (or ``width`` x ``height``). ``jumps``/``jump_length`` add RePaint resampling; other options
    as :func:`~unstatic.pipelines.txt2img.text_to_image`.
    """
    original = image_tensor(image, model.image_channels)
    full_h, full_w = original.shape[-2:]
    hard = fit_mask(mask_tensor(mask), full_h, full_w)
    soft = feather(hard, mask_blur)
    extra = {"Mask blur": mask_blur}
    if not bool((hard > 0).any()):
        warnings.warn("the mask is all black: nothing to repaint; returning the image unchanged", stacklevel=2)
        unchanged, rows, seed, parameters = run_generation(model, original, prompt, strength=0.0, **options)
        return results(unchanged, rows, options.get("negative_prompt", ""), seed, {**parameters, **extra})
    factor = downsampling_factor(model)
    if only_masked:
        size = (width or model.spec.image_size, height or model.spec.image_size)
        h, w = working_size(size[1], size[0], factor, size)
        x0, y0, x1, y1 = mask_box(soft, padding, aspect=w / h)
        crop = (slice(None), slice(y0, y1), slice(x0, x1))
        edited, rows, seed, parameters = inpaint_tensors(
            model, resize(original[crop], h, w), _resize_mask(hard[crop], h, w), _resize_mask(soft[crop], h, w),
            prompt, strength=strength, **options,
        )
        out = original[None].repeat(len(edited), 1, 1, 1)
        out[(slice(None), *crop)] = blend_known(resize(edited, y1 - y0, x1 - x0), original[crop][None], soft[crop][None])
        parameters.update({"Size": f"{full_w}x{full_h}", "Inpaint area": "Only masked", "Masked area padding": padding})
        return results(out, rows, options.get("negative_prompt", ""), seed, {**parameters, **extra})
    h, w = working_size(full_h, full_w, factor, None if width is None and height is None else (width or full_w, height or full_h))
    edited, rows, seed, parameters = inpaint_tensors(
        model, resize(original, h, w), _resize_mask(hard, h, w), _resize_mask(soft, h, w), prompt,
        strength=strength, **options,
    )
    return results(edited, rows, options.get("negative_prompt", ""), seed, {**parameters, **extra})


def _resize_mask(mask: Tensor, height: int, width: int) -> Tensor:
    """The mask follows its image through a resize (bilinear: it stays in [0, 1])."""
    if tuple(mask.shape[-2:]) == (height, width):
        return mask
    return torch.nn.functional.interpolate(mask[None], size=(height, width), mode="bilinear", antialias=True)[0].clamp(0, 1)
