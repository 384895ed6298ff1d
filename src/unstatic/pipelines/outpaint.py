"""Outpainting: extend the canvas on any sides, pre-fill the new area, and inpaint it (plus a thin overlap into
the old image, so the border itself is redrawn); and a measure of whether the old border still shows.

The fill is what img2img starts from in the new area, so it matters only at ``strength`` < 1 (default 0.8, as
A1111's outpainting scripts): ``"edge"`` repeats the border pixels outward, ``"blur"`` blurs that
repetition (softer streaks), ``"noise"`` draws Gaussian noise with the image's per-channel mean and spread.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from unstatic.models.folder import DiffusionModel
from unstatic.pipelines.img2img import ImageInput
from unstatic.pipelines.inpaint import inpaint
from unstatic.pipelines.masks import Rect, dilate, gaussian_blur
from unstatic.pipelines.source_image import image_tensor
from unstatic.pipelines.generation import MAX_SEED, GeneratedImage

FILLS = ("edge", "blur", "noise")


def extend_canvas(
    image: Tensor, *, left: int = 0, right: int = 0, top: int = 0, bottom: int = 0, fill: str = "edge",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Rect]:
    """``(canvas [C, H', W'], new-area mask [1, H', W'], box of the old image (x0, y0, x1, y1))``."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
    if min(left, right, top, bottom) < 0:
        raise ValueError("outpainting extends a canvas: left, right, top and bottom must be >= 0")
    height, width = image.shape[-2:]
    canvas = F.pad(image[None], (left, right, top, bottom), mode="replicate")[0]
    new = torch.ones(1, *canvas.shape[-2:])
    new[:, top : top + height, left : left + width] = 0
    if fill == "blur":
        canvas = torch.lerp(canvas, gaussian_blur(canvas, max(left, right, top, bottom) / 4), new)
    elif fill == "noise":
        mean = image.mean(dim=(-2, -1), keepdim=True)
        std = image.std(dim=(-2, -1), keepdim=True) if image[0].numel() > 1 else torch.zeros_like(mean)
        noise = torch.randn(canvas.shape, generator=generator).to(canvas)
        canvas = torch.lerp(canvas, (mean + std * noise).clamp(-1, 1), new)
    return canvas, new, (left, top, left + width, top + height)


def seam_energy(image: Tensor, box: Rect) -> float:
    """How much the old border shows: the mean squared difference between neighbouring pixels across the
    border of ``box`` (the old image inside the extended ``[C, H, W]`` image), divided by the mean over every
    other neighbouring pair. About 1 when the seam looks like the rest of the image; well above 1 for a hard
    edge; 0 when the border pixels are simply repeated."""
    x0, y0, x1, y1 = box
    height, width = image.shape[-2:]
    dx = (image[:, :, 1:] - image[:, :, :-1]).pow(2).sum(0)  # pair (x, x + 1): [H, W - 1]
    dy = (image[:, 1:, :] - image[:, :-1, :]).pow(2).sum(0)  # pair (y, y + 1): [H - 1, W]
    seam_x = torch.zeros_like(dx, dtype=torch.bool)
    seam_y = torch.zeros_like(dy, dtype=torch.bool)
    for column in (x0 - 1, x1 - 1):
        if 0 <= column < width - 1:
            seam_x[y0:y1, column] = True
    for row in (y0 - 1, y1 - 1):
        if 0 <= row < height - 1:
            seam_y[row, x0:x1] = True
    seam = torch.cat([dx[seam_x], dy[seam_y]])
    rest = torch.cat([dx[~seam_x], dy[~seam_y]])
    if seam.numel() == 0 or rest.numel() == 0:
        raise ValueError("the box has no border inside the image: nothing was extended")
    eps = 1e-12  # a flat image with a flat extension scores 1, not 0/0
    return float((seam.mean() + eps) / (rest.mean() + eps))


def outpaint(
    model: DiffusionModel,
    image: ImageInput,
    prompt: str | Sequence[str],
    *,
    left: int = 0,
    right: int = 0,
    top: int = 0,
    bottom: int = 0,
    fill: str = "edge",
    mask_blur: float = 4.0,
    overlap: int | None = None,
    strength: float = 0.8,
    seed: int | None = None,
    **options: Any,
) -> list[GeneratedImage]:
    """Extend ``image`` by the given pixels, fill the new area (``fill``), and inpaint it with ``prompt``.

    ``overlap`` px of the old image along the border are repainted too (default ``ceil(2 * mask_blur)``), so
    the feathered mask is fully white on the new area and fades out inside the old image. A canvas that is not
    a multiple of the model's down-sampling factor is resized (with a warning; see
    :mod:`unstatic.pipelines.source_image`). Other options as :func:`~unstatic.pipelines.inpaint.inpaint`.
    """
    if left + right + top + bottom == 0:
        raise ValueError("nothing to outpaint: give at least one of left, right, top, bottom")
    seed = random.randint(0, MAX_SEED) if seed is None else int(seed)
    original = image_tensor(image, model.image_channels)
    canvas, new, _ = extend_canvas(original, left=left, right=right, top=top, bottom=bottom, fill=fill,
                                   generator=torch.Generator().manual_seed(seed))
    overlap = math.ceil(2 * mask_blur) if overlap is None else overlap
    out = inpaint(model, canvas, dilate(new, overlap), prompt, mask_blur=mask_blur, strength=strength, seed=seed, **options)
    extra = {"Outpaint": f"left {left} right {right} top {top} bottom {bottom}", "Outpaint fill": fill}
    return [dataclasses.replace(r, parameters={**r.parameters, **extra}) for r in out]
