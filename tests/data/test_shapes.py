"""The shapes world: determinism, splits, labels, geometry, rendering and captions."""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from unstatic.data.shapes import (
    BACKGROUNDS,
    COLOURS,
    DEFAULT_HOLDOUT,
    POSITIONS,
    RELATIONS,
    SHAPES,
    SIZES,
    Background,
    Scene,
    ShapeObject,
    ShapesDataset,
    coverage,
    describe,
    render,
)
from unstatic.data.shapes.captions import MAX_WORDS
from unstatic.data.shapes.phrasing import PARAPHRASE, STYLES, TRAIN
from unstatic.data.shapes.sdf import SDFS, STAR_INNER_RATIO
from unstatic.data.shapes.vocabulary import BACKGROUND_RGB, COLOUR_RGB, GRADIENT_DIRECTIONS, SIZE_RADIUS
from unstatic.imaging import from_pil


def lone(shape: str, size: str = "large", colour: str = "red", background: str = "grey", resolution: int = 128):
    """One object centred on a pixel centre in the middle cell, so probe offsets land on pixel centres."""
    centre = (resolution // 2 + 0.5) / resolution
    obj = ShapeObject(shape, colour, size, (1, 1), (centre, centre), SIZE_RADIUS[size])
    return Scene(Background((background,)), (obj,)), obj


def scenes(n: int, **kwargs) -> list[Scene]:
    dataset = ShapesDataset(length=n, **kwargs)
    return [dataset.scene(i) for i in range(n)]


# --- determinism -------------------------------------------------------------------------------------------


def same_item(a: dict, b: dict) -> bool:
    return torch.equal(a["image"], b["image"]) and a["caption"] == b["caption"] and a.get("label") == b.get("label")


def test_items_depend_only_on_seed_index_and_arguments():
    first = ShapesDataset(length=50, seed=3)
    expected = {i: first[i] for i in (7, 0, 49)}
    assert same_item(first[7], expected[7])  # the same index twice
    other = ShapesDataset(length=50, seed=3)
    for i in range(50, 0, -1):  # other indices read first, in reverse order, with the global RNGs disturbed
        other[i - 1]
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    for i, item in expected.items():
        assert same_item(other[i], item)
        assert other.describe(i) == first.describe(i)


def test_different_seeds_give_different_scenes_and_images():
    a, b = ShapesDataset(length=40, seed=0), ShapesDataset(length=40, seed=1)
    assert sum(a.scene(i) != b.scene(i) for i in range(40)) >= 38
    assert sum(not torch.equal(a[i]["image"], b[i]["image"]) for i in range(40)) >= 38


def test_scene_does_not_depend_on_resolution_label_or_caption_style():
    base = ShapesDataset(length=30)
    variants = [ShapesDataset(resolution=128, length=30, label=None, captions="paraphrase"),
                ShapesDataset(resolution=17, length=30, label="shape_colour")]  # fmt: skip
    for variant in variants:
        assert all(variant.scene(i) == base.scene(i) for i in range(30))


def test_index_out_of_range_raises_index_error():
    dataset = ShapesDataset(length=5)
    assert same_item(dataset[-1], dataset[4])
    for index in (5, -6, 10**9):
        with pytest.raises(IndexError):
            dataset[index]


# --- items ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_images_are_float_tensors_in_range_equal_to_the_pil_conversion(resolution):
    dataset = ShapesDataset(resolution=resolution, length=8)
    for i in range(8):
        image = dataset[i]["image"]
        assert image.dtype == torch.float32 and image.shape == (3, resolution, resolution)
        assert image.min() >= -1 and image.max() <= 1
        assert torch.equal(image, from_pil(Image.fromarray(render(dataset.scene(i), resolution))))


@pytest.mark.parametrize("mode", ["shape", "colour", "shape_colour", None])
def test_label_names_the_first_object(mode):
    dataset = ShapesDataset(length=200, label=mode)
    assert len(dataset.class_names()) == dataset.num_classes
    expected_classes = {"shape": len(SHAPES), "colour": len(COLOURS), "shape_colour": len(SHAPES) * len(COLOURS)}
    assert dataset.num_classes == expected_classes.get(mode, 0)
    seen = set()
    for i in range(200):
        item, first = dataset[i], dataset.scene(i).objects[0]
        if mode is None:
            assert "label" not in item
            continue
        assert 0 <= item["label"] < dataset.num_classes
        name = dataset.class_names()[item["label"]]
        expected = {"shape": first.shape, "colour": first.colour, "shape_colour": f"{first.colour} {first.shape}"}
        assert name == expected[mode]
        seen.add(item["label"])
    if mode in ("shape", "colour"):
        assert len(seen) == dataset.num_classes


# --- scenes: splits, coverage of the vocabulary, geometry -----------------------------------------------------


def test_train_split_never_shows_a_held_out_combination():
    held_out = set(DEFAULT_HOLDOUT)
    for scene in scenes(3000):
        assert not scene.combinations() & held_out


@pytest.mark.parametrize("holdout", [DEFAULT_HOLDOUT, ("white ring",), ("black cross", "yellow circle")])
def test_every_holdout_scene_shows_a_held_out_combination(holdout):
    shown = Counter()
    for scene in scenes(600, holdout=holdout, split="holdout"):
        present = scene.combinations() & set(holdout)
        assert present
        shown.update(present)
    assert set(shown) == set(holdout)
    if holdout != DEFAULT_HOLDOUT:  # the train split honours a custom holdout too
        assert all(not s.combinations() & set(holdout) for s in scenes(500, holdout=holdout))


def test_every_label_value_is_reachable():
    sample = scenes(2000)
    objects = [o for s in sample for o in s.objects]
    assert {o.shape for o in objects} == set(SHAPES)
    assert {o.colour for o in objects} == set(COLOURS)
    assert {o.size for o in objects} == set(SIZES)
    assert {o.position for o in objects} == set(POSITIONS)
    assert {rel for s in sample for _, rel, _ in s.relations()} == set(RELATIONS)
    assert {len(s.objects) for s in sample} == {1, 2, 3}
    assert {c for s in sample for c in s.background.colours} == set(BACKGROUNDS)
    assert {s.background.direction for s in sample} == {None, *GRADIENT_DIRECTIONS}


def test_objects_sit_inside_their_own_cells_with_separated_sizes():
    radii = {size: [] for size in SIZES}
    for scene in scenes(1500, min_objects=3):
        assert len({o.cell for o in scene.objects}) == 3
        for o in scene.objects:
            row, col = o.cell
            assert col / 3 <= o.centre[0] - o.radius and o.centre[0] + o.radius <= (col + 1) / 3
            assert row / 3 <= o.centre[1] - o.radius and o.centre[1] + o.radius <= (row + 1) / 3
            radii[o.size].append(o.radius)
    # the largest small object is clearly smaller than the smallest medium one, and so on
    assert max(radii["small"]) * 1.2 < min(radii["medium"])
    assert max(radii["medium"]) * 1.2 < min(radii["large"])


def test_relations_agree_with_object_centres_and_are_antisymmetric():
    opposite = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
    for scene in scenes(500, min_objects=2):
        relations = set(scene.relations())
        for i, rel, j in relations:
            (xi, yi), (xj, yj) = scene.objects[i].centre, scene.objects[j].centre
            assert {"left of": xi < xj, "right of": xi > xj, "above": yi < yj, "below": yi > yj}[rel]
            assert (j, opposite[rel], i) in relations
        for i in range(len(scene.objects)):  # every pair is related somehow, as no two share a cell
            assert any(r[0] == i for r in relations)


def test_scene_dict_is_json_and_round_trips():
    for scene in scenes(50):
        data = json.loads(json.dumps(scene.to_dict()))
        assert Scene.from_dict(data) == scene
        assert [o["position"] for o in data["objects"]] == [o.position for o in scene.objects]


# --- rendering -----------------------------------------------------------------------------------------------


def test_object_centres_show_their_colour_and_ring_centres_show_the_background():
    dataset = ShapesDataset(resolution=64, length=300)
    for i in range(300):
        scene = dataset.scene(i)
        image = render(scene, 64).astype(int)
        background = render(Scene(scene.background, ()), 64).astype(int)
        for o in scene.objects:
            x, y = int(o.centre[0] * 64), int(o.centre[1] * 64)
            expected = background[y, x] if o.shape == "ring" else COLOUR_RGB[o.colour]
            assert np.abs(image[y, x] - expected).max() <= 2, (i, o)
        # nothing is drawn outside the objects' bounding boxes (plus the half-pixel anti-aliasing ramp)
        drawn = np.zeros((64, 64), bool)
        for o in scene.objects:
            lo = np.floor((np.array(o.centre) - o.radius) * 64 - 1).astype(int)
            hi = np.ceil((np.array(o.centre) + o.radius) * 64 + 1).astype(int)
            drawn[max(lo[1], 0) : hi[1], max(lo[0], 0) : hi[0]] = True
        assert np.array_equal(image[~drawn], background[~drawn])


def test_objects_contrast_with_the_background_around_them():
    dataset = ShapesDataset(resolution=64, length=300)
    for i in range(300):
        scene = dataset.scene(i)
        background = render(Scene(scene.background, ()), 64).astype(float)
        for o in scene.objects:  # the background just outside each corner of the object's box
            for sx in (-1, 1):
                for sy in (-1, 1):
                    x = min(max(int((o.centre[0] + sx * (o.radius + 0.01)) * 64), 0), 63)
                    y = min(max(int((o.centre[1] + sy * (o.radius + 0.01)) * 64), 0), 63)
                    assert np.linalg.norm(background[y, x] - COLOUR_RGB[o.colour]) > 90


def analytic_area(shape: str, r: float) -> float | None:
    """Areas from elementary geometry, independent of the renderer (None: no closed form worth writing)."""
    inner = STAR_INNER_RATIO * r / math.sin(math.radians(72))
    return {
        "circle": math.pi * r**2,
        "square": 4 * r**2,
        "diamond": 2 * r**2,
        "triangle": math.sqrt(3) * r**2,  # side 2r
        "ring": math.pi * (r**2 - (r / 2) ** 2),
        "cross": 2 * (2 * r) * (0.72 * r) - (0.72 * r) ** 2,
        "star": 5 * (r / math.sin(math.radians(72))) * inner * math.sin(math.radians(36)),  # 10 triangles
        "heart": None,
    }[shape]


@pytest.mark.parametrize("shape", SHAPES)
def test_coverage_area_grows_with_size_and_matches_geometry(shape):
    areas = {size: coverage(lone(shape, size, resolution=32)[1], 32).sum() for size in SIZES}
    assert areas["small"] * 1.5 < areas["medium"] and areas["medium"] * 1.4 < areas["large"]
    r = SIZE_RADIUS["large"] * 128
    exact = analytic_area(shape, r)
    if exact is not None:
        assert coverage(lone(shape, resolution=128)[1], 128).sum() == pytest.approx(exact, rel=0.01)


# Probes (dx, dy) as fractions of the half side r, y down, that must be inside / outside each shape.
PROBES = {
    "circle": ([(0, 0), (0.9, 0), (0, -0.9), (0.6, 0.6)], [(0.85, 0.85), (-0.85, 0.85)]),
    "square": ([(0, 0), (0.9, 0.9), (-0.9, -0.9), (0.9, -0.9)], [(1.1, 0), (0, 1.1)]),
    "triangle": ([(0, 0), (0, -0.7), (0.8, 0.8), (-0.8, 0.8)], [(0.8, -0.8), (-0.8, -0.8), (0, 0.95)]),
    "diamond": ([(0, 0), (0.9, 0), (0, -0.9), (0.45, 0.45)], [(0.6, 0.6), (-0.6, -0.6), (0.6, -0.6)]),
    "cross": ([(0, 0), (0.9, 0), (-0.9, 0), (0, 0.9), (0, -0.9)], [(0.45, 0.45), (-0.6, 0.6), (0.9, 0.9)]),
    "ring": ([(0.75, 0), (0, -0.75), (0.53, 0.53)], [(0, 0), (0.2, 0.2), (0.95, 0.95)]),
    "heart": ([(0, 0), (0.5, -0.5), (-0.5, -0.5), (0, 0.6)], [(0, -0.85), (0.8, 0.8), (-0.8, 0.8)]),
    "star": (
        [(0, 0)] + [(0.75 * math.cos(a), -0.75 * math.sin(a)) for a in np.radians(90 + 72 * np.arange(5))],
        [(0.85 * math.cos(a), -0.85 * math.sin(a)) for a in np.radians(126 + 72 * np.arange(5))],
    ),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_shapes_look_like_their_names(shape):
    scene, obj = lone(shape)
    mask = coverage(obj, 128)
    r = obj.radius * 128
    centre = 128 // 2
    inside, outside = PROBES[shape]
    if shape == "star":  # star probes are relative to the outer radius, and the star's centre sits lower
        outer = 1 / math.sin(math.radians(72))
        shift = outer * (1 - math.cos(math.radians(36))) / 2
        inside = [(x * outer, y * outer + shift) for x, y in inside]
        outside = [(x * outer, y * outer + shift) for x, y in outside]
    for points, want in ((inside, 1.0), (outside, 0.0)):
        for dx, dy in points:
            assert mask[centre + round(dy * r), centre + round(dx * r)] == want, (dx, dy, want)


@pytest.mark.parametrize("shape", SHAPES)
def test_distance_functions_are_exact(shape):
    """An exact SDF is 1-Lipschitz and has unit gradient almost everywhere; a wrong transcription is not."""
    step = 0.01
    grid = np.arange(-1.3, 1.3, step)
    d = SDFS[shape](grid[None, :], grid[:, None], 1.0)
    slopes = np.concatenate([np.abs(np.diff(d, axis=0)).ravel(), np.abs(np.diff(d, axis=1)).ravel()]) / step
    assert slopes.max() <= 1 + 1e-6
    gx, gy = np.diff(d, axis=1)[:-1] / step, np.diff(d, axis=0)[:, :-1] / step
    assert np.mean(np.hypot(gx, gy) > 0.99) > 0.95


def test_edges_are_anti_aliased():
    scene, obj = lone("circle", colour="white", background="charcoal", resolution=32)
    grey = render(scene, 32)[..., 0].astype(int)
    low, high = BACKGROUND_RGB["charcoal"][0], COLOUR_RGB["white"][0]
    partial = (grey > low + 5) & (grey < high - 5)
    assert partial.sum() >= 12  # most of the ~30 boundary pixels of a 5-pixel-radius disc are partial
    alpha = coverage(obj, 32)
    assert np.allclose(grey, np.round(low + (high - low) * alpha), atol=1)


def test_render_rejects_tiny_resolutions():
    with pytest.raises(ValueError, match="resolution"):
        render(lone("circle")[0], 8)


# --- captions ------------------------------------------------------------------------------------------------


def phrase_pattern(phrases) -> re.Pattern:
    """Whole-phrase matches, longest alternative first (so "at the top left" is not read as "at the top")."""
    ordered = sorted(set(phrases), key=len, reverse=True)
    return re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, ordered)) + r")(?![\w-])")


