"""Samplers x step counts from one seed, as a grid."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.pipelines.tiny_models import tiny_model_folder
from unstatic.pipelines.compare import compare_samplers
from unstatic.pipelines.txt2img import TextToImagePipeline


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    return TextToImagePipeline.from_folder(tiny_model_folder(tmp_path_factory.mktemp("m") / "m"))


def test_grid_of_samplers_by_step_counts(pipe):
    comparison = compare_samplers(pipe, "star", ["euler", "Euler a", "heun"], [1, 3], seed=9, min_size=32)
    results = comparison.results
    assert len(results) == 3 and all(len(row) == 2 for row in results)
    assert [[r.parameters["Sampler"] for r in row] for row in results] == [["Euler"] * 2, ["Euler a"] * 2, ["Heun"] * 2]
    assert [[r.parameters["Steps"] for r in row] for row in results] == [[1, 3]] * 3
    assert {r.seed for row in results for r in row} == {9}
    # each tile is exactly the image the pipeline makes alone with that sampler, steps and seed
    alone = pipe("star", sampler="heun", num_inference_steps=3, seed=9)[0]
    assert np.array_equal(np.asarray(results[2][1].image), np.asarray(alone.image))
    # first row of the grid: the tiles, enlarged 4x, after 2 pixels of padding
    grid = np.asarray(comparison.grid)
    assert grid.shape[1] == 2 * (32 + 2) + 2
    for column, result in enumerate(results[0]):
        left = 2 + column * 34
        assert np.array_equal(grid[2:34, left:left + 32], np.asarray(result.image.resize((32, 32), Image.NEAREST)))
    # the step count changes the picture; the sampler too
    pixels = [np.asarray(r.image, dtype=int) for r in (results[0][0], results[0][1], results[1][1])]
    assert np.abs(pixels[0] - pixels[1]).max() > 0 and np.abs(pixels[1] - pixels[2]).max() > 0


def test_random_seed_is_shared_and_reported(pipe):
    comparison = compare_samplers(pipe, "circle", ["euler"], [1, 2])
    assert comparison.seed == comparison.results[0][0].seed == comparison.results[0][1].seed


@pytest.mark.parametrize("samplers, steps, message", [
    (["euler", "warp drive"], [2], "warp drive"),
    ([], [2], "at least one"),
    (["euler"], [0], "positive"),
])
def test_bad_requests_fail_before_sampling(pipe, samplers, steps, message):
    calls = []
    with pytest.raises(ValueError, match=message):
        compare_samplers(pipe, "star", samplers, steps, callback=calls.append)
    assert calls == []
