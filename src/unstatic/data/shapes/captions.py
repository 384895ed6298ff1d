"""Captions: one random natural-language description of a scene, in the "train" or "paraphrase" style.

A caption always names every object's colour and shape; its size, position, the relation between objects
and the background are said or left out depending on the template drawn. Objects are described in a random
order, and any relation a caption states is true of the scene (it is read off the grid cells).
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

from unstatic.data.shapes.phrasing import STYLES, Phrasing
from unstatic.data.shapes.scene import Background, Scene, ShapeObject, relation

MAX_WORDS = 30
ATTEMPTS = 8  # redraws before falling back to the plainest template, if a caption runs over MAX_WORDS


@dataclass(frozen=True)
class Caption:
    """A caption and how it was made.

    Args:
        text: the caption, lower case.
        template: the sentence template it filled (identifies the template across styles).
        style: "train" or "paraphrase".
        claims: the relations it states, ``(i, relation, j)`` with i, j indices into ``scene.objects``.
        placed: indices into ``scene.objects`` of the objects whose grid position it names.
    """

    text: str
    template: str
    style: str
    claims: tuple[tuple[int, str, int], ...] = ()
    placed: tuple[int, ...] = ()


def check_style(style: str) -> Phrasing:
    """The phrasing of a caption style; ``ValueError`` naming ``captions`` if unknown."""
    if style not in STYLES:
        raise ValueError(f"captions must be one of {', '.join(map(repr, STYLES))}, got {style!r}")
    return STYLES[style]


def with_article(phrase: str) -> str:
    """``"a"`` or ``"an"`` before a noun phrase (by its first letter, enough for this vocabulary)."""
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def object_phrase(obj: ShapeObject, rng: random.Random, phrasing: Phrasing, form: str | None = None) -> str:
    """A noun phrase for one object, e.g. "a small scarlet disc"."""
    form = form or rng.choice(phrasing.objects)
    return with_article(
        form.format(
            size=rng.choice(phrasing.sizes[obj.size]),
            colour=rng.choice(phrasing.colours[obj.colour]),
            shape=rng.choice(phrasing.shapes[obj.shape]),
        )
    )


def background_phrase(background: Background, rng: random.Random, phrasing: Phrasing) -> str:
    """E.g. "on a grey background" or "on a background fading from sand to slate"."""
    if background.is_gradient:
        first, second = background.colours
        return rng.choice(phrasing.gradient_backgrounds).format(first=first, second=second)
    return rng.choice(phrasing.solid_backgrounds).format(colour=background.colours[0])


def _fill(scene: Scene, rng: random.Random, style: str, plain: bool) -> Caption:
    """Fill one randomly drawn template (or, if ``plain``, the first template with size-free object forms)."""
    phrasing = STYLES[style]
    objects = scene.objects
    order = list(range(len(objects)))
    rng.shuffle(order)
    templates = phrasing.sentences[len(objects)]
    template = templates[0] if plain else rng.choice(templates)
    plain_form = next(f for f in phrasing.objects if "{size}" not in f) if plain else None
    values: dict[str, str] = {}
    claims, placed = [], []
    for _, slot, _, _ in string.Formatter().parse(template):
        if slot is None:
            continue
        kind, digits = slot[0], slot[1:]
        if kind == "o":
            values[slot] = object_phrase(objects[order[int(digits) - 1]], rng, phrasing, plain_form)
        elif kind == "p":
            placed.append(order[int(digits) - 1])
            values[slot] = rng.choice(phrasing.positions[objects[placed[-1]].position])
        elif kind == "r":
            i, j = order[int(digits[0]) - 1], order[int(digits[1]) - 1]
            name = rng.choice(relation(objects[i], objects[j]))
            values[slot] = rng.choice(phrasing.relations[name])
            claims.append((i, name, j))
        elif slot == "bg":
            values[slot] = background_phrase(scene.background, rng, phrasing)
    return Caption(template.format(**values), template, style, tuple(claims), tuple(sorted(placed)))


def describe(scene: Scene, rng: random.Random, style: str = "train") -> Caption:
    """A random caption of ``scene`` in ``style``, at most ``MAX_WORDS`` words; all randomness from ``rng``."""
    check_style(style)
    if not 1 <= len(scene.objects) <= max(STYLES[style].sentences):
        raise ValueError(f"captions describe 1-{max(STYLES[style].sentences)} objects, got {len(scene.objects)}")
    for _ in range(ATTEMPTS):
        caption = _fill(scene, rng, style, plain=False)
        if len(caption.text.split()) <= MAX_WORDS:
            return caption
    return _fill(scene, rng, style, plain=True)
