"""The words and sentence templates of the two caption styles, "train" and "paraphrase".

"paraphrase" exists to measure generalisation to new phrasing, so none of its sentence templates, object
phrase forms, background phrases, position or relation phrases, and none of its synonyms, is ever produced by
"train". The one thing the styles share is the canonical vocabulary itself ("red", "circle", "small"): a
caption has to name the attributes somehow, and those names are the labels.

Templates are ``str.format`` strings. Object forms take ``{size} {colour} {shape}`` (an article is added in
front); background forms take ``{colour}`` or ``{first} {second}``; sentences take ``{o1}..{o3}`` (objects in
caption order), ``{p1}..{p3}`` (their positions), ``{r12}`` (how object 1 relates to object 2) and ``{bg}``.
Every relation slot sits between its two objects ("{o1} {r12} {o2}"), so a reader can always tell which
objects a relation phrase joins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Phrasing:
    """One caption style: synonyms per label (canonical name included) and templates."""

    colours: Mapping[str, tuple[str, ...]]
    shapes: Mapping[str, tuple[str, ...]]
    sizes: Mapping[str, tuple[str, ...]]
    positions: Mapping[str, tuple[str, ...]]
    relations: Mapping[str, tuple[str, ...]]
    objects: tuple[str, ...]  # noun-phrase forms; those without {size} leave the size unsaid
    solid_backgrounds: tuple[str, ...]
    gradient_backgrounds: tuple[str, ...]
    sentences: Mapping[int, tuple[str, ...]]  # by number of objects


TRAIN = Phrasing(
    colours={
        "red": ("red", "scarlet"), "orange": ("orange", "tangerine"), "yellow": ("yellow", "lemon"),
        "green": ("green", "emerald"), "cyan": ("cyan", "turquoise"), "blue": ("blue", "cobalt"),
        "purple": ("purple", "violet"), "pink": ("pink", "rose"), "black": ("black", "jet-black"),
        "white": ("white", "snow-white"),
    },
    shapes={
        "circle": ("circle", "disc"), "square": ("square", "box"), "triangle": ("triangle", "triangular shape"),
        "star": ("star", "five-pointed star"), "heart": ("heart", "heart shape"), "diamond": ("diamond", "rhombus"),
        "cross": ("cross", "plus sign"), "ring": ("ring", "hoop"),
    },
    sizes={"small": ("small", "little", "tiny"), "medium": ("medium", "medium-sized"), "large": ("large", "big")},
    positions={
        "top left": ("in the top left corner", "at the top left"),
        "top": ("at the top", "in the top middle"),
        "top right": ("in the top right corner", "at the top right"),
        "left": ("on the left", "at the middle left"),
        "centre": ("in the centre", "in the middle", "at the center"),
        "right": ("on the right", "at the middle right"),
        "bottom left": ("in the bottom left corner", "at the bottom left"),
        "bottom": ("at the bottom", "in the bottom middle"),
        "bottom right": ("in the bottom right corner", "at the bottom right"),
    },
    relations={
        "left of": ("to the left of", "left of"),
        "right of": ("to the right of", "right of"),
        "above": ("above", "over"),
        "below": ("below", "under", "beneath"),
    },
    objects=("{size} {colour} {shape}", "{colour} {shape}", "{size} {shape} in {colour}"),
    solid_backgrounds=("on a {colour} background", "against a {colour} background"),
    gradient_backgrounds=("on a {first} to {second} gradient", "on a background fading from {first} to {second}"),
    sentences={
        1: (
            "{o1}",
            "{o1} {p1}",
            "there is {o1} {p1}",
            "{p1} there is {o1}",
            "a picture of {o1} {p1} {bg}",
            "{o1} {bg}",
            "an image of {o1} {p1}",
        ),
        2: (
            "{o1} and {o2}",
            "{o1} {r12} {o2}",
            "{o1} {r12} {o2} {bg}",
            "there is {o1} {r12} {o2}",
            "{o1} {p1} and {o2} {p2}",
            "a picture of {o1} {r12} {o2}",
        ),
        3: (
            "{o1}, {o2} and {o3}",
            "{o1} {r12} {o2}, and {o3} {p3}",
            "{o1} {p1}, {o2} {p2} and {o3} {p3}",
            "{o1} {r12} {o2}, plus {o3} {p3} {bg}",
            "an image of {o1}, {o2} and {o3} {bg}",
        ),
    },
)  # fmt: skip

PARAPHRASE = Phrasing(
    colours={
        "red": ("red", "crimson", "cherry red"), "orange": ("orange", "pumpkin orange", "carrot-coloured"),
        "yellow": ("yellow", "canary yellow", "golden yellow"), "green": ("green", "grass green", "leaf green"),
        "cyan": ("cyan", "aqua", "aquamarine"), "blue": ("blue", "royal blue", "sapphire"),
        "purple": ("purple", "plum", "amethyst"), "pink": ("pink", "hot pink", "bubblegum pink"),
        "black": ("black", "ebony", "pitch-black"), "white": ("white", "pure white", "chalk-white"),
    },
    shapes={
        "circle": ("circle", "disk", "filled circle"), "square": ("square", "block", "square tile"),
        "triangle": ("triangle", "three-sided shape", "wedge"), "star": ("star", "five-point star", "pentagram"),
        "heart": ("heart", "love heart", "valentine heart"), "diamond": ("diamond", "lozenge", "diamond shape"),
        "cross": ("cross", "plus symbol", "plus shape"), "ring": ("ring", "donut", "annulus"),
    },
    sizes={
        "small": ("small", "miniature", "undersized"),
        "medium": ("medium", "mid-sized", "moderately sized"),
        "large": ("large", "huge", "giant"),
    },
    positions={
        "top left": ("toward the top-left", "up in the left-hand corner"),
        "top": ("near the upper edge", "high up and centred"),
        "top right": ("toward the top-right", "up in the right-hand corner"),
        "left": ("along the left-hand side", "halfway down the left side"),
        "centre": ("in the very middle", "at the exact center"),
        "right": ("along the right-hand side", "halfway down the right side"),
        "bottom left": ("toward the bottom-left", "down in the left-hand corner"),
        "bottom": ("near the lower edge", "low down and centred"),
        "bottom right": ("toward the bottom-right", "down in the right-hand corner"),
    },
    relations={
        "left of": ("further left than", "farther to the left than"),
        "right of": ("further right than", "farther to the right than"),
        "above": ("higher up than", "sitting higher than"),
        "below": ("lower down than", "underneath"),
    },
    objects=("{shape} coloured {colour}", "{size}, {colour} {shape}", "{size} {shape} painted {colour}"),
    solid_backgrounds=("set against a {colour} backdrop", "with a plain {colour} backdrop"),
    gradient_backgrounds=(
        "with a backdrop shading from {first} into {second}",
        "set against a {first}-and-{second} gradient backdrop",
    ),
    sentences={
        1: (
            "you can see {o1} {p1}",
            "this scene shows {o1} {p1}, {bg}",
            "{p1} sits {o1}",
            "a drawing of {o1}, {bg}",
            "here we have {o1} {p1}",
            "just {o1}",
        ),
        2: (
            "two shapes: {o1} and {o2}",
            "you can see {o1} placed {r12} {o2}",
            "this scene shows {o1} {r12} {o2}, {bg}",
            "{o1} sits {p1} while {o2} sits {p2}",
            "here we have {o1} {r12} {o2}",
        ),
        3: (
            "three shapes: {o1}, {o2} and {o3}",
            "you can see {o1} {r12} {o2}, as well as {o3} {p3}",
            "{o1} sits {p1}, {o2} sits {p2} and {o3} sits {p3}",
            "this scene shows {o1}, {o2} and {o3}, {bg}",
        ),
    },
)  # fmt: skip

STYLES: Mapping[str, Phrasing] = {"train": TRAIN, "paraphrase": PARAPHRASE}
