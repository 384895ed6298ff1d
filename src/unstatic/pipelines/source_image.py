"""The image an edit starts from: any PIL mode or file to a tensor the model can take, predictably.

- Palette (``P``) images are expanded; images with alpha (``RGBA``, ``LA``, ``PA``) are composited on black
  (transparent pixels become black, with a warning when any pixel is transparent); grayscale becomes RGB for
  an RGB model and colour becomes grayscale (luminance) for a one-channel model.
- Size: U-Nets are convolutional, so an image is worked on at its own size, not the model's training size,
  unless ``width``/``height`` are given (then it is resized to them, A1111's "just resize"). A size that is
  not a multiple of the model's down-sampling factor is resized to the nearest multiple, with a warning.
  The result comes back at that working size.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from unstatic.imaging import from_pil

ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def load_image(source: str | Path | Image.Image) -> Image.Image:
    """Open a file (or pass a PIL image through), loaded into memory."""
    if isinstance(source, Image.Image):
        return source
    with Image.open(source) as image:
        image.load()
        return image.copy()


def flatten_image(image: Image.Image, channels: int) -> Image.Image:
    """``image`` as ``L`` (channels = 1) or ``RGB`` (channels = 3), following the rules in the module docstring."""
    if channels not in (1, 3):
        raise ValueError(f"models here take 1 or 3 channels, not {channels}")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ALPHA_MODES:
        rgba = image.convert("RGBA")
        if int(np.asarray(rgba.getchannel("A")).min()) < 255:
            warnings.warn("the image has transparent pixels; compositing it on black", stacklevel=3)
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (0, 0, 0, 255)), rgba)
    return image.convert("L" if channels == 1 else "RGB")


def image_tensor(source: str | Path | Image.Image | Tensor, channels: int) -> Tensor:
    """``[C, H, W]`` in [-1, 1] from a path, a PIL image, or a tensor already in that form (checked)."""
    if isinstance(source, Tensor):
        if source.ndim != 3 or source.shape[0] != channels:
            raise ValueError(f"an image tensor must be [{channels}, H, W], got shape {tuple(source.shape)}")
        return source.float()
    return from_pil(flatten_image(load_image(source), channels))


def resize(image: Tensor, height: int, width: int) -> Tensor:
    """``[C, H, W]`` (or ``[B, C, H, W]``) resized with antialiased bicubic filtering, clamped to [-1, 1]."""
    if tuple(image.shape[-2:]) == (height, width):
        return image
    batch = image if image.ndim == 4 else image[None]
    out = F.interpolate(batch, size=(height, width), mode="bicubic", align_corners=False, antialias=True).clamp(-1, 1)
    return out if image.ndim == 4 else out[0]


def working_size(height: int, width: int, factor: int, size: tuple[int, int] | None = None) -> tuple[int, int]:
    """``(height, width)`` the model works at: ``size`` (width, height) if given, else the image's own size,
    each rounded to the nearest multiple of ``factor`` (at least ``factor``), with a warning when rounding
    changed it."""
    want_w, want_h = size if size is not None else (width, height)
    h = max(factor, int(want_h / factor + 0.5) * factor)  # halves round up (Python's round() would go to even)
    w = max(factor, int(want_w / factor + 0.5) * factor)
    if (h, w) != (want_h, want_w):
        warnings.warn(f"{want_w}x{want_h} is not a multiple of this model's down-sampling factor {factor}; "
                      f"working at {w}x{h}", stacklevel=3)
    return h, w
