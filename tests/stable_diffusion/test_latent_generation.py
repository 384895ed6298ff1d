"""Latent models in the generation core: sampled in latent space, decoded once; img2img encodes its start image
with the VAE's posterior mean; sizes are in pixels and must be multiples of U-Net factor x VAE factor.
Inpainting with latent models: test_latent_inpainting.py."""

from __future__ import annotations

import json

import pytest
import torch

from tests.stable_diffusion.tiny import IMAGE, generate
from unstatic.models.spec import DiffusionSpec
from unstatic.pipelines.generation import run_generation
from unstatic.sampling.from_model import downsampling_factor, sample_model

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]


def start_image(seed: int) -> torch.Tensor:
    return torch.rand(3, IMAGE, IMAGE, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_txt2img_is_sampling_in_latent_space_then_decoding(loaded):
    model = loaded["sd1"]
    latents = sample_model(model, 1, sampler="euler", steps=3, seed=7, prompts=["a red star above a blue ring"],
                           guidance_scale=4.0, height=IMAGE // 2, width=IMAGE // 2)
    assert latents.shape == (1, 4, IMAGE // 2, IMAGE // 2) and latents.abs().max() > 1  # latents are not clamped
    torch.testing.assert_close(generate(model), (model.decode(latents) + 1) / 2, rtol=0, atol=0)


def test_img2img_with_a_latent_model(loaded):
    model = loaded["sd1"]
    init = start_image(1)
    full = generate(model, init=init, strength=1.0)
    torch.testing.assert_close(full, generate(model), rtol=0, atol=0)  # strength 1 ignores the start image
    untouched = generate(model, init=init, strength=0.0)
    torch.testing.assert_close(untouched, (model.decode(model.encode(init[None])) + 1) / 2, rtol=0, atol=0)
    half, other = generate(model, init=init, strength=0.5), generate(model, init=start_image(2), strength=0.5)
    assert (half - full).abs().max() > 1e-3 and (half - other).abs().max() > 1e-3


def test_encode_uses_the_posterior_mean(loaded):
    model = loaded["sd1"]
    image = start_image(3)[None]
    config = model.vae.config
    expected = model.vae.encode(image).mode() * config.scaling_factor
    torch.testing.assert_close(model.encode(image), expected)
    torch.testing.assert_close(model.encode(image), model.encode(image), rtol=0, atol=0)  # no sampling


def test_sizes_are_in_pixels(loaded):
    model = loaded["sd1"]
    assert downsampling_factor(model) == 4  # U-Net 2 x VAE 2
    assert generate(model, height=IMAGE, width=2 * IMAGE).shape[-2:] == (IMAGE, 2 * IMAGE)
    with pytest.raises(ValueError, match="height must be a positive multiple of 4"):
        run_generation(model, None, "a star", num_inference_steps=1, height=IMAGE + 2, width=IMAGE)


def test_version_1_specs_load_with_pixel_space_defaults():
    old = {"type": "diffusion", "version": 1, "prediction": "eps", "schedule": {"kind": "discrete"}, "image_size": 32}
    spec = DiffusionSpec.from_dict(old)
    assert (spec.latent, spec.clip_skip, spec.default_scheduler, spec.default_guidance) == (False, 1, "", 0.0)
    saved = spec.to_dict()
    assert saved["version"] == 3 and DiffusionSpec.from_dict(json.loads(json.dumps(saved))) == spec
    assert DiffusionSpec(default_scheduler="DDIM").default_scheduler == "ddim_uniform"  # A1111 names resolve
    with pytest.raises(ValueError, match="default_guidance"):
        DiffusionSpec(default_guidance=0.5)
    assert DiffusionSpec(default_guidance_interval=[0.28, 5]).default_guidance_interval == (0.28, 5.0)
    with pytest.raises(ValueError, match="guidance interval"):
        DiffusionSpec(default_guidance_interval=(5, 1))


def test_bf16_weights_computing_in_float32_generate_as_rounded_float32_weights(sd_folders, monkeypatch):
    """On a CPU without bf16 instructions a bf16 model (U-Net, VAE and CLIP) computes in float32: its images are a
    float32 model's whose weights were rounded to bf16, with no autocast around it."""
    from unstatic import cpu_features
    from unstatic.models.stable_diffusion import load_any_model
    from unstatic.networks.narrow_weights import computes_in_float32

    cpu_features.native_bf16.cache_clear()
    monkeypatch.setattr(cpu_features, "_cpu_flags", lambda: {"avx2"})
    narrow = load_any_model(sd_folders["sd1"], dtype=torch.bfloat16).model
    cpu_features.native_bf16.cache_clear()
    assert computes_in_float32(narrow.network) and computes_in_float32(narrow.vae)
    assert computes_in_float32(narrow.text_encoder.model)
    rounded = load_any_model(sd_folders["sd1"]).model
    with torch.no_grad():
        for module in (rounded.network, rounded.vae, rounded.text_encoder.model):
            for p in module.parameters():
                p.copy_(p.bfloat16().float())
    torch.testing.assert_close(generate(narrow), generate(rounded), rtol=0, atol=1e-6)
