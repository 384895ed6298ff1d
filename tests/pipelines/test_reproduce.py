"""From a parameters text back to text_to_image arguments, and through them to the same image."""

from __future__ import annotations

import numpy as np
import pytest

from tests.pipelines.test_infotext import A1111_TEXT
from tests.pipelines.tiny_models import tiny_model_folder
from unstatic.models import load_diffusion_model
from unstatic.pipelines.reproduce import settings_from_infotext
from unstatic.pipelines.txt2img import text_to_image


def test_a1111_text_to_arguments():
    assert settings_from_infotext(A1111_TEXT) == {
        "prompt": "a cat", "negative_prompt": "ugly, blurry", "num_inference_steps": 20, "guidance_scale": 7.0,
        "seed": 1234, "width": 512, "height": 512, "sampler": "dpmpp_2m", "scheduler": "karras",
        "guidance_interval": (),  # no "Guidance interval": guided at every step, whatever the model's default
    }


@pytest.mark.parametrize("settings, expected", [
    ("Sampler: DPM++ 2M Karras", {"sampler": "dpmpp_2m", "scheduler": "karras"}),  # A1111 before 1.9
    ("Sampler: Euler a, Schedule type: Automatic", {"sampler": "euler_ancestral", "scheduler": None}),
    ("Sampler: DPM++ 2M SDE Karras, Schedule type: Automatic", {"sampler": "dpmpp_2m_sde", "scheduler": "karras"}),
    ("Sampler: DDIM, Schedule type: Sgm_Uniform", {"sampler": "ddim", "scheduler": "sgm_uniform"}),
    ("Size: 768x512", {"width": 768, "height": 512}),  # width first
])
def test_sampler_and_schedule_names(settings, expected):
    arguments = settings_from_infotext(f"p\nSteps: 4, Seed: 2, {settings}")
    assert {key: arguments[key] for key in expected} == expected


def test_overrides_win_and_are_not_read_from_the_text():
    text = "p\nSteps: 4, Sampler: Restart, Seed: 2, Size: 8x8"
    with pytest.raises(ValueError, match="Sampler: 'Restart'"):
        settings_from_infotext(text)
    arguments = settings_from_infotext(text, overrides={"sampler": "heun", "prompt": "q", "width": 16})
    assert (arguments["sampler"], arguments["prompt"], arguments["width"], arguments["height"]) == ("heun", "q", 16, 8)


@pytest.mark.parametrize("setting", ["Size: big", "Steps: many", "Seed: -", "Schedule type: wobbly"])
def test_unreadable_settings_are_named(setting):
    key = setting.split(":")[0]
    with pytest.raises(ValueError, match=f"setting {key}"):
        settings_from_infotext(f"p\nCFG scale: 3, Model: m, {setting}")


def test_settings_outside_the_pipeline_are_ignored():
    arguments = settings_from_infotext("p\nModel: m, Model hash: 1a, Version: v1.9.0, Clip skip: 2")
    assert arguments == {"prompt": "p", "negative_prompt": "", "guidance_interval": ()}


def test_a_guidance_interval_is_read_back_and_a_bad_one_named():
    assert settings_from_infotext("p\nSteps: 2, CFG scale: 4, Guidance interval: 0.28-5.42")["guidance_interval"] == (0.28, 5.42)
    assert settings_from_infotext("p\nSteps: 2, Seed: 1, Guidance interval: 0.5-inf")["guidance_interval"] == (0.5, float("inf"))
    with pytest.raises(ValueError, match="setting Guidance interval"):
        settings_from_infotext("p\nSteps: 2, Seed: 1, Guidance interval: 5-1")


@pytest.mark.parametrize("sampler, scheduler, interval", [("dpmpp_2m", None, None), ("Euler a", "exponential", (0.5, 5)),
                                                          ("heun", "sgm_uniform", ()), ("DPM++ 2M SDE", "polyexponential", None)])
def test_the_image_made_again_is_identical(tmp_path, sampler, scheduler, interval):
    model = load_diffusion_model(tiny_model_folder(tmp_path / "m"))
    first = text_to_image(model, "star", negative_prompt="", sampler=sampler, scheduler=scheduler, guidance_interval=interval,
                          num_inference_steps=3, guidance_scale=2.5, seed=41, height=8, width=16)[0]
    assert ("Guidance interval: 0.5-5," in first.infotext) == (interval == (0.5, 5))
    again = text_to_image(model, **settings_from_infotext(first.infotext))[0]
    assert again.infotext == first.infotext
    assert np.array_equal(np.asarray(again.image), np.asarray(first.image))
