"""Prompt fidelity: does a generated image show what its prompt asked for?

An image *matches* its prompt when the reader finds the prompt's objects with the right shapes and colours and no
other object, each object the caption places in its cell, and every relation the caption states holding between
the cells where the reader found them ("shapes, colours and positions match"). Without a caption, every object
must sit in its scene's exact cell. Size is checked only on request, since most captions leave it unsaid.
Fractions come with Wilson score intervals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import permutations
from dataclasses import dataclass

import torch
from torch import Tensor

from unstatic.data.shapes import ShapesDataset
from unstatic.data.shapes.captions import Caption
from unstatic.data.shapes.scene import Scene, cell_relation
from unstatic.data.shapes.vocabulary import COLOURS, GRID, SIZES
from unstatic.evaluation.shapes_reader import SHAPE_CLASSES, ShapesReader, match_resolution

GROUPS = ("single", "relation", "holdout", "paraphrase")
WORLD_LENGTH = 10**9  # ShapesDataset only needs the length to bound indices; prompt sets never reach it
RELATION_SCAN = 50  # relation prompts: indices scanned per prompt wanted before giving up


@dataclass(frozen=True)
class ReadObject:
    """One object the reader found: its grid cell ``(row, col)`` and its labels."""

    cell: tuple[int, int]
    shape: str
    colour: str
    size: str


@dataclass(frozen=True)
class ReadScene:
    """What the reader sees in one image: the objects of its occupied cells, in row-major cell order."""

    objects: tuple[ReadObject, ...]


@torch.no_grad()
def read_scenes(reader: ShapesReader, images: Tensor, batch_size: int = 512) -> list[ReadScene]:
    """Read ``images`` ``[N, 3, S, S]`` in [-1, 1] (S a multiple of the reader's resolution; see
    :func:`match_resolution`): each cell's most likely shape (or empty), colour and size."""
    reader.eval()
    images = match_resolution(images, reader.config.resolution)
    scenes = []
    for start in range(0, len(images), batch_size):
        logits = reader(images[start : start + batch_size].float())
        shape, colour, size = (logits[k].argmax(-1).tolist() for k in ("shape", "colour", "size"))
        for s_row, c_row, z_row in zip(shape, colour, size):
            scenes.append(ReadScene(tuple(
                ReadObject(divmod(cell, GRID), SHAPE_CLASSES[s], COLOURS[c], SIZES[z])
                for cell, (s, c, z) in enumerate(zip(s_row, c_row, z_row))
                if s != 0
            )))  # fmt: skip
    return scenes


FAILURES = ("count", "shape", "colour", "size", "binding", "placement")
"""Why an image does not match, in the order :func:`mismatch` checks: ``count``, another number of objects than
asked for (one missing, two merged, one extra); ``shape`` and ``colour``, a shape or colour that was not asked for
(or one asked for missing) with the count right; ``size`` likewise (only when sizes are checked); ``binding``, every
shape and colour asked for is there but paired differently (the red circle drawn blue and the blue square red);
``placement``, the right objects in the wrong cells or relation."""


def mismatch(read: ReadScene, scene: Scene, check_size: bool = False, caption: Caption | None = None) -> str | None:
    """``None`` when ``read`` shows what ``caption`` says of ``scene`` (see :func:`matches`), else the first of
    :data:`FAILURES` that keeps it from matching."""
    wanted, found = scene.objects, read.objects
    if len(found) != len(wanted):
        return "count"
    for attribute in ("shape", "colour", "size") if check_size else ("shape", "colour"):
        if sorted(getattr(o, attribute) for o in found) != sorted(getattr(w, attribute) for w in wanted):
            return attribute
    placed = range(len(wanted)) if caption is None else caption.placed
    claims = () if caption is None else caption.claims

    def same(a, b) -> bool:
        return (a.shape, a.colour) == (b.shape, b.colour) and (not check_size or a.size == b.size)

    # at most 3 objects: try every pairing of read objects with wanted ones
    pairings = [order for order in permutations(found) if all(same(o, w) for o, w in zip(order, wanted))]
    if not pairings:
        return "binding"
    for order in pairings:
        if all(tuple(order[i].cell) == tuple(wanted[i].cell) for i in placed) \
                and all(name in cell_relation(order[i].cell, order[j].cell) for i, name, j in claims):
            return None
    return "placement"