def words_to_label(table) -> dict[str, str]:
    return {word: label for label, words in table.items() for word in words}


@pytest.mark.parametrize("style", ["train", "paraphrase"])
def test_captions_name_exactly_the_objects_in_the_scene(style):
    phrasing = STYLES[style]
    tables = {"colour": phrasing.colours, "shape": phrasing.shapes, "size": phrasing.sizes,
              "position": phrasing.positions}  # fmt: skip
    lookups = {k: words_to_label(t) for k, t in tables.items()}
    patterns = {k: phrase_pattern(lookup) for k, lookup in lookups.items()}
    dataset = ShapesDataset(length=600, captions=style)
    said = Counter()
    for i in range(600):
        scene, text = dataset.scene(i), dataset[i]["caption"]
        assert len(text.split()) <= MAX_WORDS
        for attribute, pattern in patterns.items():
            mentioned = {lookups[attribute][m] for m in pattern.findall(text)}
            present = {getattr(o, attribute) for o in scene.objects}
            assert mentioned <= present, (text, attribute)  # nothing is said that is not there
            if attribute in ("colour", "shape"):
                assert mentioned == present, (text, attribute)  # and colour and shape are always said
            said[attribute] += bool(mentioned)
        # sizes and positions describe the right object: a size word comes first in its object's phrase, and in
        # captions of several objects a position phrase follows its object's phrase
        found = {k: [(m.start(), lookups[k][m.group(1)]) for m in p.finditer(text)] for k, p in patterns.items()}
        owners = {(o.colour, o.shape): o for o in scene.objects}
        for start, size in found["size"]:
            colour = next(c for at, c in found["colour"] if at > start)
            shape = next(s for at, s in found["shape"] if at > start)
            assert owners[colour, shape].size == size, text
        if len(scene.objects) > 1:
            for start, position in found["position"]:
                colour = [c for at, c in found["colour"] if at < start][-1]
                shape = [s for at, s in found["shape"] if at < start][-1]
                assert owners[colour, shape].position == position, text
    assert said["size"] > 300 and said["position"] > 150  # sizes and positions are usually said


