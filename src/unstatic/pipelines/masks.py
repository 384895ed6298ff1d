"""Inpainting masks: from a PNG or rectangles to a float tensor ``[1, H, W]`` in [0, 1], **white (1) = repaint**,
black (0) = keep; feathering, resizing and the box around the masked area.

Bad input is handled one way each: a mask with alpha is composited on black first (transparent = keep), colour
masks are read as their luminance, a mask of another size than the image is resized to it with a warning.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

Rect = tuple[int, int, int, int]


def load_mask(source: str | Path | Image.Image) -> Tensor:
    """A mask PNG (or PIL image) as ``[1, H, W]`` float in [0, 1]; transparent pixels count as black (keep)."""
    image = Image.open(source) if isinstance(source, (str, Path)) else source
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    pixels = np.asarray(image.convert("L"), dtype=np.float32) / np.float32(255)
    return torch.from_numpy(pixels)[None]


def parse_rect(text: str) -> Rect:
    """``"x0,y0,x1,y1"`` (pixels; x1, y1 exclusive) to a tuple, with a clear error for anything else."""
    parts = text.replace(" ", "").split(",")
    try:
        x0, y0, x1, y1 = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"a rectangle is x0,y0,x1,y1 in whole pixels, got {text!r}") from None
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"rectangle {text!r} is empty: need x0 < x1 and y0 < y1")
    return x0, y0, x1, y1


def rect_mask(rects: Sequence[Rect | str], height: int, width: int) -> Tensor:
    """The union of rectangles as a ``[1, H, W]`` mask; rectangles are clipped to the image, and one wholly
    outside it is an error (it would repaint nothing, which is surely not what was meant)."""
    mask = torch.zeros(1, height, width)
    for rect in rects:
        x0, y0, x1, y1 = parse_rect(rect) if isinstance(rect, str) else rect
        if x1 <= max(x0, 0) or y1 <= max(y0, 0) or x0 >= width or y0 >= height:
            raise ValueError(f"rectangle {(x0, y0, x1, y1)} lies outside the {width}x{height} image")
        mask[:, max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)] = 1.0
    return mask


def gaussian_kernel(radius: float) -> Tensor:
    """A normalised 1-D Gaussian of standard deviation ``radius``, ``2 int(2.5 r + 0.5) + 1`` taps (A1111's
    mask blur kernel)."""
    half = int(2.5 * radius + 0.5)
    taps = torch.arange(-half, half + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (taps / radius) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(image: Tensor, radius: float) -> Tensor:
    """Separable Gaussian blur of ``[C, H, W]`` (or ``[B, C, H, W]``) with mirrored borders (reflect-101, as
    OpenCV's default), falling back to repeated edges where the image is narrower than the kernel."""
    if radius <= 0:
        return image
    batch = image if image.ndim == 4 else image[None]
    kernel = gaussian_kernel(radius).to(batch)
    half, channels = len(kernel) // 2, batch.shape[1]
    for dim in (-1, -2):
        size = batch.shape[dim]
        mode = "reflect" if half < size else "replicate"
        pad = (half, half, 0, 0) if dim == -1 else (0, 0, half, half)
        weight = kernel.view(1, 1, 1, -1) if dim == -1 else kernel.view(1, 1, -1, 1)
        batch = F.conv2d(F.pad(batch, pad, mode=mode), weight.expand(channels, 1, -1, -1).contiguous(), groups=channels)
    return batch if image.ndim == 4 else batch[0]


def feather(mask: Tensor, radius: float) -> Tensor:
    """Soften a mask's edge with a Gaussian of standard deviation ``radius`` pixels (A1111's "Mask blur");
    radius 0 returns the mask as it is."""
    if radius < 0:
        raise ValueError(f"mask blur must be >= 0, got {radius}")
    return gaussian_blur(mask, radius).clamp(0, 1)


def dilate(mask: Tensor, pixels: int) -> Tensor:
    """Grow the masked area by ``pixels`` in every direction (a square max filter)."""
    if pixels <= 0:
        return mask
    return F.max_pool2d(mask[None], 2 * pixels + 1, stride=1, padding=pixels)[0]


def fit_mask(mask: Tensor, height: int, width: int) -> Tensor:
    """``mask`` at ``height x width``: resized (bilinear) with a warning when its size differs."""
    if mask.ndim != 3 or mask.shape[0] != 1:
        raise ValueError(f"a mask is [1, H, W], got shape {tuple(mask.shape)}")
    if not bool(((mask >= 0) & (mask <= 1)).all()):
        raise ValueError("mask values must lie in [0, 1] (white = 1 = repaint)")
    if tuple(mask.shape[-2:]) == (height, width):
        return mask
    warnings.warn(f"mask is {mask.shape[-1]}x{mask.shape[-2]} but the image is {width}x{height}; resizing the mask",
                  stacklevel=3)
    return F.interpolate(mask[None], size=(height, width), mode="bilinear", align_corners=False, antialias=True)[0].clamp(0, 1)


def mask_box(mask: Tensor, padding: int = 0, aspect: float | None = None) -> Rect | None:
    """The box ``(x0, y0, x1, y1)`` around every pixel with mask > 0, grown by ``padding`` and, with ``aspect``
    (width / height), widened or heightened to that ratio, clipped to the image; None for an empty mask.

    This is A1111's "only masked" crop: the region is processed at full model resolution and pasted back.
    """
    rows, cols = torch.nonzero(mask[0] > 0, as_tuple=True)
    if len(rows) == 0:
        return None
    height, width = mask.shape[-2:]
    x0, x1 = int(cols.min()) - padding, int(cols.max()) + 1 + padding
    y0, y1 = int(rows.min()) - padding, int(rows.max()) + 1 + padding
    if aspect is not None:
        w, h = x1 - x0, y1 - y0
        if w / h < aspect:
            grow = math.ceil(h * aspect) - w
            x0, x1 = x0 - grow // 2, x1 + grow - grow // 2
        else:
            grow = math.ceil(w / aspect) - h
            y0, y1 = y0 - grow // 2, y1 + grow - grow // 2
        x0, x1 = _shift_inside(x0, x1, width)
        y0, y1 = _shift_inside(y0, y1, height)
    return max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)


def _shift_inside(lo: int, hi: int, size: int) -> tuple[int, int]:
    """Slide ``[lo, hi)`` inside ``[0, size)`` where it fits, so an aspect-corrected box keeps its size at edges."""
    if lo < 0:
        lo, hi = 0, hi - lo
    if hi > size:
        lo, hi = lo - (hi - size), size
    return lo, hi
