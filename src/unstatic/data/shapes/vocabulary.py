"""The closed vocabulary of the shapes world: shapes, colours, sizes, grid positions, relations, backgrounds.

Every name here is a label an evaluator must be able to recover from pixels alone, even at 32x32, so the
palette is chosen for distance rather than variety: neighbouring object colours are at least ~95 apart in
8-bit RGB (Euclidean), and backgrounds come from a separate muted palette. An object colour is only ever
drawn on a background it stands out from (`colours_contrasting`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache

RGB = tuple[int, int, int]

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "heart", "diamond", "cross", "ring")

COLOUR_RGB: Mapping[str, RGB] = {
    "red": (220, 30, 40),
    "orange": (245, 130, 20),
    "yellow": (245, 225, 40),
    "green": (40, 170, 60),
    "cyan": (30, 200, 220),
    "blue": (40, 80, 220),
    "purple": (140, 40, 180),
    "pink": (250, 120, 200),
    "black": (20, 20, 20),
    "white": (245, 245, 245),
}
COLOURS: tuple[str, ...] = tuple(COLOUR_RGB)

# Half-extent of an object's bounding box as a fraction of the image side. A grid cell is 1/3 wide, so even
# a large object (plus its size jitter) fits inside its own cell and objects never overlap.
SIZE_RADIUS: Mapping[str, float] = {"small": 0.08, "medium": 0.115, "large": 0.155}
SIZES: tuple[str, ...] = tuple(SIZE_RADIUS)
SIZE_JITTER = 0.03  # radius varies by +-3 %, far less than the 35-45 % steps between sizes

# Row-major names of the 3x3 grid cells; POSITIONS[3 * row + col].
POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "centre", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip
GRID = 3

RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")

# Muted, low-saturation backgrounds; none of these names is (or contains) an object colour word.
BACKGROUND_RGB: Mapping[str, RGB] = {
    "grey": (128, 128, 128),
    "silver": (185, 185, 190),
    "beige": (215, 200, 170),
    "sand": (195, 175, 135),
    "slate": (95, 105, 120),
    "sage": (150, 170, 140),
    "khaki": (170, 165, 120),
    "taupe": (140, 125, 115),
    "cream": (240, 235, 215),
    "charcoal": (60, 60, 65),
}
BACKGROUNDS: tuple[str, ...] = tuple(BACKGROUND_RGB)
# Gradient directions, each named by where its first colour sits: "horizontal" runs left to right,
# "vertical" top to bottom, "diagonal" top left to bottom right, "antidiagonal" top right to bottom left.
GRADIENT_DIRECTIONS: tuple[str, ...] = ("horizontal", "vertical", "diagonal", "antidiagonal")

# Smallest RGB distance between an object colour and any colour its background passes through.
MIN_CONTRAST = 100.0

DEFAULT_HOLDOUT: tuple[str, ...] = ("purple star", "orange heart", "green triangle")


def position_name(row: int, col: int) -> str:
    """The name of grid cell (row, col), row 0 at the top."""
    return POSITIONS[GRID * row + col]


def parse_combination(phrase: str) -> tuple[str, str]:
    """A held-out "colour shape" phrase such as ``"purple star"`` to ``(colour, shape)``.

    Raises:
        ValueError: naming ``holdout`` and the phrase, if it is not one known colour and one known shape.
    """
    words = phrase.strip().lower().split()
    if len(words) != 2 or words[0] not in COLOURS or words[1] not in SHAPES:
        raise ValueError(
            f"holdout: {phrase!r} is not a 'colour shape' phrase; colours are {', '.join(COLOURS)} "
            f"and shapes are {', '.join(SHAPES)}"
        )
    return words[0], words[1]


def _distance_to_segment(point: RGB, start: RGB, end: RGB) -> float:
    """Euclidean distance from ``point`` to the RGB segment ``start``-``end`` (a gradient's colours)."""
    direction = [e - s for s, e in zip(start, end)]
    length2 = sum(d * d for d in direction)
    t = 0.0 if length2 == 0 else sum((p - s) * d for p, s, d in zip(point, start, direction)) / length2
    t = min(max(t, 0.0), 1.0)
    return math.dist(point, [s + t * d for s, d in zip(start, direction)])


@cache
def colours_contrasting(background: tuple[str, ...]) -> tuple[str, ...]:
    """Object colours at least ``MIN_CONTRAST`` from every colour a background (1 or 2 names) shows.

    A two-colour gradient blends linearly, so every colour on the segment between its ends is checked.
    """
    start = BACKGROUND_RGB[background[0]]
    end = BACKGROUND_RGB[background[-1]]
    return tuple(c for c in COLOURS if _distance_to_segment(COLOUR_RGB[c], start, end) >= MIN_CONTRAST)