@pytest.mark.parametrize("style", ["train", "paraphrase"])
@pytest.mark.parametrize("cells", [((1, 0), (1, 2)), ((0, 1), (2, 1)), ((0, 0), (2, 2))])
def test_relation_phrases_join_objects_in_the_right_direction(style, cells):
    phrasing = STYLES[style]
    red = ShapeObject("circle", "red", "medium", cells[0], ((cells[0][1] + 0.5) / 3, (cells[0][0] + 0.5) / 3), 0.1)
    blue = ShapeObject("square", "blue", "medium", cells[1], ((cells[1][1] + 0.5) / 3, (cells[1][0] + 0.5) / 3), 0.1)
    colour_of = words_to_label(phrasing.colours)
    colours = phrase_pattern(colour_of)
    relation_of = words_to_label(phrasing.relations)
    relations = phrase_pattern(relation_of)
    truth = {("red", "blue"): set(), ("blue", "red"): set()}
    (r0, c0), (r1, c1) = cells
    if c0 != c1:
        truth[("red", "blue")].add("left of"), truth[("blue", "red")].add("right of")
    if r0 != r1:
        truth[("red", "blue")].add("above"), truth[("blue", "red")].add("below")
    checked = 0
    for seed in range(150):
        for objects in ((red, blue), (blue, red)):
            text = describe(Scene(Background(("grey",)), objects), random.Random(seed), style).text
            for match in relations.finditer(text):
                before = colours.findall(text[: match.start()])[-1]
                after = colours.findall(text[match.end() :])[0]
                assert relation_of[match.group(1)] in truth[(colour_of[before], colour_of[after])], text
                checked += 1
    assert checked > 50


