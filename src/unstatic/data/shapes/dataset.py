"""``ShapesDataset``: the shapes world as a map-style torch dataset of (image, caption, label) items."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset

from unstatic.data.shapes.captions import Caption, check_style, describe
from unstatic.data.shapes.random_scene import random_scene
from unstatic.data.shapes.render import check_resolution, render
from unstatic.data.shapes.scene import Scene
from unstatic.data.shapes.vocabulary import COLOURS, DEFAULT_HOLDOUT, SHAPES, parse_combination
from unstatic.imaging import from_uint8

SPLITS = ("train", "holdout")
LABELS = ("shape", "colour", "shape_colour")
MAX_OBJECTS = 3


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {bounds}, got {value!r}")
    return value


class ShapesDataset(Dataset):
    """Procedural text-to-image data: item ``i`` is a deterministic function of ``(seed, i)`` and the arguments.

    Args:
        resolution: image side in pixels (>= 16); scenes are resolution-free, so the same index shows the same
            scene at every resolution.
        length: number of items.
        seed: selects the world; different seeds give different scenes.
        min_objects, max_objects: objects per scene, drawn uniformly in this range (1-3).
        holdout: ``"colour shape"`` phrases (e.g. ``"purple star"``) kept out of the "train" split.
        split: "train" (no scene contains a held-out combination) or "holdout" (every scene contains one).
        label: class label of the first object: "shape", "colour", "shape_colour" (``colour_index +
            len(COLOURS) * shape_index``, named "colour shape"), or None for no "label" key.
        captions: "train" templates, or "paraphrase" ones that "train" never uses. The caption style does not
            change the scenes: both styles describe the same images.

    Items are ``{"image": float32 [3, R, R] in [-1, 1], "caption": str, "label": int}``.
    """

    def __init__(
        self,
        resolution: int = 32,
        length: int = 100_000,
        seed: int = 0,
        min_objects: int = 1,
        max_objects: int = 3,
        holdout: Sequence[str] = DEFAULT_HOLDOUT,
        split: str = "train",
        label: str | None = "shape",
        captions: str = "train",
    ) -> None:
        check_resolution(resolution)
        self.resolution = resolution
        self.length = _check_int("length", length, 1)
        self.seed = _check_int("seed", seed, 0)
        self.min_objects = _check_int("min_objects", min_objects, 1, MAX_OBJECTS)
        self.max_objects = _check_int("max_objects", max_objects, 1, MAX_OBJECTS)
        if min_objects > max_objects:
            raise ValueError(f"min_objects ({min_objects}) must not exceed max_objects ({max_objects})")
        if isinstance(holdout, str):
            raise ValueError(f"holdout must be a sequence of 'colour shape' phrases, not the string {holdout!r}")
        self.holdout = frozenset(parse_combination(phrase) for phrase in holdout)
        if len(SHAPES) * len(COLOURS) - len(self.holdout) < MAX_OBJECTS:
            raise ValueError("holdout leaves too few colour-shape combinations to draw a training scene")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}, got {split!r}")
        if split == "holdout" and not self.holdout:
            raise ValueError("split='holdout' needs a non-empty holdout")
        self.split = split
        if label is not None and label not in LABELS:
            raise ValueError(f"label must be one of {', '.join(map(repr, LABELS))} or None, got {label!r}")
        self.label = label
        check_style(captions)
        self.captions = captions

    def __len__(self) -> int:
        return self.length

    def _rng(self, index: int, stream: str) -> random.Random:
        """An RNG owned by one item and one purpose; string seeds are hashed with SHA-512, so this is stable
        across processes and Python versions, and independent of the global RNG and of call order."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index must be an integer, got {type(index).__name__}")
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} is out of range for a dataset of length {self.length}")
        return random.Random(f"unstatic.shapes/{stream}/{self.seed}/{int(index) % self.length}")

    def scene(self, index: int) -> Scene:
        """The structured labels of item ``index`` (``Scene.to_dict()`` is JSON-able)."""
        return random_scene(
            self._rng(index, "scene"),
            min_objects=self.min_objects,
            max_objects=self.max_objects,
            holdout=self.holdout,
            include_holdout=self.split == "holdout",
        )

    def describe(self, index: int, scene: Scene | None = None) -> Caption:
        """The caption of item ``index`` with its template and the relations it states."""
        return describe(scene or self.scene(index), self._rng(index, "caption"), self.captions)

    def __getitem__(self, index: int) -> dict:
        scene = self.scene(index)
        image = render(scene, self.resolution)
        item = {
            "image": from_uint8(image),  # from_pil's conversion without the PIL round trip
            "caption": self.describe(index, scene).text,
        }
        if self.label is not None:
            first = scene.objects[0]
            shape, colour = SHAPES.index(first.shape), COLOURS.index(first.colour)
            item["label"] = {"shape": shape, "colour": colour, "shape_colour": colour + len(COLOURS) * shape}[
                self.label
            ]
        return item

    @property
    def num_classes(self) -> int:
        """Number of classes of the label mode (0 when ``label`` is None)."""
        return len(self.class_names())

    def class_names(self) -> list[str]:
        """Class names in label order (empty when ``label`` is None)."""
        if self.label == "shape":
            return list(SHAPES)
        if self.label == "colour":
            return list(COLOURS)
        if self.label == "shape_colour":
            return [f"{colour} {shape}" for shape in SHAPES for colour in COLOURS]
        return []
