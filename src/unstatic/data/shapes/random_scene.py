"""Drawing a random scene from an explicit RNG: the only source of randomness in the shapes world."""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence

from unstatic.data.shapes.scene import Background, Scene, ShapeObject
from unstatic.data.shapes.vocabulary import (
    BACKGROUNDS,
    GRADIENT_DIRECTIONS,
    GRID,
    SHAPES,
    SIZE_JITTER,
    SIZE_RADIUS,
    SIZES,
    colours_contrasting,
)

GRADIENT_PROBABILITY = 0.5
CELL_MARGIN = 0.01  # keeps a jittered object this far (fraction of the image) inside its cell
MAX_TRIES = 1000  # rejection-sampling guard; reachable only with a holdout that forbids nearly everything


def random_background(rng: random.Random, must_show: Sequence[str] = ()) -> Background:
    """A solid or gradient background against which every colour in ``must_show`` contrasts."""
    for _ in range(MAX_TRIES):
        if rng.random() < GRADIENT_PROBABILITY:
            background = Background(tuple(rng.sample(BACKGROUNDS, 2)), rng.choice(GRADIENT_DIRECTIONS))
        else:
            background = Background((rng.choice(BACKGROUNDS),))
        if set(must_show) <= set(colours_contrasting(background.colours)):
            return background
    raise RuntimeError(f"no background contrasts with all of {list(must_show)}")


def place(rng: random.Random, shape: str, colour: str, cell: tuple[int, int]) -> ShapeObject:
    """An object of random size, jittered inside ``cell`` so that its bounding box stays in the cell."""
    size = rng.choice(SIZES)
    radius = SIZE_RADIUS[size] * rng.uniform(1 - SIZE_JITTER, 1 + SIZE_JITTER)
    slack = max(0.5 / GRID - radius - CELL_MARGIN, 0.0)
    row, col = cell
    centre = ((col + 0.5) / GRID + rng.uniform(-slack, slack), (row + 0.5) / GRID + rng.uniform(-slack, slack))
    return ShapeObject(shape, colour, size, cell, centre, radius)


def random_scene(
    rng: random.Random,
    *,
    min_objects: int,
    max_objects: int,
    holdout: Collection[tuple[str, str]],
    include_holdout: bool,
) -> Scene:
    """A scene of ``min_objects``-``max_objects`` objects in distinct cells, each (colour, shape) distinct.

    ``holdout`` holds ``(colour, shape)`` pairs. With ``include_holdout=False`` none appears; with ``True``
    one object (at a random index) is a held-out pair and the others are unrestricted.
    """
    count = rng.randint(min_objects, max_objects)
    cells = [divmod(k, GRID) for k in rng.sample(range(GRID * GRID), count)]
    forced_slot, forced = -1, None
    if include_holdout:
        forced_slot, forced = rng.randrange(count), rng.choice(sorted(holdout))
    background = random_background(rng, [forced[0]] if forced else [])
    palette = colours_contrasting(background.colours)
    chosen: list[tuple[str, str]] = []
    for slot in range(count):
        pair = forced if slot == forced_slot else None
        for _ in range(MAX_TRIES):
            if pair is not None:
                break
            candidate = (rng.choice(palette), rng.choice(SHAPES))
            if candidate in chosen or candidate == forced or (not include_holdout and candidate in holdout):
                continue
            pair = candidate
        if pair is None:
            raise RuntimeError("could not draw an allowed (colour, shape) pair; the holdout forbids too much")
        chosen.append(pair)
    return Scene(background, tuple(place(rng, shape, colour, cell) for (colour, shape), cell in zip(chosen, cells)))
