"""The built-in demo: sample pictures from an exact analytic model, no weights needed.

The "model" is a Gaussian mixture whose components are small procedurally drawn pictures (a disc, a
square, a ring, ... in several colours on gradient skies), so its denoiser is exact
(:class:`~unstatic.denoisers.GaussianMixture`). The demo runs any registered sampler on it from pure
noise and lays out the reverse process: the noisy state at a few steps, then the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from PIL import Image
from torch import Tensor

from unstatic.core import EDMSchedule, get_sigmas
from unstatic.denoisers import GaussianMixture
from unstatic.imaging import to_pil
from unstatic.sampling import SAMPLERS, StepInfo, generators_from_seeds, randn_per_sample, resolve_sampler

COLOURS = {"red": (0.9, 0.15, 0.1), "gold": (0.95, 0.75, 0.1), "teal": (0.1, 0.6, 0.6), "violet": (0.55, 0.25, 0.8)}
SHAPES = ("disc", "square", "ring", "diamond", "cross", "bar")


def _shape_mask(shape: str, size: int) -> Tensor:
    """Anti-aliased coverage in [0, 1] of a centred shape on a size x size grid."""
    c = (torch.arange(size, dtype=torch.float64) + 0.5) / size * 2 - 1
    y, x = torch.meshgrid(c, c, indexing="ij")
    r = torch.sqrt(x**2 + y**2)
    edge = 2.0 / size  # one pixel of soft edge
    distance = {
        "disc": r - 0.55,
        "square": torch.maximum(x.abs(), y.abs()) - 0.45,
        "ring": (r - 0.5).abs() - 0.14,
        "diamond": (x.abs() + y.abs()) - 0.65,
        "cross": torch.minimum(torch.maximum(x.abs() - 0.15, y.abs() - 0.6), torch.maximum(x.abs() - 0.6, y.abs() - 0.15)),
        "bar": torch.maximum(x.abs() - 0.65, y.abs() - 0.2),
    }[shape]
    return (0.5 - distance / edge).clamp(0, 1)


def demo_model(size: int = 32, pixel_std: float = 0.04) -> GaussianMixture:
    """The demo's exact model: one component per (shape, colour) on a sky gradient, images in [-1, 1]."""
    means = []
    ramp = torch.linspace(0, 1, size, dtype=torch.float64)[:, None].expand(size, size)
    for i, shape in enumerate(SHAPES):
        mask = _shape_mask(shape, size)
        for j, rgb in enumerate(COLOURS.values()):
            hue = (i * len(COLOURS) + j) / (len(SHAPES) * len(COLOURS))
            sky = torch.stack([0.15 + 0.3 * ramp * hue, 0.2 + 0.3 * ramp, 0.35 + 0.4 * (1 - ramp)])
            colour = torch.tensor(rgb, dtype=torch.float64)[:, None, None]
            means.append((sky * (1 - mask) + colour * mask) * 2 - 1)
    return GaussianMixture(torch.stack(means), torch.full((len(means),), pixel_std, dtype=torch.float64))


@dataclass(frozen=True)
class DemoResult:
    image: Image.Image  # the grid
    samples: Tensor  # [n, 3, H, W] final samples in [-1, 1]
    sampler: str
    scheduler: str
    steps: int
    seeds: tuple[int, ...]


def run_demo(
    sampler: str = "dpmpp_2m",
    scheduler: str | None = None,
    steps: int = 20,
    seed: int = 0,
    images: int = 6,
    size: int = 32,
    columns: int = 5,
    scale: int = 3,
    progress=None,
) -> DemoResult:
    """Sample ``images`` pictures and return a grid: each row goes from static (left) to the result (right).

    ``progress(step, steps)`` is called after every step if given.
    """
    if images < 1:
        raise ValueError(f"images must be at least 1, got {images}")
    name, implied = resolve_sampler(sampler)
    scheduler = scheduler or implied or "karras"
    model = demo_model(size)
    sigmas = get_sigmas(scheduler, steps, EDMSchedule(0.002, 80.0))
    seeds = tuple(range(seed, seed + images))
    generators = generators_from_seeds(seeds)
    x = randn_per_sample((images, 3, size, size), generators).double() * sigmas[0]
    # Snapshots where the picture emerges: noise levels log-spaced from 2 down to 0.2 (the data's scale is ~1).
    targets = [2.0 * 0.1 ** (k / max(columns - 3, 1)) for k in range(columns - 2)]
    snapshots: list[Tensor] = [x / math.sqrt(1 + float(sigmas[0]) ** 2)]

    def callback(info: StepInfo) -> None:
        if targets and 0 < info.sigma_next <= targets[0]:
            while targets and info.sigma_next <= targets[0]:
                targets.pop(0)
            snapshots.append(info.x / math.sqrt(1 + info.sigma_next**2))  # VP-scaled so noise stays visible
        if progress is not None:
            progress(info.step + 1, info.steps)

    samples = SAMPLERS[name].fn(model, x, sigmas, callback=callback, noise=generators)
    columns_out = snapshots + [samples]
    tile = size * scale
    grid = Image.new("RGB", (tile * len(columns_out), tile * images), "white")
    for row in range(images):
        for col, batch in enumerate(columns_out):
            grid.paste(to_pil(batch[row]).resize((tile, tile), Image.NEAREST), (col * tile, row * tile))
    return DemoResult(grid, samples.float(), name, scheduler, steps, seeds)
