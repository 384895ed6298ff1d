"""The ``shapes`` world: the project's built-in procedural text-to-image data.

Each index deterministically becomes a scene (a solid or gradient background and 1-3 coloured shapes in a
3x3 grid), an anti-aliased image of it at any resolution, and a caption in varied phrasing. A configurable set
of colour-shape combinations is held out of training to measure compositional generalisation.
"""

from unstatic.data.shapes.captions import Caption, describe
from unstatic.data.shapes.dataset import ShapesDataset
from unstatic.data.shapes.render import coverage, render
from unstatic.data.shapes.scene import Background, Scene, ShapeObject
from unstatic.data.shapes.vocabulary import (
    BACKGROUNDS,
    COLOURS,
    DEFAULT_HOLDOUT,
    POSITIONS,
    RELATIONS,
    SHAPES,
    SIZES,
)

__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "DEFAULT_HOLDOUT",
    "POSITIONS",
    "RELATIONS",
    "SHAPES",
    "SIZES",
    "Background",
    "Caption",
    "Scene",
    "ShapeObject",
    "ShapesDataset",
    "coverage",
    "describe",
    "render",
]
