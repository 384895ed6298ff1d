"""Samplers side by side: one prompt and one seed, every sampler at every step count, as a captioned grid
(rows = samplers, columns = step counts). Same seed means the same starting noise, so differences in the
grid are the samplers' and the step counts' alone (stochastic samplers also draw fresh noise per step)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from unstatic.grids import image_grid
from unstatic.imaging import from_pil
from unstatic.pipelines.txt2img import MAX_SEED, GeneratedImage, TextToImagePipeline
from unstatic.sampling.registry import resolve_sampler


@dataclass(frozen=True)
class SamplerComparison:
    """The grid and the images in it, row by row (``results[i][j]``: sampler i at step count j)."""

    grid: Image.Image
    samplers: tuple[str, ...]
    step_counts: tuple[int, ...]
    seed: int
    results: tuple[tuple[GeneratedImage, ...], ...]


def compare_samplers(
    pipe: TextToImagePipeline,
    prompt: str,
    samplers: Sequence[str],
    step_counts: Sequence[int],
    *,
    seed: int | None = None,
    min_size: int = 96,
    **options: Any,
) -> SamplerComparison:
    """Generate ``prompt`` with every sampler at every step count from the same ``seed`` (random when None).
    Captions read "<sampler as given> <steps>"; tiles are enlarged (nearest) to at least ``min_size`` pixels.
    ``options`` go to the pipeline (``negative_prompt``, ``guidance_scale``, ``scheduler``, ``width``,
    ``callback``, ...). Names are checked before anything is sampled."""
    samplers, step_counts = tuple(samplers), tuple(step_counts)
    if not samplers or not step_counts:
        raise ValueError("compare needs at least one sampler and one step count")
    for name in samplers:
        resolve_sampler(name)  # fail on a typo before minutes of sampling, not after
    for steps in step_counts:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"step counts must be positive integers, got {steps!r}")
    seed = random.randint(0, MAX_SEED) if seed is None else seed
    results = tuple(
        tuple(pipe(prompt, sampler=name, num_inference_steps=steps, seed=seed, num_images=1, **options)[0]
              for steps in step_counts)
        for name in samplers
    )
    tiles = [from_pil(result.image) for row in results for result in row]
    scale = max(1, math.ceil(min_size / max(tiles[0].shape[-2:])))
    captions = [f"{name} {steps}" for name in samplers for steps in step_counts]
    grid = image_grid(tiles, nrow=len(step_counts), captions=captions, scale=scale)
    return SamplerComparison(grid, samplers, step_counts, seed, results)
