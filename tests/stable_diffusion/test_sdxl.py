"""SDXL (Podell et al. 2023): a tiny random-weight ``StableDiffusionXLPipeline`` saved by diffusers loads from its
folder and from an original-layout single file, generates what diffusers' pipeline generates, and converts
between every format bit-identically.

Parity: same weights, prompt, guidance, steps and start latents (our seed's noise, passed to diffusers as
``latents=`` divided by its ``init_noise_sigma``), Euler on both sides, compared on the float images before 8-bit
quantisation. Tolerance 1e-5 max absolute pixel difference in [0, 1] (measured 1.9e-6 with the zeroed empty
negative, 3.0e-6 with a negative prompt), as for SD 1.x: the same eps prediction and leading spacing; a wrong size/crop condition, pooled embedding or negative
branch moves pixels by 1e-3 and more (checked below)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.stable_diffusion.tiny import IMAGE, LATENT, diffusers, generate, tiny_sdxl_pipeline
from unstatic.core.spacings import get_sigmas
from unstatic.models.conditioning import Conditioner
from unstatic.models.stable_diffusion import convert_model, load_any_model, model_format
from unstatic.models.stable_diffusion.single_file import save_single_file
from unstatic.sampling.noise import generators_from_seeds, randn_per_sample
from unstatic.text.sdxl import SDXLTextEncoder

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]
convert = pytest.importorskip("diffusers.loaders.single_file_utils")
TOLERANCE = 1e-5
SEED, STEPS, GUIDANCE, PROMPT = 7, 3, 4.0, "a red star above a blue ring"


@pytest.fixture(scope="module")
def sdxl(loaded):
    return loaded["sdxl"]


@pytest.fixture(scope="module")
def foreign_file(sdxl, tmp_path_factory):
    """An SDXL single file as other tools write it: original keys only, no unstatic metadata."""
    root = tmp_path_factory.mktemp("sdxl_single")
    path = root / "sdxl.safetensors"
    save_file(load_file(save_single_file(sdxl, root / "ours.safetensors")), path)
    return path


def diffusers_images(folder, model, height: int = IMAGE, width: int = IMAGE, **options) -> torch.Tensor:
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler.set_timesteps(STEPS)
    shape = (1, 4, height // (IMAGE // LATENT), width // (IMAGE // LATENT))
    noise = randn_per_sample(shape, generators_from_seeds([SEED]))
    first_sigma = get_sigmas(model.spec.default_scheduler, STEPS, model.spec.build_schedule())[0]
    latents = (noise.double() * first_sigma / float(pipe.scheduler.init_noise_sigma)).float()
    images = pipe(PROMPT, num_inference_steps=STEPS, guidance_scale=GUIDANCE, latents=latents, output_type="np",
                  height=height, width=width, **options).images
    return torch.from_numpy(images).permute(0, 3, 1, 2)


def test_folder_loads_as_sdxl(sdxl):
    spec, config = sdxl.spec, sdxl.network.config
    assert (spec.text_encoder, spec.prediction, spec.default_scheduler, spec.image_size) == ("sdxl_clip", "eps", "ddim_uniform", LATENT)
    assert (config.addition_embed_type, config.addition_time_embed_dim, config.cross_attention_dim) == ("text_time", 8, 192)
    assert isinstance(sdxl.text_encoder, SDXLTextEncoder) and sdxl.text_encoder.zero_empty_negative
    assert sdxl.vae.config.scaling_factor == 0.13025


def test_text_encoding_matches_diffusers(sd_folders, sdxl):
    """Context: both encoders' hidden_states[-2] side by side; pooled: the second's projection."""
    pipe = diffusers.StableDiffusionXLPipeline.from_pretrained(sd_folders["sdxl"], local_files_only=True)
    context, _, pooled, _ = pipe.encode_prompt([PROMPT, ""], do_classifier_free_guidance=False)
    ours = sdxl.text_encoder.encode([PROMPT, ""])
    torch.testing.assert_close(ours.context, context, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.pooled, pooled, rtol=0, atol=1e-6)
    negative = Conditioner.for_model(sdxl).negative(["", ""], size=(IMAGE, 2 * IMAGE))
    assert not negative["context"].any() and not negative["added"]["text_embeds"].any()  # force_zeros_for_empty_prompt
    assert negative["added"]["time_ids"].tolist() == [[IMAGE, 2 * IMAGE, 0, 0, IMAGE, 2 * IMAGE]] * 2


@pytest.mark.parametrize("negative", ["", "a green heart"])
def test_txt2img_matches_diffusers(negative, sd_folders, sdxl):
    ours = generate(sdxl, seed=SEED, steps=STEPS, guidance=GUIDANCE, prompt=PROMPT, negative_prompt=negative)
    # diffusers zeroes the negative branch only when no negative prompt is given at all
    reference = diffusers_images(sd_folders["sdxl"], sdxl, negative_prompt=negative or None)
    assert ours.shape == reference.shape == (1, 3, IMAGE, IMAGE)
    assert 0.05 < reference.std() and ((reference > 0) & (reference < 1)).float().mean() > 0.9  # not saturated
    error = float((ours - reference).abs().max())
    assert error <= TOLERANCE, f"max |ours - diffusers| = {error:.2e}"


def test_size_conditioning_follows_the_image(sd_folders, sdxl):
    """A non-square image is conditioned on its own (H, W), as diffusers does; other numbers change the image."""
    ours = generate(sdxl, seed=SEED, steps=STEPS, guidance=GUIDANCE, prompt=PROMPT, height=IMAGE, width=2 * IMAGE)
    reference = diffusers_images(sd_folders["sdxl"], sdxl, width=2 * IMAGE)
    assert float((ours - reference).abs().max()) <= TOLERANCE
    other = diffusers_images(sd_folders["sdxl"], sdxl, width=2 * IMAGE, original_size=(4 * IMAGE, 4 * IMAGE))
    assert float((ours - other).abs().max()) > 1e-3


def test_mapping_agrees_with_diffusers_converters(sd_folders, foreign_file):
    """diffusers' own converters turn our original-key file back into exactly the diffusers weights."""
    pipe = tiny_sdxl_pipeline()
    tensors = load_file(foreign_file)
    assert any(k.startswith("model.diffusion_model.label_emb.0.0.") for k in tensors)
    for name, converted, module in (("unet", convert.convert_ldm_unet_checkpoint(tensors, pipe.unet.config), pipe.unet),
                                    ("vae", convert.convert_ldm_vae_checkpoint(tensors, pipe.vae.config), pipe.vae)):
        expected = module.state_dict()
        assert set(converted) == set(expected), name
        for key, value in expected.items():
            assert torch.equal(converted[key].reshape(value.shape), value), f"{name}: {key}"
    first = convert.convert_ldm_clip_checkpoint(tensors, remove_prefix="conditioner.embedders.0.transformer.")
    second = convert.convert_open_clip_checkpoint(pipe.text_encoder_2, tensors, prefix="conditioner.embedders.1.model.")
    for converted, module in ((first, pipe.text_encoder), (second, pipe.text_encoder_2)):
        expected = {k.removeprefix("text_model."): v for k, v in module.state_dict().items() if "position_ids" not in k}
        converted = {k.removeprefix("text_model."): v for k, v in converted.items()}
        for key, value in expected.items():
            assert torch.equal(converted[key], value), key


