"""Editing real photographs (scikit-learn ships two offline: china.jpg and flower.jpg, 427x640 RGB): sizes the
model's factor does not divide, only-masked mode on a large image, and outpainting, with a tiny model."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from tests.editing.tiny import tiny_model
from unstatic.pipelines.img2img import image_to_image
from unstatic.pipelines.inpaint import inpaint
from unstatic.pipelines.masks import rect_mask
from unstatic.pipelines.outpaint import outpaint

datasets = pytest.importorskip("sklearn.datasets")
pytestmark = pytest.mark.usefixtures("single_thread")
OPTIONS = dict(num_inference_steps=2, seed=0, guidance_scale=1.0)


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    return Image.fromarray(datasets.load_sample_image("china.jpg")).reduce(8)  # 80x54: odd height on purpose


def test_strength_zero_returns_the_photo_and_odd_sizes_are_rounded_with_a_warning(photo):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 80x54 suits the model (factor 2): no warning, the same pixels back
        same = image_to_image(tiny_model(), photo, "circle", strength=0.0, **OPTIONS)[0].image
    assert np.array_equal(np.asarray(same), np.asarray(photo))
    with pytest.warns(UserWarning, match="multiple"):
        odd = image_to_image(tiny_model(), photo.crop((0, 0, 79, 53)), "circle", strength=0.0, **OPTIONS)[0].image
    assert odd.size[0] % 2 == 0 and odd.size[1] % 2 == 0


def test_only_masked_on_a_photo_keeps_every_pixel_outside_the_mask(photo):
    mask = rect_mask([(30, 20, 46, 36)], photo.height, photo.width)
    out = inpaint(tiny_model(), photo, mask, "star", only_masked=True, padding=4, mask_blur=0, **OPTIONS)[0].image
    before, after = np.asarray(photo, dtype=np.int16), np.asarray(out, dtype=np.int16)
    outside = mask[0].numpy() == 0
    assert out.size == photo.size
    assert np.array_equal(before[outside], after[outside])
    assert np.abs(before[~outside] - after[~outside]).mean() > 5  # the masked box was repainted


def test_outpainting_a_photo_grows_it_and_keeps_the_middle(photo):
    out = outpaint(tiny_model(), photo, "square", right=16, bottom=10, mask_blur=1, overlap=0, **OPTIONS)[0].image
    assert out.size == (96, 64)
    before, after = np.asarray(photo, dtype=np.int16), np.asarray(out, dtype=np.int16)[:54, :80]
    assert np.array_equal(before[:50, :76], after[:50, :76])  # away from the feathered border: untouched
