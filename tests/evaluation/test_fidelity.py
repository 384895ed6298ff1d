"""Prompt fidelity: matching read scenes against prompts, Wilson intervals, prompt sets, corrupted renders."""

import dataclasses
import math

import pytest
import torch

from unstatic.data.shapes import DEFAULT_HOLDOUT, Background, Scene, ShapeObject, ShapesDataset
from unstatic.data.shapes.captions import Caption
from unstatic.data.shapes.phrasing import STYLES
from unstatic.evaluation.fidelity import (
    GROUPS,
    ReadObject,
    ReadScene,
    fidelity_report,
    matches,
    mismatch,
    prompt_set,
    read_scenes,
    wilson_interval,
)
from unstatic.evaluation.shapes_reader import default_reader_folder, load_reader, render_scenes


@pytest.fixture(scope="module")
def reader():
    return load_reader(default_reader_folder(32))


def obj(shape, colour, cell, size="large"):
    radius = {"small": 0.08, "medium": 0.115, "large": 0.155}[size]
    centre = ((cell[1] + 0.5) / 3, (cell[0] + 0.5) / 3)
    return ShapeObject(shape, colour, size, cell, centre, radius)


SCENE = Scene(Background(("grey",)), (obj("circle", "red", (0, 0)), obj("star", "blue", (2, 1), "medium")))


def read_of(scene):
    return ReadScene(tuple(ReadObject(o.cell, o.shape, o.colour, o.size) for o in scene.objects))


def test_matches_hand_built_cases():
    right = read_of(SCENE)
    assert matches(right, SCENE)
    swapped = ReadScene((dataclasses.replace(right.objects[0], colour="blue"), right.objects[1]))
    assert not matches(swapped, SCENE)
    moved = ReadScene((dataclasses.replace(right.objects[0], cell=(0, 1)), right.objects[1]))
    assert not matches(moved, SCENE)
    extra = ReadScene((*right.objects, ReadObject((1, 1), "ring", "green", "small")))
    assert not matches(extra, SCENE)
    missing = ReadScene(right.objects[:1])
    assert not matches(missing, SCENE)
    wrong_size = ReadScene((dataclasses.replace(right.objects[0], size="small"), right.objects[1]))
    assert matches(wrong_size, SCENE) and not matches(wrong_size, SCENE, check_size=True)


def test_mismatch_names_the_first_failure():
    """SCENE: a red circle in (0, 0) and a blue star in (2, 1)."""
    right = read_of(SCENE)
    circle, star = right.objects

    def read(*objects):
        return ReadScene(objects)

    above = Caption("a red circle above a blue star", "{o1} {r12} {o2}", "train", claims=((0, "above", 1),))
    assert mismatch(right, SCENE) is None and mismatch(right, SCENE, caption=above) is None
    assert mismatch(read(circle), SCENE) == "count"
    assert mismatch(read(circle, star, ReadObject((1, 1), "ring", "green", "small")), SCENE) == "count"
    assert mismatch(read(dataclasses.replace(circle, shape="heart"), star), SCENE) == "shape"
    assert mismatch(read(circle, dataclasses.replace(star, colour="red")), SCENE) == "colour"
    swapped = read(dataclasses.replace(circle, colour="blue"), dataclasses.replace(star, colour="red"))
    assert mismatch(swapped, SCENE, caption=above) == "binding"  # both colours there, on the wrong shapes
    below = read(dataclasses.replace(circle, cell=(2, 2)), star)
    assert mismatch(below, SCENE, caption=above) == "placement"
    small = read(dataclasses.replace(circle, size="small"), star)
    assert mismatch(small, SCENE) is None and mismatch(small, SCENE, check_size=True) == "size"
    for case in (read(circle), swapped, below):
        assert matches(case, SCENE, caption=above) is (mismatch(case, SCENE, caption=above) is None)


def test_matches_only_what_the_caption_states():
    """SCENE: a red circle in cell (0, 0) and a blue star in (2, 1); objects 0 and 1."""
    right = read_of(SCENE)
    circle_moved = ReadScene((dataclasses.replace(right.objects[0], cell=(1, 2)), right.objects[1]))  # still above
    circle_below = ReadScene((dataclasses.replace(right.objects[0], cell=(2, 2)), right.objects[1]))
    unplaced = Caption("a red circle and a blue star", "{o1} and {o2}", "train")
    above = Caption("a red circle above a blue star", "{o1} {r12} {o2}", "train", claims=((0, "above", 1),))
    star_placed = Caption("a red circle and a blue star at the bottom", "{o1} and {o2} {p2}", "train", placed=(1,))
    assert matches(circle_moved, SCENE, caption=unplaced) and not matches(circle_moved, SCENE)
    assert matches(circle_moved, SCENE, caption=above) and not matches(circle_below, SCENE, caption=above)
    assert matches(circle_below, SCENE, caption=star_placed)
    star_moved = ReadScene((right.objects[0], dataclasses.replace(right.objects[1], cell=(1, 1))))
    assert not matches(star_moved, SCENE, caption=star_placed)
    recoloured = ReadScene((dataclasses.replace(right.objects[0], colour="green"), right.objects[1]))
    assert not matches(recoloured, SCENE, caption=unplaced)
    reversed_order = ReadScene(right.objects[::-1])  # the reader lists objects in cell order, not scene order
    assert matches(reversed_order, SCENE, caption=above)


