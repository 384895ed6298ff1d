"""Recording the reverse process through the sampler callback, and the GIF and filmstrip made of it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from tests.pipelines.tiny_models import tiny_model_folder
from unstatic.imaging import to_pil
from unstatic.models import load_diffusion_model
from unstatic.pipelines.trajectory import (
    TrajectoryRecorder,
    filmstrip_columns,
    filmstrip_path,
    write_filmstrip,
    write_gif,
)
from unstatic.pipelines.txt2img import text_to_image


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_diffusion_model(tiny_model_folder(tmp_path_factory.mktemp("m") / "m"))


def _record(model, steps=5, index=0, **options):
    infos = []
    recorder = TrajectoryRecorder(index=index, then=infos.append)
    results = text_to_image(model, ["star", "circle"], num_inference_steps=steps, seed=3, callback=recorder, **options)
    return recorder, infos, results


def test_one_frame_per_step_of_the_chosen_image(model):
    recorder, infos, results = _record(model, steps=5, index=1)
    assert [f.step for f in recorder.frames] == list(range(5)) and len(infos) == 5
    for frame, info in zip(recorder.frames, infos):
        # the noisy state is x at sigma_next in the variance-preserving frame; the estimate is unscaled
        torch.testing.assert_close(frame.noisy, (info.x[1] / math.sqrt(1 + info.sigma_next**2)).clamp(-1, 1))
        torch.testing.assert_close(frame.clean, info.denoised[1].clamp(-1, 1))
    last = recorder.frames[-1]
    assert last.sigma_next == 0 and to_pil(last.noisy) == results[1].image  # ends at the image itself
    assert recorder.frames[0].noisy.std() > 0.4  # starts as static


def test_the_callback_after_it_can_stop_sampling(model):
    recorder = TrajectoryRecorder(then=lambda info: info.step == 1)
    text_to_image(model, "star", num_inference_steps=6, seed=1, callback=recorder)
    assert len(recorder.frames) == 2


def test_gif_has_a_frame_per_step_noisy_beside_clean(model, tmp_path):
    recorder, _, _ = _record(model, steps=4)
    path = write_gif(recorder.frames, tmp_path / "t.gif", frame_ms=50, hold_ms=900, min_size=128)
    with Image.open(path) as gif:
        assert gif.n_frames == 4 and gif.info["loop"] == 0
        # two 8x8 tiles enlarged 16x to 128, with image_grid's 2-pixel padding; captions below
        assert gif.width == 2 * (128 + 2) + 2 and gif.height > 128 + 4
        gif.seek(3)
        assert gif.info["duration"] == 900
        last = np.asarray(gif.convert("RGB"))
    final = recorder.frames[-1]
    # the left tile is the finished image: compare at tile centres, as GIF palettes may shift colours a little
    centres = last[2 + 8:2 + 128:16, 2 + 8:2 + 128:16].astype(int)
    expected = np.asarray(to_pil(final.noisy).convert("RGB")).astype(int)
    assert np.abs(centres - expected).mean() < 8


def test_filmstrip_rows_are_noisy_and_clean_at_subsampled_steps(model, tmp_path):
    recorder, _, results = _record(model, steps=15, sampler="euler")
    path = write_filmstrip(recorder.frames, tmp_path / "t.png", max_columns=6, min_size=32)
    columns = filmstrip_columns(15, 6)
    strip = np.asarray(Image.open(path).convert("RGB"))
    assert strip.shape[1] == 6 * (32 + 2) + 2
    for column, index in enumerate(columns):
        left = 2 + column * (32 + 2)
        tile = strip[2:34:4, left:left + 32:4]  # 8x8 image enlarged 4x
        assert np.array_equal(tile, np.asarray(to_pil(recorder.frames[index].noisy).convert("RGB")))
    assert np.array_equal(strip[2:34:4, 2 + 5 * 34:2 + 5 * 34 + 32:4], np.asarray(results[0].image))


@pytest.mark.parametrize("count, most, expected", [(5, 12, [0, 1, 2, 3, 4]), (20, 12, None), (100, 4, [0, 33, 66, 99])])
def test_filmstrip_columns(count, most, expected):
    columns = filmstrip_columns(count, most)
    assert columns[0] == 0 and columns[-1] == count - 1 and len(columns) == min(count, most)
    assert all(b > a for a, b in zip(columns, columns[1:]))
    if expected is not None:
        assert columns == expected


def test_writers_need_frames(tmp_path):
    with pytest.raises(ValueError, match="callback"):
        write_gif([], tmp_path / "t.gif")
    assert filmstrip_path(tmp_path / "out.gif") == tmp_path / "out-filmstrip.png"
