"""Inpainting pipeline on tiny models: kept pixels, masks, "only masked", inpainting models, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from tests.editing.tiny import CallCounter, tiny_model
from unstatic.imaging import to_pil
from unstatic.pipelines.inpaint import inpaint, is_inpainting_model
from unstatic.pipelines.masks import feather, fit_mask, load_mask, mask_box, parse_rect, rect_mask
from unstatic.pipelines.source_image import flatten_image
from unstatic.pipelines.txt2img import text_to_image

pytestmark = pytest.mark.usefixtures("single_thread")


def _image(size: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _pixels(result) -> np.ndarray:
    return np.asarray(result.image, dtype=np.int16)


def test_kept_pixels_are_exact_and_masked_ones_change():
    image = _image()
    mask = rect_mask(["2,2,6,6"], 8, 8)
    results = inpaint(tiny_model(), to_pil(image), mask, ["star", "circle"], mask_blur=0, seed=1, num_inference_steps=3,
                      sampler="Euler a", jumps=2, jump_length=1)
    original = np.asarray(to_pil(image), dtype=np.int16)
    keep = ~mask[0].bool().numpy()
    for result in results:
        assert np.array_equal(_pixels(result)[keep], original[keep])
        assert np.abs(_pixels(result)[~keep] - original[~keep]).mean() > 10
    assert "Mask blur: 0, " in results[0].infotext and "Resample jumps: 2, Jump length: 1" in results[0].infotext


def test_feathered_mask_keeps_everything_outside_its_reach():
    image = _image(16)
    mask = rect_mask([(6, 6, 10, 10)], 16, 16)
    result = inpaint(tiny_model(), to_pil(image), mask, "star", mask_blur=1.0, seed=1, num_inference_steps=2)[0]
    untouched = (feather(mask, 1.0)[0] == 0).numpy()
    assert untouched.sum() > 100
    assert np.array_equal(_pixels(result)[untouched], np.asarray(to_pil(image), dtype=np.int16)[untouched])


def test_all_black_mask_returns_the_image_without_a_model_call():
    model = tiny_model()
    counter = CallCounter(model.network)
    image = to_pil(_image(9))  # not even a size the model takes: nothing is run, so nothing is resized
    with pytest.warns(UserWarning, match="all black"):
        results = inpaint(model, image, torch.zeros(1, 9, 9), "star", num_images=2, seed=4)
    assert counter.calls == 0 and len(results) == 2
    assert all(np.array_equal(_pixels(r), np.asarray(image, dtype=np.int16)) for r in results)


def test_all_white_mask_is_txt2img_at_strength_one():
    model = tiny_model()
    painted = inpaint(model, to_pil(_image()), torch.ones(1, 8, 8), "square", seed=6, num_inference_steps=3)[0]
    generated = text_to_image(model, "square", seed=6, num_inference_steps=3)[0]
    assert np.array_equal(_pixels(painted), _pixels(generated))


def test_mask_of_another_size_is_resized_with_a_warning():
    with pytest.warns(UserWarning, match="resizing the mask"):
        result = inpaint(tiny_model(), to_pil(_image()), rect_mask(["0,0,2,4"], 4, 4), "star", mask_blur=0, seed=1,
                         num_inference_steps=2)[0]
    # columns 0-3 repainted; bilinear resizing softens column 4; the rest is kept
    assert np.array_equal(_pixels(result)[:, 5:], np.asarray(to_pil(_image()), dtype=np.int16)[:, 5:])
    assert np.abs(_pixels(result)[:, :4] - np.asarray(to_pil(_image()), dtype=np.int16)[:, :4]).mean() > 10


def test_only_masked_works_at_model_resolution_and_pastes_back():
    model = tiny_model()
    counter = CallCounter(model.network)
    image = _image(24)
    mask = rect_mask(["3,4,7,6"], 24, 24)
    result = inpaint(model, to_pil(image), mask, "star", only_masked=True, padding=2, mask_blur=0, seed=2,
                     num_inference_steps=2)[0]
    assert result.image.size == (24, 24) and "Inpaint area: Only masked" in result.infotext
    assert {shape[-2:] for shape in counter.shapes} == {(8, 8)}  # the crop, resized to the training size
    keep = ~mask[0].bool().numpy()
    assert np.array_equal(_pixels(result)[keep], np.asarray(to_pil(image), dtype=np.int16)[keep])
    assert np.abs(_pixels(result)[~keep] - np.asarray(to_pil(image), dtype=np.int16)[~keep]).mean() > 10


def test_inpainting_model_gets_mask_and_masked_image_channels_under_guidance():
    model = tiny_model(in_channels=7)
    assert is_inpainting_model(model) and not is_inpainting_model(tiny_model())
    counter = CallCounter(model.network)
    results = inpaint(model, to_pil(_image()), rect_mask(["0,0,4,8"], 8, 8), ["star", "circle"], num_images=2,
                      guidance_scale=3.0, seed=1, num_inference_steps=2, mask_blur=0)
    assert len(results) == 4 and counter.shapes[0] == (8, 7, 8, 8)  # 4 images x (cond, uncond); 3 + 1 + 3 channels


def test_image_modes_are_flattened_predictably():
    rgba = Image.new("RGBA", (4, 4), (200, 100, 50, 255))
    rgba.putpixel((0, 0), (255, 255, 255, 0))
    with pytest.warns(UserWarning, match="transparent"):
        flat = flatten_image(rgba, 3)
    assert flat.mode == "RGB" and flat.getpixel((0, 0)) == (0, 0, 0) and flat.getpixel((1, 1)) == (200, 100, 50)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # opaque alpha: no warning
        assert flatten_image(Image.new("RGBA", (2, 2), (1, 2, 3, 255)), 3).getpixel((0, 0)) == (1, 2, 3)
    gray = flatten_image(Image.new("L", (2, 2), 90), 3)
    assert gray.mode == "RGB" and gray.getpixel((0, 0)) == (90, 90, 90)
    palette = Image.new("RGB", (2, 2), (10, 200, 30)).convert("P")
    assert flatten_image(palette, 3).getpixel((1, 1)) == palette.convert("RGB").getpixel((1, 1))
    assert flatten_image(Image.new("RGB", (2, 2), (255, 0, 0)), 1).mode == "L"


def test_rgba_and_grayscale_images_inpaint(tmp_path):
    path = tmp_path / "gray.png"
    Image.new("L", (8, 8), 128).save(path)
    result = inpaint(tiny_model(), path, rect_mask(["0,0,2,2"], 8, 8), "star", seed=1, num_inference_steps=2)[0]
    assert result.image.mode == "RGB" and result.image.size == (8, 8)


def test_masks_from_pngs_and_rectangles(tmp_path):
    png = Image.new("RGBA", (6, 4), (0, 0, 0, 0))
    png.putpixel((1, 2), (255, 255, 255, 255))
    png.save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png")
    assert mask.shape == (1, 4, 6) and mask.sum() == 1 and mask[0, 2, 1] == 1  # transparent counts as keep
    rect = rect_mask(["1,1,3,2", (-5, 3, 100, 100)], 4, 6)
    assert rect.sum() == 2 + 6 and rect[0, 1, 1:3].eq(1).all() and rect[0, 3].eq(1).all()
    assert mask_box(rect) == (0, 1, 6, 4) and mask_box(torch.zeros(1, 4, 6)) is None
    x0, y0, x1, y1 = mask_box(rect_mask(["2,1,3,2"], 10, 10), padding=1, aspect=2.0)
    assert (x1 - x0) == 2 * (y1 - y0) and x0 <= 1 and x1 >= 4
    blurred = feather(rect_mask(["7,7,9,9"], 16, 16), 1.0)  # far from the borders: blurring keeps the mass
    assert torch.allclose(blurred.sum(), torch.tensor(4.0), atol=1e-4) and 0 < blurred.max() < 1


@pytest.mark.parametrize("call, message", [
    (lambda: parse_rect("1,2,3"), "x0,y0,x1,y1"),
    (lambda: parse_rect("4,0,2,3"), "empty"),
    (lambda: rect_mask(["10,10,12,12"], 8, 8), "outside"),
    (lambda: fit_mask(torch.full((1, 2, 2), 2.0), 2, 2), r"\[0, 1\]"),
    (lambda: feather(torch.zeros(1, 2, 2), -1), "mask blur"),
])
def test_bad_masks_are_clear(call, message):
    with pytest.raises(ValueError, match=message):
        call()