def test_wilson_endpoints_solve_the_score_equation():
    """Wilson's interval is {p0 : |p - p0| <= z sqrt(p0 (1 - p0) / n)}; its interior endpoints solve it."""
    z = 1.96
    for k, n in [(3, 10), (50, 100), (97, 100), (1, 7)]:
        low, high = wilson_interval(k, n, z)
        p = k / n
        assert low < p < high
        for p0 in (low, high):
            assert (p - p0) ** 2 == pytest.approx(z * z * p0 * (1 - p0) / n, rel=1e-9)


def test_wilson_edges_and_width():
    assert wilson_interval(0, 20)[0] == 0 and wilson_interval(20, 20)[1] == 1
    assert 0 < wilson_interval(0, 20)[1] < 0.2
    narrow, wide = wilson_interval(500, 1000), wilson_interval(5, 10)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(5, 4)


@pytest.mark.parametrize("kind", GROUPS)
def test_prompt_sets(kind):
    prompts = prompt_set(kind, 20, seed=31)
    assert len(prompts) == 20 and prompts == prompt_set(kind, 20, seed=31)
    holdout = {tuple(p.split()) for p in DEFAULT_HOLDOUT}
    for caption, scene in prompts:
        pairs = {(o.colour, o.shape) for o in scene.objects}
        if kind == "single":
            assert len(scene.objects) == 1
        if kind == "relation":
            assert len(scene.objects) == 2
            phrases = [p for words in STYLES["train"].relations.values() for p in words]
            assert any(f" {p} " in caption.text for p in phrases), caption
            assert caption.claims, caption
        assert bool(pairs & holdout) == (kind == "holdout")
    if kind == "paraphrase":  # the same scenes as the training-style world, described in other words
        world = ShapesDataset(length=20, seed=31, label=None)
        assert [s for _, s in prompts] == [world.scene(i) for i in range(20)]
        assert all(c.text != world.describe(i).text for i, (c, _) in enumerate(prompts))


def test_unknown_kind_is_named():
    with pytest.raises(ValueError, match="kind"):
        prompt_set("triple", 3, 0)


def test_renders_match_and_repainted_renders_do_not(reader):
    prompts = prompt_set("paraphrase", 60, seed=77)
    scenes = [s for _, s in prompts]
    palette = ["red", "blue", "yellow", "white", "black", "green"]

    def repaint(scene):  # the first object's colour changed to one far from it (contrast permitting)
        first = scene.objects[0]
        new = next(c for c in palette if c != first.colour)
        return Scene(scene.background, (dataclasses.replace(first, colour=new), *scene.objects[1:]))

    clean = render_scenes(scenes, 32)
    corrupted = render_scenes([repaint(s) for s in scenes], 32)
    read_clean, read_corrupt = read_scenes(reader, clean), read_scenes(reader, corrupted)
    assert sum(matches(r, s) for r, s in zip(read_clean, scenes)) >= 0.95 * len(scenes)
    assert sum(matches(r, s) for r, s in zip(read_corrupt, scenes)) <= 0.05 * len(scenes)


def test_fidelity_report_groups(reader):
    images, scenes, groups = [], [], []
    for kind in ("single", "relation"):
        prompts = prompt_set(kind, 25, seed=5)
        scenes += [s for _, s in prompts]
        groups += [kind] * len(prompts)
    images = render_scenes(scenes, 32)
    noise = torch.rand(10, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    report = fidelity_report(reader, torch.cat([images, noise]), scenes + scenes[:10], groups + ["noise"] * 10)
    assert set(report) == {"single", "relation", "noise", "all"}
    assert report["single"]["total"] == 25 and report["all"]["total"] == 60
    assert report["single"]["fraction"] >= 0.95 and report["relation"]["fraction"] >= 0.9
    assert report["noise"]["fraction"] <= 0.1
    for entry in report.values():  # every image that did not match has one reason
        assert sum(entry["failures"].values()) == entry["total"] - entry["matched"]
    assert report["noise"]["failures"].get("count", 0) >= 5  # noise mostly reads as the wrong number of objects
    entry = report["all"]
    assert entry["low"] <= entry["fraction"] <= entry["high"]
    assert math.isclose(entry["fraction"], entry["matched"] / entry["total"])
    with pytest.raises(ValueError, match="one entry each"):
        fidelity_report(reader, images, scenes[:-1], groups)
