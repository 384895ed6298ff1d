"""Random masks for training inpainting models (extra input channels: mask and masked image; see
:class:`~unstatic.sampling.inpaint.InpaintingConditioned` for the layout sampling uses).

Following the recipe of Stable Diffusion's inpainting model (Rombach et al. 2022, Sec. 4.5 and App. E: synthetic
masks, with a share of fully masked images so the model also generates from nothing), each image gets either a
full mask (probability ``full``) or the union of one to ``max_rectangles`` random rectangles whose sides are
between ``min_fraction`` and ``max_fraction`` of the image side. 1 = repaint.
"""

from __future__ import annotations

import torch
from torch import Tensor


def random_masks(
    count: int, height: int, width: int, generator: torch.Generator, *,
    full: float = 0.25, max_rectangles: int = 2, min_fraction: float = 0.125, max_fraction: float = 0.75,
) -> Tensor:
    """``[count, 1, height, width]`` hard masks (0 or 1) drawn from ``generator`` only, so a training step's
    masks are a function of its seed (resume stays exact)."""
    if not 0 <= full <= 1 or max_rectangles < 1 or not 0 < min_fraction <= max_fraction <= 1:
        raise ValueError(f"need 0 <= full <= 1, max_rectangles >= 1, 0 < min_fraction <= max_fraction <= 1; got "
                         f"{full}, {max_rectangles}, {min_fraction}, {max_fraction}")
    # A fixed number of draws per image (whatever is used), so image i's mask does not depend on the others.
    u = torch.rand(count, 1 + 1 + 4 * max_rectangles, generator=generator, dtype=torch.float64)
    masks = torch.zeros(count, 1, height, width)
    for i in range(count):
        if u[i, 0] < full:
            masks[i] = 1.0
            continue
        rectangles = 1 + int(u[i, 1] * max_rectangles) if max_rectangles > 1 else 1
        for r in range(min(rectangles, max_rectangles)):
            side_h, side_w, top, left = u[i, 2 + 4 * r : 6 + 4 * r].tolist()
            h = max(1, round(height * (min_fraction + side_h * (max_fraction - min_fraction))))
            w = max(1, round(width * (min_fraction + side_w * (max_fraction - min_fraction))))
            y, x = int(top * (height - h + 1)), int(left * (width - w + 1))
            masks[i, :, y : y + h, x : x + w] = 1.0
    return masks
