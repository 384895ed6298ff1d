"""``ShapesReader``: a small CNN that reads a shapes-world image back into its labels, cell by cell.

It is the project's measuring instrument for generated images (an offline stand-in for Inception and CLIP):
for each of the 3x3 grid cells it predicts {empty, 8 shapes}, 10 colours and 3 sizes, and its penultimate
vector, :meth:`ShapesReader.features`, is the feature space of the Fréchet distance.

Layout: the image is first folded losslessly to a 16x16 map (space-to-depth, ``PixelUnshuffle``: a 32x32
RGB image becomes 12 channels at 16x16, a 64x64 one 48 channels), so a full-resolution convolution is never
paid for and 32 and 64 cost the same; then a conv stem and stride-2 stages down to a 4x4 map, flattened and
projected to ``feature_dim``. Flatten-then-project (rather than global average pooling) keeps *where* things are in the
feature vector, which a reader of a 3x3 grid needs and which lets the Fréchet distance see layout errors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unstatic.data.shapes.render import render
from unstatic.data.shapes.scene import Scene
from unstatic.data.shapes.vocabulary import COLOURS, GRID, SHAPES, SIZES
from unstatic.imaging import from_uint8
from unstatic.networks.weights import load_model

WEIGHTS_DIR = Path(__file__).parent / "weights"

CELLS = GRID * GRID
SHAPE_CLASSES = ("empty", *SHAPES)  # index 0 means "no object in this cell"
STEM_SIDE = 16  # side of the map after space-to-depth, whatever the input resolution
FINAL_SIDE = 4  # side of the last feature map


@dataclass(frozen=True)
class ShapesReaderConfig:
    """Architecture of a :class:`ShapesReader`.

    Args:
        resolution: input image side in pixels; a power of two, at least 16 (32 and 64 are trained).
        channels: widths of the stem (at 16x16) and of the two stride-2 stages (8x8, 4x4).
        feature_dim: length of the feature vector used for the Fréchet distance.
        groups: GroupNorm groups (must divide every width).
    """

    resolution: int = 32
    channels: tuple[int, ...] = (32, 64, 128)
    feature_dim: int = 128
    groups: int = 8

    TYPE = "shapes_reader"
    VERSION = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(self.channels))
        r = self.resolution
        if isinstance(r, bool) or not isinstance(r, int) or r < 16 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two >= 16, got {r!r}")
        stages = int(math.log2(STEM_SIDE // FINAL_SIDE))
        if len(self.channels) != stages + 1:
            raise ValueError(f"channels must list {stages + 1} widths (stem and {stages} stages), got {self.channels}")
        for c in self.channels:
            if c < 1 or c % self.groups:
                raise ValueError(f"groups ({self.groups}) must divide every entry of channels, got {c}")
        if self.feature_dim < 1:
            raise ValueError(f"feature_dim must be positive, got {self.feature_dim}")


def _conv_block(c_in: int, c_out: int, stride: int, groups: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(groups, c_out), nn.SiLU())


class ShapesReader(nn.Module):
    """Reads images ``[N, 3, R, R]`` in [-1, 1] into per-cell logits; see :meth:`forward`."""

    config_class = ShapesReaderConfig

    def __init__(self, config: ShapesReaderConfig) -> None:
        super().__init__()
        self.config = config
        c, g = config.channels, config.groups
        fold = config.resolution // STEM_SIDE
        layers = [nn.PixelUnshuffle(fold), _conv_block(3 * fold * fold, c[0], 1, g), _conv_block(c[0], c[0], 1, g)]
        for c_in, c_out in zip(c[:-1], c[1:]):
            # a stride-2 conv halves the map, then a stride-1 conv mixes at the new scale
            layers += [_conv_block(c_in, c_out, 2, g), _conv_block(c_out, c_out, 1, g)]
        self.body = nn.Sequential(*layers)
        self.project = nn.Sequential(nn.Flatten(), nn.Linear(c[-1] * FINAL_SIDE**2, config.feature_dim), nn.SiLU())
        self.shape_head = nn.Linear(config.feature_dim, CELLS * len(SHAPE_CLASSES))
        self.colour_head = nn.Linear(config.feature_dim, CELLS * len(COLOURS))
        self.size_head = nn.Linear(config.feature_dim, CELLS * len(SIZES))

    def _check(self, images: Tensor) -> None:
        r = self.config.resolution
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[2:] != (r, r):
            raise ValueError(f"images must be [N, 3, {r}, {r}] in [-1, 1], got shape {tuple(images.shape)}")

    def features(self, images: Tensor) -> Tensor:
        """The penultimate vector ``[N, feature_dim]``: the feature space of the Fréchet distance."""
        self._check(images)
        return self.project(self.body(images))

    def heads(self, features: Tensor) -> dict[str, Tensor]:
        """Per-cell logits from features: ``shape`` ``[N, 9, 9]`` (class 0 = empty), ``colour`` ``[N, 9, 10]``,
        ``size`` ``[N, 9, 3]``; cells in row-major order, ``cell = 3 * row + col``."""
        n = features.shape[0]
        return {
            "shape": self.shape_head(features).view(n, CELLS, len(SHAPE_CLASSES)),
            "colour": self.colour_head(features).view(n, CELLS, len(COLOURS)),
            "size": self.size_head(features).view(n, CELLS, len(SIZES)),
        }

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """Per-cell logits for ``images`` ``[N, 3, R, R]`` in [-1, 1]; see :meth:`heads`."""
        return self.heads(self.features(images))


IGNORE = -100  # cross_entropy's ignore_index: colour and size of an empty cell are not labels


def scene_targets(scenes: Sequence[Scene]) -> dict[str, Tensor]:
    """The reader's labels for ``scenes``: ``shape``, ``colour``, ``size``, each a long tensor ``[N, 9]``.

    ``shape`` is 0 for an empty cell and ``1 + SHAPES.index`` otherwise; ``colour`` and ``size`` of an empty
    cell are ``IGNORE``."""
    shape = torch.zeros(len(scenes), CELLS, dtype=torch.long)
    colour = torch.full((len(scenes), CELLS), IGNORE, dtype=torch.long)
    size = torch.full((len(scenes), CELLS), IGNORE, dtype=torch.long)
    for n, scene in enumerate(scenes):
        for obj in scene.objects:
            cell = GRID * obj.cell[0] + obj.cell[1]
            shape[n, cell] = 1 + SHAPES.index(obj.shape)
            colour[n, cell] = COLOURS.index(obj.colour)
            size[n, cell] = SIZES.index(obj.size)
    return {"shape": shape, "colour": colour, "size": size}


def render_scenes(scenes: Sequence[Scene], resolution: int) -> Tensor:
    """Renders of ``scenes`` as float32 ``[N, 3, R, R]`` in [-1, 1] (``ShapesDataset``'s conversion)."""
    if not scenes:
        raise ValueError("scenes must not be empty")
    images = np.stack([render(scene, resolution) for scene in scenes])  # [N, R, R, 3] uint8
    return from_uint8(images)


def load_reader(folder: str | Path) -> ShapesReader:
    """A reader saved with ``save_model`` (e.g. ``weights/shapes_reader_32``), in eval mode, on the CPU."""
    return load_model(folder, model_class=ShapesReader)


def default_reader_folder(resolution: int) -> Path:
    """The committed weights for ``resolution`` (``FileNotFoundError`` if none were trained for it)."""
    folder = WEIGHTS_DIR / f"shapes_reader_{resolution}"
    if not (folder / "model.safetensors").exists():
        trained = sorted(p.name for p in WEIGHTS_DIR.glob("shapes_reader_*"))
        raise FileNotFoundError(f"no committed shapes reader for resolution {resolution} in {WEIGHTS_DIR}; have {trained}")
    return folder


def match_resolution(images: Tensor, resolution: int) -> Tensor:
    """``images`` ``[N, 3, S, S]`` brought to the reader's ``resolution`` by area averaging (box filter) when
    ``S`` is a multiple of it: a 64x64 generation is read by the 32x32 reader this way. Both are estimates of
    pixel-area coverage, so an area-averaged 64x64 render is close to the 32x32 render of the same scene (a
    fifth of an 8-bit level apart on average, up to ~50 levels on a few outline pixels, where the renderer's
    one-pixel ramp is not an exact area); other sizes raise ``ValueError``."""
    side = images.shape[-1]
    if images.ndim != 4 or images.shape[-2] != side or side % resolution:
        raise ValueError(f"images must be [N, 3, S, S] with S a multiple of {resolution}, got shape {tuple(images.shape)}")
    return images if side == resolution else F.avg_pool2d(images, side // resolution)