def test_single_file_generates_what_the_folder_does(sd_folders, sdxl, foreign_file):
    """Read with nothing but the tensors (and the folder's two tokenizers): architecture, VAE scale and SDXL's
    added conditioning are inferred, and the images are bit-identical."""
    model = load_any_model(foreign_file, tokenizer=sd_folders["sdxl"]).model
    assert model.spec == replace(sdxl.spec, image_size=128)  # a file cannot say; 1024 px is SDXL's own size
    assert model.network.config == replace(sdxl.network.config, sample_size=128)
    assert model.vae.config.scaling_factor == 0.13025
    torch.testing.assert_close(generate(model), generate(sdxl), rtol=0, atol=0)
    # one tokenizer folder: the second is the same vocabulary padded with "!", as OpenCLIP pads
    single = load_any_model(foreign_file, tokenizer=sd_folders["sdxl"] / "tokenizer").model
    assert single.text_encoder.second.tokenizer.pad_token == "!"
    torch.testing.assert_close(generate(single), generate(sdxl), rtol=0, atol=0)


def test_round_trip_through_every_format(sd_folders, sdxl, tmp_path):
    reference = generate(sdxl)
    ours, single, back = tmp_path / "ours", tmp_path / "model.safetensors", tmp_path / "diffusers"
    convert_model(sd_folders["sdxl"], ours, "unstatic")
    convert_model(ours, single, "single-file")
    convert_model(single, back, "diffusers")
    for path, kind in ((ours, "unstatic"), (single, "single-file"), (back, "diffusers")):
        assert model_format(path) == kind
        model = load_any_model(path).model
        assert model.spec == sdxl.spec, kind
        torch.testing.assert_close(generate(model), reference, rtol=0, atol=0, msg=kind)
    index = json.loads((back / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline" and index["force_zeros_for_empty_prompt"] is True
    diffusers.StableDiffusionXLPipeline.from_pretrained(back, local_files_only=True)  # diffusers reads it too


def test_encoded_empty_negative_survives_conversion(sd_folders, tmp_path):
    """force_zeros_for_empty_prompt false: the empty negative prompt is encoded, in every format."""
    folder = tmp_path / "encoded"
    pipe = tiny_sdxl_pipeline()
    pipe.register_to_config(force_zeros_for_empty_prompt=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    model = load_any_model(folder).model
    assert not model.text_encoder.zero_empty_negative
    assert Conditioner.for_model(model).negative([""])["context"].abs().sum() > 0
    reference = generate(model)
    torch.testing.assert_close(reference, diffusers_images(folder, model, negative_prompt=""), rtol=0, atol=TOLERANCE)
    for kind, path in (("unstatic", tmp_path / "ours"), ("single-file", tmp_path / "x.safetensors"), ("diffusers", tmp_path / "d")):
        convert_model(folder, path, kind)
        loaded = load_any_model(path).model
        assert not loaded.text_encoder.zero_empty_negative, kind
        torch.testing.assert_close(generate(loaded), reference, rtol=0, atol=0, msg=kind)


@pytest.mark.parametrize("drop, message", [
    ("conditioner.embedders.0.", r"holds no first SDXL text encoder \(CLIP ViT-L, conditioner\.embedders\.0\.transformer\.\*"),
    ("conditioner.embedders.1.", r"holds no second SDXL text encoder \(OpenCLIP ViT-bigG"),
    ("conditioner.embedders.1.model.text_projection", r"missing tensor conditioner\.embedders\.1\.model\.text_projection"),
    ("model.diffusion_model.label_emb.0.2.weight", r"missing tensors: model\.diffusion_model\.label_emb\.0\.2\.weight"),
    ("model.diffusion_model.label_emb.0.0.weight", r"missing tensor model\.diffusion_model\.label_emb\.0\.0\.weight"),
])
def test_missing_text_encoder_or_tensor_is_named(drop, message, foreign_file, sd_folders, tmp_path):
    tensors = load_file(foreign_file)
    path = tmp_path / "broken.safetensors"
    save_file({k: v for k, v in tensors.items() if not k.startswith(drop)}, path)
    with pytest.raises(ValueError, match=rf"{path}.*{message}" if "label_emb.0.2" in drop else rf"{path}.* ?{message}"):
        load_any_model(path, tokenizer=sd_folders["sdxl"])


def test_two_tokenizers_are_needed(foreign_file):
    with pytest.raises(FileNotFoundError, match=rf"{foreign_file} holds no tokenizer; pass --tokenizer"):
        load_any_model(foreign_file)
