"""The reverse process made visible: a sampler callback that records, at every step, the noisy state ``x`` and
the model's current clean estimate, and writers for an animated GIF and a filmstrip PNG of them.

It runs no sampling loop of its own: pass a :class:`TrajectoryRecorder` as the ``callback`` of any pipeline
or sampler, then hand its ``frames`` to :func:`write_gif` and :func:`write_filmstrip`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from unstatic.grids import image_grid
from unstatic.sampling.progress import Callback, StepInfo

MAX_FILMSTRIP_COLUMNS = 12
FRAME_MS = 120  # each step of the GIF
HOLD_MS = 1500  # the finished image, before the GIF loops


@dataclass(frozen=True)
class TrajectoryFrame:
    """One image after sampler step ``step`` (0-based) of ``steps``. ``noisy`` is the state at ``sigma_next``
    rescaled to unit variance (see :meth:`TrajectoryRecorder.__call__`); ``clean`` is the clean estimate the
    step used, made at ``sigma``. Both ``[C, H, W]``, float32, on the CPU."""

    step: int
    steps: int
    sigma: float
    sigma_next: float
    noisy: Tensor
    clean: Tensor


class TrajectoryRecorder:
    """A sampler callback keeping image ``index`` of the batch at every step; ``then`` (e.g. a progress bar)
    is called after it with the same :class:`StepInfo`, and its answer (stop or not) is passed on.

    ``to_image`` maps a ``[1, C, H, W]`` state to ``[1, 1 or 3, H', W']`` pixels in [-1, 1] (a VAE decode for
    latent models); pixel models need none."""

    def __init__(self, index: int = 0, then: Callback | None = None,
                 to_image: Callable[[Tensor], Tensor] | None = None) -> None:
        self.index, self.then, self.to_image = index, then, to_image
        self.frames: list[TrajectoryFrame] = []

    def __call__(self, info: StepInfo) -> bool | None:
        # In the sigma frame x = x0 + sigma * eps has variance ~ 1 + sigma^2, so early states would clip to
        # pure black and white. Dividing by sqrt(1 + sigma^2) gives the variance-preserving state
        # sqrt(alpha_bar) x0 + sqrt(1 - alpha_bar) eps that DDPM's forward process draws (Ho et al. 2020,
        # Eq. 4; Karras et al. 2022, Table 1, VP scaling s = 1 / sqrt(1 + sigma^2)): static fading into the image.
        rows = slice(self.index, self.index + 1)
        noisy = info.x[rows] / math.sqrt(1.0 + info.sigma_next**2)
        clean = info.denoised[rows]
        self.frames.append(TrajectoryFrame(info.step, info.steps, info.sigma, info.sigma_next,
                                           self._pixels(noisy), self._pixels(clean)))
        return self.then(info) if self.then is not None else None

    @torch.no_grad()
    def _pixels(self, state: Tensor) -> Tensor:
        image = self.to_image(state) if self.to_image is not None else state
        return image[0].detach().float().cpu().clamp(-1, 1)


def write_gif(frames: Sequence[TrajectoryFrame], path: str | Path, *, frame_ms: int = FRAME_MS,
              hold_ms: int = HOLD_MS, min_size: int = 128) -> Path:
    """An animated GIF, one frame per step: the noisy state beside the clean estimate, each tile enlarged
    (nearest neighbour) to at least ``min_size`` pixels so 32x32 images are visible. Loops forever, holding
    the last frame for ``hold_ms``."""
    _check(frames)
    scale = _scale(frames[0].noisy, min_size)
    images = [image_grid([f.noisy, f.clean], nrow=2, scale=scale, captions=_captions(f)) for f in frames]
    images = _same_size(images)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    durations = [frame_ms] * (len(images) - 1) + [hold_ms]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)
    return path


def write_filmstrip(frames: Sequence[TrajectoryFrame], path: str | Path, *,
                    max_columns: int = MAX_FILMSTRIP_COLUMNS, min_size: int = 96) -> Path:
    """A PNG of two rows, the noisy states above the clean estimates, one column per step; with more than
    ``max_columns`` steps an evenly spaced subset that always keeps the first and the last step."""
    _check(frames)
    chosen = [frames[i] for i in filmstrip_columns(len(frames), max_columns)]
    tiles = [f.noisy for f in chosen] + [f.clean for f in chosen]
    captions = [f"x, sigma {f.sigma_next:.2g}" for f in chosen] + [f"x0 estimate, {f.step + 1}" for f in chosen]
    grid = image_grid(tiles, nrow=len(chosen), captions=captions, scale=_scale(frames[0].noisy, min_size))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return path


def filmstrip_path(gif_path: str | Path) -> Path:
    """Where the filmstrip goes beside a GIF: ``out.gif`` -> ``out-filmstrip.png``."""
    gif_path = Path(gif_path)
    return gif_path.with_name(f"{gif_path.stem}-filmstrip.png")


def filmstrip_columns(count: int, max_columns: int = MAX_FILMSTRIP_COLUMNS) -> list[int]:
    """Indices of at most ``max_columns`` evenly spaced steps out of ``count``, first and last included."""
    if max_columns < 1:
        raise ValueError(f"max_columns must be at least 1, got {max_columns}")
    if count <= max_columns:
        return list(range(count))
    if max_columns == 1:
        return [count - 1]
    return sorted({round(i * (count - 1) / (max_columns - 1)) for i in range(max_columns)})


def _captions(frame: TrajectoryFrame) -> list[str]:
    # ASCII only: Pillow's fallback bitmap font has no Greek letters.
    return [f"x, sigma {frame.sigma_next:.3g}", f"x0 estimate, {frame.step + 1}/{frame.steps}"]


def _scale(image: Tensor, min_size: int) -> int:
    return max(1, math.ceil(min_size / max(image.shape[-2:])))


def _same_size(images: list[Image.Image]) -> list[Image.Image]:
    """Every frame on a canvas of the largest frame's size (a caption that wraps differently may change one)."""
    width, height = max(i.width for i in images), max(i.height for i in images)
    if all(i.size == (width, height) for i in images):
        return images
    canvases = []
    for image in images:
        canvas = Image.new("RGB", (width, height), "white")
        canvas.paste(image, (0, 0))
        canvases.append(canvas)
    return canvases


def _check(frames: Sequence[TrajectoryFrame]) -> None:
    if not frames:
        raise ValueError("no frames recorded: pass the TrajectoryRecorder as the sampler's callback first")
