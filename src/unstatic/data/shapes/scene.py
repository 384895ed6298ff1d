"""Structured labels of one shapes-world image: its background, its objects and the relations between them.

Geometry is resolution-free: centres and radii are fractions of the image side (x to the right, y down), so
one scene renders identically at any resolution, and the exact numbers used for rendering are the labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from unstatic.data.shapes.vocabulary import (
    BACKGROUNDS,
    COLOURS,
    GRADIENT_DIRECTIONS,
    GRID,
    SHAPES,
    SIZES,
    position_name,
)


@dataclass(frozen=True)
class Background:
    """A solid colour (one name, ``direction=None``) or a two-colour linear gradient with a direction."""

    colours: tuple[str, ...]
    direction: str | None = None

    def __post_init__(self) -> None:
        if len(self.colours) not in (1, 2):
            raise ValueError(f"a background has 1 or 2 colours, got {len(self.colours)}")
        for name in self.colours:
            if name not in BACKGROUNDS:
                raise ValueError(f"background colour {name!r} is not one of {', '.join(BACKGROUNDS)}")
        if len(self.colours) == 1 and self.direction is not None:
            raise ValueError("a solid background (one colour) takes no gradient direction")
        if len(self.colours) == 2 and self.direction not in GRADIENT_DIRECTIONS:
            raise ValueError(f"gradient direction {self.direction!r} is not one of {', '.join(GRADIENT_DIRECTIONS)}")

    @property
    def is_gradient(self) -> bool:
        return len(self.colours) == 2


@dataclass(frozen=True)
class ShapeObject:
    """One object: its categorical labels plus the exact geometry it is rendered with.

    Args:
        shape, colour, size: names from ``SHAPES``, ``COLOURS``, ``SIZES``.
        cell: ``(row, col)`` of its 3x3 grid cell, row 0 at the top.
        centre: ``(x, y)`` of its bounding-box centre, fractions of the image side, y down.
        radius: half the side of its (square) bounding box, a fraction of the image side.
    """

    shape: str
    colour: str
    size: str
    cell: tuple[int, int]
    centre: tuple[float, float]
    radius: float

    def __post_init__(self) -> None:
        for field, value, allowed in (("shape", self.shape, SHAPES), ("colour", self.colour, COLOURS),
                                      ("size", self.size, SIZES)):  # fmt: skip
            if value not in allowed:
                raise ValueError(f"{field} {value!r} is not one of {', '.join(allowed)}")
        if not all(0 <= i < GRID for i in self.cell):
            raise ValueError(f"cell {self.cell} is outside the {GRID}x{GRID} grid")

    @property
    def position(self) -> str:
        """The grid cell's name, e.g. ``"top left"``."""
        return position_name(*self.cell)


def relation(a: ShapeObject, b: ShapeObject) -> list[str]:
    """Every relation ``a <relation> b`` that holds, judged by grid cells (objects never share one)."""
    return cell_relation(a.cell, b.cell)


def cell_relation(a: tuple[int, int], b: tuple[int, int]) -> list[str]:
    """Every relation "an object in cell ``a`` <relation> one in cell ``b``", cells as ``(row, col)``."""
    (row_a, col_a), (row_b, col_b) = a, b
    found = []
    if col_a != col_b:
        found.append("left of" if col_a < col_b else "right of")
    if row_a != row_b:
        found.append("above" if row_a < row_b else "below")
    return found


@dataclass(frozen=True)
class Scene:
    """A background and 1-3 objects in distinct grid cells."""

    background: Background
    objects: tuple[ShapeObject, ...]

    def __post_init__(self) -> None:
        cells = [o.cell for o in self.objects]
        if len(set(cells)) != len(cells):
            raise ValueError(f"objects must sit in distinct grid cells, got cells {cells}")

    def relations(self) -> list[tuple[int, str, int]]:
        """``(i, relation, j)`` for every ordered pair of objects, meaning "object i is <relation> object j"."""
        return [
            (i, name, j)
            for i, a in enumerate(self.objects)
            for j, b in enumerate(self.objects)
            if i != j
            for name in relation(a, b)
        ]

    def combinations(self) -> set[str]:
        """The ``"colour shape"`` phrases present, e.g. ``{"red circle"}``."""
        return {f"{o.colour} {o.shape}" for o in self.objects}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (lists for tuples); ``Scene.from_dict`` inverts it."""
        return {
            "background": {"colours": list(self.background.colours), "direction": self.background.direction},
            "objects": [
                {"shape": o.shape, "colour": o.colour, "size": o.size, "position": o.position,
                 "cell": list(o.cell), "centre": list(o.centre), "radius": o.radius}
                for o in self.objects
            ],  # fmt: skip
            "relations": [list(r) for r in self.relations()],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scene:
        """Rebuild a scene from ``to_dict`` output (derived keys, position and relations, are ignored)."""
        background = Background(tuple(data["background"]["colours"]), data["background"]["direction"])
        objects = tuple(
            ShapeObject(o["shape"], o["colour"], o["size"], tuple(o["cell"]), tuple(o["centre"]), o["radius"])
            for o in data["objects"]
        )
        return cls(background, objects)
