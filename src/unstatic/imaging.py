"""Conversions between image tensors (``[C, H, W]`` in [-1, 1], the range every model here works in) and PIL."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor


def to_pil(image: Tensor) -> Image.Image:
    """``[C, H, W]`` in [-1, 1] (C = 1 or 3) to an ``L`` or ``RGB`` PIL image, rounding to the nearest level."""
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"expected an image tensor [1 or 3, H, W], got shape {tuple(image.shape)}")
    array = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if image.shape[0] == 1:
        return Image.fromarray(array[0].numpy(), "L")
    return Image.fromarray(array.permute(1, 2, 0).contiguous().numpy(), "RGB")


def from_uint8(pixels: np.ndarray) -> Tensor:
    """Channels-last uint8 pixels (``[H, W, C]`` or ``[N, H, W, C]``) to float32 channels-first (``[C, H, W]`` or
    ``[N, C, H, W]``) in [-1, 1]."""
    # numpy arithmetic: single-threaded, so data loading never wakes torch's thread pool for a tiny tensor
    array = np.asarray(pixels, dtype=np.float32) / np.float32(127.5) - np.float32(1)
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(array, -1, -3)))


def from_pil(image: Image.Image) -> Tensor:
    """An ``L`` or ``RGB`` PIL image to a float32 ``[C, H, W]`` tensor in [-1, 1] (other modes: convert first)."""
    if image.mode not in ("L", "RGB"):
        raise ValueError(f"expected an L or RGB image, got mode {image.mode!r}; convert it first")
    pixels = np.asarray(image, dtype=np.uint8)
    return from_uint8(pixels[..., None] if image.mode == "L" else pixels)
