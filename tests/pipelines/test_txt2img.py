"""The text-to-image pipeline on tiny random-weight models: seeds, batching, metadata, errors."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from tests.training.tiny import TINY_UNET
from unstatic.models import DiffusionModel, DiffusionSpec, load_diffusion_model, save_diffusion_model
from unstatic.networks import UNet, UNetConfig
from unstatic.pipelines.txt2img import TextToImagePipeline, text_to_image


def _model(conditioning: str = "class") -> DiffusionModel:
    torch.manual_seed(0)
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY_UNET.items()}
    if conditioning == "class":
        options.update(class_embed_type="embedding", num_class_embeds=4)
    network = UNet(UNetConfig(in_channels=3, out_channels=3, **options)).eval()
    spec = DiffusionSpec(image_size=8, conditioning=conditioning, num_classes=3 if conditioning == "class" else 0,
                         class_names=("circle", "square", "star") if conditioning == "class" else ())
    return DiffusionModel(network, spec)


def test_seeds_make_each_image_reproducible_alone():
    model = _model()
    batch = text_to_image(model, ["star", "circle"], num_images=2, seed=10, num_inference_steps=3)
    assert [r.seed for r in batch] == [10, 11, 12, 13] and [r.prompt for r in batch] == ["star", "star", "circle", "circle"]
    alone = text_to_image(model, "circle", seed=13, num_inference_steps=3)[0]
    pixels = [np.asarray(r.image, dtype=np.int16) for r in (alone, batch[3], batch[0], batch[1])]
    assert np.abs(pixels[0] - pixels[1]).max() <= 1  # same picture, up to rounding to 8 bits
    assert np.abs(pixels[2] - pixels[3]).max() > 10  # different seeds, different pictures


@pytest.mark.parametrize(("model_default", "given", "used"), [(0.0, None, 5), (3.0, None, 3), (3.0, 1.5, 1.5)])
def test_guidance_defaults_to_the_models_own_then_to_5(model_default, given, used):
    model = _model()
    model = DiffusionModel(model.network, dataclasses.replace(model.spec, default_guidance=model_default))
    result = text_to_image(model, "square", seed=7, num_inference_steps=1, guidance_scale=given)[0]
    assert f"CFG scale: {used:g}," in result.infotext


def test_png_carries_a1111_parameters(tmp_path):
    result = text_to_image(_model(), "square", negative_prompt="", seed=7, num_inference_steps=2,
                           sampler="Euler a", scheduler="exponential", guidance_scale=3.5, model_name="tiny")[0]
    path = result.save(tmp_path / "out.png")
    text = Image.open(path).text["parameters"]
    assert text.splitlines()[0] == "square"
    assert "Steps: 2, Sampler: Euler a, Schedule type: Exponential, CFG scale: 3.5, Size: 8x8, Model: tiny, Seed: 7" in text


def test_random_seed_is_reported_and_sizes_follow_the_request():
    results = text_to_image(_model(), "star", num_inference_steps=2, height=16, width=8)
    assert 0 <= results[0].seed < 2**32 and results[0].image.size == (8, 16)


def test_pipeline_object_from_a_folder(tmp_path):
    model = _model("none")
    save_diffusion_model(model.network, model.spec, tmp_path / "m")
    pipe = TextToImagePipeline.from_folder(tmp_path / "m")
    images = pipe("", num_images=3, num_inference_steps=2, seed=1)
    assert len(images) == 3 and images[0].parameters["Model"] == "m"
    assert load_diffusion_model(tmp_path / "m").spec == model.spec
    digest = hashlib.sha256((tmp_path / "m" / "unet" / "model.safetensors").read_bytes()).hexdigest()
    assert "Model hash: " + digest[:10] in images[0].infotext  # as A1111 writes its checkpoints' short hash


@pytest.mark.parametrize("call, message", [
    (lambda m: text_to_image(m, "hexagon", num_inference_steps=2), "unknown class 'hexagon'"),
    (lambda m: text_to_image(m, [], num_inference_steps=2), "no prompt"),
    (lambda m: text_to_image(m, "star", num_images=0), "num_images"),
    (lambda m: text_to_image(m, "star", seed=-1), "seed"),
    (lambda m: text_to_image(m, "star", height=7, num_inference_steps=2), "multiples of 2"),
    (lambda m: text_to_image(m, "star", sampler="warp drive"), "warp drive"),
])
def test_bad_requests_are_clear(call, message):
    with pytest.raises(ValueError, match=message):
        call(_model())


def test_unconditional_model_refuses_a_prompt():
    with pytest.raises(ValueError, match="unconditional"):
        text_to_image(_model("none"), "a red star", num_inference_steps=2)
