"""Our txt2img on a diffusers-format folder equals diffusers' StableDiffusionPipeline on the same folder: same
weights, prompt, negative prompt, guidance, steps and start latents (our seed's noise, passed to diffusers as
``latents=`` divided by its ``init_noise_sigma``), Euler sampling on both sides, compared on the float images
before 8-bit quantisation (diffusers' ``output_type="np"``).

Tolerance (max absolute difference of pixel values in [0, 1]): 1e-5 for SD 1.x-style eps with leading spacing
(measured 2e-6). 1e-4 for SD 2.x-style v prediction with trailing spacing and zero terminal SNR (measured 5e-5):
there the first noise level is sigma = 4096 and diffusers keeps that sample in float32, whose spacing at 4096 is
4.9e-4, while we work in the sigma frame with float64 sigmas. A wrong spacing, prediction kind or guidance
formula changes pixels by 1e-2 and more."""

from __future__ import annotations

import pytest
import torch

from tests.stable_diffusion.tiny import IMAGE, LATENT, diffusers, generate
from unstatic.core.spacings import get_sigmas
from unstatic.sampling.noise import generators_from_seeds, randn_per_sample

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]
TOLERANCE = {"sd1": 1e-5, "sd2": 1e-4}
SEED, STEPS, GUIDANCE, PROMPT = 7, 3, 4.0, "a red star above a blue ring"


def diffusers_images(folder, model, negative: str = "") -> torch.Tensor:
    pipe = diffusers.StableDiffusionPipeline.from_pretrained(folder, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler.set_timesteps(STEPS)
    noise = randn_per_sample((1, 4, LATENT, LATENT), generators_from_seeds([SEED]))
    first_sigma = get_sigmas(model.spec.default_scheduler, STEPS, model.spec.build_schedule())[0]
    latents = (noise.double() * first_sigma / float(pipe.scheduler.init_noise_sigma)).float()
    images = pipe(PROMPT, negative_prompt=negative, num_inference_steps=STEPS, guidance_scale=GUIDANCE, latents=latents,
                  output_type="np", height=IMAGE, width=IMAGE).images
    return torch.from_numpy(images).permute(0, 3, 1, 2)


def test_scheduler_config_mapping(loaded):
    sd1, sd2 = loaded["sd1"].spec, loaded["sd2"].spec
    assert (sd1.prediction, sd1.default_scheduler, sd1.schedule.zero_terminal_snr) == ("eps", "ddim_uniform", False)
    assert (sd2.prediction, sd2.default_scheduler, sd2.schedule.zero_terminal_snr) == ("v", "trailing", True)
    for spec in (sd1, sd2):
        assert spec.latent and spec.text_encoder == "clip" and spec.channels == 4 and spec.image_size == LATENT
        assert (spec.schedule.beta_schedule, spec.schedule.beta_start, spec.schedule.beta_end) == ("scaled_linear", 0.00085, 0.012)


@pytest.mark.parametrize("family", ["sd1", "sd2"])
def test_txt2img_matches_diffusers(family, sd_folders, loaded):
    model = loaded[family]
    ours = generate(model, seed=SEED, steps=STEPS, guidance=GUIDANCE, prompt=PROMPT)
    reference = diffusers_images(sd_folders[family], model)
    assert ours.shape == reference.shape == (1, 3, IMAGE, IMAGE)
    assert 0.05 < reference.std() and ((reference > 0) & (reference < 1)).float().mean() > 0.9  # not saturated
    error = float((ours - reference).abs().max())
    assert error <= TOLERANCE[family], f"{family}: max |ours - diffusers| = {error:.2e}"


def test_negative_prompt_matches_diffusers(sd_folders, loaded):
    model = loaded["sd1"]
    ours = generate(model, seed=SEED, steps=STEPS, guidance=GUIDANCE, prompt=PROMPT, negative_prompt="a green heart")
    reference = diffusers_images(sd_folders["sd1"], model, negative="a green heart")
    assert float((ours - reference).abs().max()) <= TOLERANCE["sd1"]
    assert float((ours - generate(model, seed=SEED, steps=STEPS, guidance=GUIDANCE, prompt=PROMPT)).abs().max()) > 1e-3