def test_caption_claims_are_true():
    dataset = ShapesDataset(length=400, min_objects=2)
    claimed = 0
    for i in range(400):
        claims = dataset.describe(i).claims
        assert set(claims) <= set(dataset.scene(i).relations())
        claimed += len(claims)
    assert claimed > 100


def test_paraphrase_style_shares_nothing_with_train_but_the_canonical_names():
    for n in TRAIN.sentences:
        assert not set(TRAIN.sentences[n]) & set(PARAPHRASE.sentences[n])
    assert not set(TRAIN.objects) & set(PARAPHRASE.objects)
    assert not set(TRAIN.solid_backgrounds + TRAIN.gradient_backgrounds) & set(
        PARAPHRASE.solid_backgrounds + PARAPHRASE.gradient_backgrounds
    )
    canonical = set(COLOURS) | set(SHAPES) | set(SIZES)
    train_only = set()
    for table in ("colours", "shapes", "sizes", "positions", "relations"):
        train_words = {w for words in getattr(TRAIN, table).values() for w in words}
        paraphrase_words = {w for words in getattr(PARAPHRASE, table).values() for w in words}
        assert train_words & paraphrase_words <= canonical, table
        train_only |= train_words - canonical
    train_only |= {"there is", "picture of", "image of", "background"}  # fixed words of train templates
    pattern = phrase_pattern(train_only)
    dataset = ShapesDataset(length=600, captions="paraphrase")
    templates = set()
    for i in range(600):
        caption = dataset.describe(i)
        assert not pattern.findall(caption.text), caption.text
        templates.add(caption.template)
    train_templates = {t for ts in TRAIN.sentences.values() for t in ts}
    assert templates and not templates & train_templates
    assert len(templates) == sum(map(len, PARAPHRASE.sentences.values()))  # every paraphrase template is used


# --- argument checking ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"holdout": ("violet star",)}, "holdout"),
        ({"holdout": ("purple stars",)}, "holdout"),
        ({"holdout": "purple star"}, "holdout"),
        ({"min_objects": 3, "max_objects": 2}, "min_objects"),
        ({"max_objects": 4}, "max_objects"),
        ({"min_objects": 0}, "min_objects"),
        ({"resolution": 15}, "resolution"),
        ({"resolution": 32.0}, "resolution"),
        ({"split": "test"}, "split"),
        ({"split": "holdout", "holdout": ()}, "holdout"),
        ({"label": "size"}, "label"),
        ({"captions": "fancy"}, "captions"),
        ({"length": 0}, "length"),
    ],
)
def test_bad_arguments_raise_value_errors_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ShapesDataset(**kwargs)
