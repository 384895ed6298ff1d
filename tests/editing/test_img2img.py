"""img2img: where on the schedule it starts, what ``steps`` counts, and the pipeline's edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.editing.tiny import CallCounter, tiny_model
from unstatic.core.spacings import get_sigmas
from unstatic.imaging import from_pil
from unstatic.pipelines.img2img import image_to_image
from unstatic.pipelines.txt2img import text_to_image
from unstatic.sampling.from_model import sample_model
from unstatic.sampling.img2img import STEP_CONVENTIONS, img2img_sigmas, img2img_steps
from unstatic.sampling.resample import resampled_step_count

pytestmark = pytest.mark.usefixtures("single_thread")


def _image(seed: int = 0, size: int = 8) -> torch.Tensor:
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("steps", [1, 3, 20, 50])
@pytest.mark.parametrize("strength", [0.05, 0.3, 0.5, 0.75, 0.999])
def test_step_conventions_run_what_they_promise(steps, strength):
    full, run = img2img_steps(steps, strength, "run")
    # the longest full schedule of which the run part is still at least ``strength``
    assert run == steps and full >= steps and run / (full + 1) < strength <= run / full + 1e-12
    full, run = img2img_steps(steps, strength, "a1111")
    assert full == steps and run == int(min(strength, 0.999) * steps) + 1
    full, run = img2img_steps(steps, strength, "diffusers")
    assert full == steps and run == max(1, int(steps * strength))


@pytest.mark.parametrize("convention", STEP_CONVENTIONS)
def test_strength_ends(convention):
    assert img2img_steps(20, 0.0, convention)[1] == 0
    assert img2img_steps(20, 1.0, convention) == (20, 20)
    schedule = tiny_model().spec.build_schedule()
    sub = img2img_sigmas(lambda n: get_sigmas("karras", n, schedule), 20, 0.5, convention)
    full, run = img2img_steps(20, 0.5, convention)
    assert torch.equal(sub, get_sigmas("karras", full, schedule)[full - run :]) and len(sub) == run + 1


@pytest.mark.parametrize("convention", STEP_CONVENTIONS)
def test_model_calls_match_the_convention(convention):
    """One network call per Euler step: the count is the number of steps the convention says are run."""
    model = tiny_model("none")
    counter = CallCounter(model.network)
    sample_model(model, 2, sampler="euler", steps=10, init=_image(), strength=0.4, steps_convention=convention)
    assert counter.calls == img2img_steps(10, 0.4, convention)[1]


def test_resampling_runs_the_counted_steps():
    model = tiny_model("none")
    counter = CallCounter(model.network)
    seen = []
    sample_model(model, 1, sampler="euler", steps=7, jumps=3, jump_length=2, callback=lambda info: seen.append(info.step))
    assert counter.calls == resampled_step_count(7, 3, 2) == 3 * 2 * 3 + 1
    assert seen == list(range(counter.calls))  # global step numbers for progress bars


def test_strength_zero_returns_the_input_without_a_model_call():
    model = tiny_model()
    counter = CallCounter(model.network)
    image = _image()
    result = image_to_image(model, image, "star", strength=0.0, seed=1)[0]
    assert counter.calls == 0
    assert (from_pil(result.image) - image).abs().max() <= 1 / 255  # 8-bit rounding only


def test_strength_one_is_txt2img_with_the_same_seed():
    model = tiny_model()
    a = sample_model(model, 2, labels=[1, 2], steps=3, seed=5, init=_image(1), strength=1.0, guidance_scale=2.0)
    b = sample_model(model, 2, labels=[1, 2], steps=3, seed=5, init=_image(2), strength=1.0, guidance_scale=2.0)
    c = sample_model(model, 2, labels=[1, 2], steps=3, seed=5, guidance_scale=2.0)
    assert torch.equal(a, b) and torch.equal(a, c)
    via_pipeline = image_to_image(model, _image(3), "square", strength=1.0, seed=9, num_inference_steps=3)[0]
    txt = text_to_image(model, "square", seed=9, num_inference_steps=3)[0]
    assert np.array_equal(np.asarray(via_pipeline.image), np.asarray(txt.image))


def test_low_strength_stays_near_the_input_and_high_strength_does_not():
    model, image = tiny_model(), _image()
    near = sample_model(model, 4, labels=[0] * 4, steps=4, init=image, strength=0.05)
    far = sample_model(model, 4, labels=[0] * 4, steps=4, init=image, strength=1.0)
    assert (near - image).abs().mean() < 0.1 < (far - image).abs().mean()


def test_parameters_and_sizes():
    result = image_to_image(tiny_model(), _image(size=16), "circle", strength=0.6, seed=3, num_inference_steps=2,
                            steps_convention="a1111", model_name="tiny")[0]
    assert result.image.size == (16, 16)
    assert "Denoising strength: 0.6, Steps convention: a1111" in result.infotext
    with pytest.warns(UserWarning, match="not a multiple"):
        odd = image_to_image(tiny_model(), _image(size=11), "circle", strength=0.5, seed=3, num_inference_steps=2)[0]
    assert odd.image.size == (12, 12)
    resized = image_to_image(tiny_model(), _image(size=16), "circle", strength=0.5, num_inference_steps=2, width=8)[0]
    assert resized.image.size == (8, 16)


@pytest.mark.parametrize("call, message", [
    (lambda m: image_to_image(m, _image(), "star", strength=1.5), "strength"),
    (lambda m: image_to_image(m, _image(), "star", strength=0.5, steps_convention="most"), "steps convention"),
    (lambda m: image_to_image(m, torch.zeros(1, 8, 8), "star"), r"\[3, H, W\]"),
    (lambda m: sample_model(m, 1, labels=[0], strength=0.5), "needs a start image"),
])
def test_bad_requests_are_clear(call, message):
    with pytest.raises(ValueError, match=message):
        call(tiny_model())