def matches(read: ReadScene, scene: Scene, check_size: bool = False, caption: Caption | None = None) -> bool:
    """True when ``read`` shows what ``caption`` says of ``scene``: the same objects (shapes and colours, and
    sizes if asked; nothing extra), those the caption places in their cells, and the relations it states between
    the cells where they were read. With no caption, every object must be in its scene cell."""
    return mismatch(read, scene, check_size, caption) is None


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927; Brown, Cai & DasGupta 2001, Eq. 4):
    ``(p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)``; 95 % for the default ``z``."""
    if total < 1 or not 0 <= successes <= total:
        raise ValueError(f"need 0 <= successes <= total and total >= 1, got successes={successes}, total={total}")
    p, n = successes / total, total
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    # at p = 0 or 1 the interval touches the boundary exactly; set it so round-off cannot leave a 1e-16 gap
    low = 0.0 if successes == 0 else max((centre - half) / scale, 0.0)
    high = 1.0 if successes == total else min((centre + half) / scale, 1.0)
    return low, high


def fidelity_report(
    reader: ShapesReader, images: Tensor, scenes: Sequence[Scene], groups: Sequence[str], check_size: bool = False,
    captions: Sequence[Caption] | None = None,
) -> dict[str, dict[str, float]]:
    """Fraction of ``images`` matching their ``scenes`` (as their ``captions`` describe them, if given; see
    :func:`matches`), per group name (one per image), plus ``"all"``.

    Each entry is ``{"matched", "total", "fraction", "low", "high", "failures"}``: ``low`` and ``high`` a 95 %
    Wilson interval, ``failures`` the count of each of :data:`FAILURES` among the images that did not match."""
    captions = [None] * len(scenes) if captions is None else list(captions)
    if not len(images) == len(scenes) == len(groups) == len(captions):
        raise ValueError(f"images, scenes, groups (and captions) must have one entry each, got {len(images)}, "
                         f"{len(scenes)}, {len(groups)}, {len(captions)}")
    reasons = [mismatch(r, s, check_size, c) for r, s, c in zip(read_scenes(reader, images), scenes, captions)]
    report = {}
    for name in [*dict.fromkeys(groups), "all"]:
        chosen = [reason for reason, g in zip(reasons, groups) if name in ("all", g)]
        matched = chosen.count(None)
        low, high = wilson_interval(matched, len(chosen))
        report[name] = {"matched": matched, "total": len(chosen), "fraction": matched / len(chosen), "low": low,
                        "high": high, "failures": {kind: chosen.count(kind) for kind in FAILURES if kind in chosen}}
    return report


def prompt_set(kind: str, count: int, seed: int) -> list[tuple[Caption, Scene]]:
    """``count`` evaluation prompts ``(caption, scene)`` of one kind, drawn from the shapes world ``seed``
    (the prompt is ``caption.text``; the caption also says which positions and relations it states):

    * ``"single"``: one-object scenes, training-style captions;
    * ``"relation"``: two-object scenes whose caption states a relation between them ("a above b");
    * ``"holdout"``: holdout-split scenes (each has a held-out colour-shape combination), 1-3 objects;
    * ``"paraphrase"``: train-split scenes, 1-3 objects, captions in the unseen "paraphrase" style.

    Use a seed the generator was not trained on, so the scenes are new to it."""
    if kind not in GROUPS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, GROUPS))}, got {kind!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    options = {
        "single": dict(min_objects=1, max_objects=1),
        "relation": dict(min_objects=2, max_objects=2),
        "holdout": dict(split="holdout"),
        "paraphrase": dict(captions="paraphrase"),
    }[kind]
    world = ShapesDataset(length=WORLD_LENGTH, seed=seed, label=None, **options)
    prompts = []
    for index in range(count * (RELATION_SCAN if kind == "relation" else 1)):
        scene = world.scene(index)
        caption = world.describe(index, scene)
        if kind != "relation" or caption.claims:
            prompts.append((caption, scene))
        if len(prompts) == count:
            return prompts
    raise RuntimeError(f"found only {len(prompts)} {kind} prompts in {count * RELATION_SCAN} scenes of seed {seed}")
