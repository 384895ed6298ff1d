"""Inpainting with latent models (Rombach et al. 2022, Sec. 4.5): the known region is imposed on the latents of the
image (VAE posterior mean), masks are brought to the latent grid, an inpainting U-Net is shown the latents of the
masked image, and the kept pixels are blended back after decoding.

Parity with diffusers' ``StableDiffusionInpaintPipeline`` on the same tiny folders, Euler on both sides:
- an ordinary U-Net, img2img-style start (strength 0.75) with a mask on the latent grid: diffusers re-noises the
  known latents after every step with the same noise, which is what our known-region denoiser leaves in ``x`` for
  a deterministic sampler, so the repainted pixels agree (tolerance 1e-5, measured 3.5e-6);
- a 9-channel inpainting U-Net with the whole image masked at strength 1: the channel order ``[x, mask,
  masked-image latents]`` and the masked image's encoding (tolerance 1e-5, measured 3.5e-6).
diffusers encodes start images by *sampling* the VAE posterior; we take its mean (deterministic, as A1111's
img2img does), so the reference pipeline's encoder is given the mean too. Partial masks with an inpainting U-Net
differ by design: we also keep the known region in the clean estimate (as A1111 does), diffusers does not."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from tests.stable_diffusion.tiny import IMAGE, LATENT, diffusers
from unstatic.core.spacings import get_sigmas
from unstatic.networks.cpu_kernel import native_library
from unstatic.pipelines.inpaint import inpaint_tensors, is_inpainting_model, latent_masks
from unstatic.pipelines.source_image import image_tensor
from unstatic.sampling.noise import generators_from_seeds, randn_per_sample

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.filterwarnings("ignore::FutureWarning")]
TOLERANCE = 1e-5
SEED, STEPS, GUIDANCE, PROMPT = 7, 4, 4.0, "a red star above a blue ring"


def photo(seed: int = 0) -> Image.Image:
    """A smooth random picture (so the tiny VAE's reconstruction is not all noise)."""
    coarse = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(seed))
    smooth = torch.nn.functional.interpolate(coarse, size=(IMAGE, IMAGE), mode="bilinear", align_corners=False)[0]
    return Image.fromarray((smooth.permute(1, 2, 0) * 255).round().byte().numpy())


def left_half(width: int = IMAGE // 2) -> torch.Tensor:
    """``[1, H, W]``: 1 (repaint) on the left ``width`` columns, on the latent grid when ``width`` is even."""
    mask = torch.zeros(1, IMAGE, IMAGE)
    mask[..., :width] = 1
    return mask


def ours(model, image: Image.Image, mask: torch.Tensor, strength: float) -> torch.Tensor:
    images, *_ = inpaint_tensors(model, image_tensor(image, 3), mask, mask, PROMPT, num_inference_steps=STEPS,
                                 guidance_scale=GUIDANCE, sampler="euler", seed=SEED, strength=strength,
                                 steps_convention="diffusers")
    return (images + 1) / 2


def reference(folder, model, image: Image.Image, mask: torch.Tensor, strength: float) -> torch.Tensor:
    pipe = diffusers.StableDiffusionInpaintPipeline.from_pretrained(folder, local_files_only=True, safety_checker=None,
                                                                    requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    scale = pipe.vae.config.scaling_factor
    # diffusers' image processor hands the VAE a channels-last view, and on channels-last maps PyTorch's CPU
    # GroupNorm loses precision on constant maps, which a fully masked image (all zeros) makes; with eps = 1e-6 its
    # rounding is amplified 1000x (latents 3e-3 off float64, against 1.7e-5 in NCHW). Our GroupNorm kernel is
    # exact there, so with it the reference runs NCHW; without it we run PyTorch's channels-last GroupNorm too.
    layout = torch.contiguous_format if native_library() is not None else torch.channels_last
    pipe._encode_vae_image = lambda image, generator: (
        pipe.vae.encode(image.contiguous(memory_format=layout)).latent_dist.mode() * scale)
    mask_image = Image.fromarray((mask[0] * 255).byte().numpy())
    options = {"generator": torch.Generator().manual_seed(SEED)}
    if strength == 1:  # diffusers starts from noise * init_noise_sigma, sqrt(sigma_max^2 + 1) with leading spacing
        pipe.scheduler.set_timesteps(STEPS)  # init_noise_sigma is read off the schedule of this many steps
        noise = randn_per_sample((1, 4, LATENT, LATENT), generators_from_seeds([SEED]))
        first_sigma = get_sigmas(model.spec.default_scheduler, STEPS, model.spec.build_schedule())[0]
        options = {"latents": (noise.double() * first_sigma / float(pipe.scheduler.init_noise_sigma)).float()}
    out = pipe(PROMPT, image=image, mask_image=mask_image, num_inference_steps=STEPS, guidance_scale=GUIDANCE,
               strength=strength, output_type="np", height=IMAGE, width=IMAGE, **options).images
    return torch.from_numpy(out).permute(0, 3, 1, 2)


def test_latent_masks_follow_the_grid():
    hard = left_half(IMAGE // 2 + 1)  # one column past the latent boundary
    soft = hard.clone()
    nearest, area = latent_masks(hard, soft, LATENT, LATENT)
    assert nearest.shape == area.shape == (1, LATENT, LATENT)
    assert set(nearest.unique().tolist()) <= {0.0, 1.0}
    assert area[0, 0, LATENT // 2].item() == pytest.approx(0.5)  # half the cell's pixels are repainted
    assert (area[..., : LATENT // 2] == 1).all() and (area[..., LATENT // 2 + 1:] == 0).all()
    assert latent_masks(hard, soft, IMAGE, IMAGE) == (hard, soft)  # pixel models: unchanged


def test_kept_pixels_come_back_exactly_and_the_rest_is_repainted(loaded):
    model, image = loaded["sd1"], photo()
    original = (image_tensor(image, 3) + 1) / 2
    mask = left_half()
    edited = ours(model, image, mask, strength=1.0)[0]
    kept = mask[0] == 0
    torch.testing.assert_close(edited[:, kept], original[:, kept], rtol=0, atol=0)
    assert (edited[:, ~kept] - original[:, ~kept]).abs().mean() > 1e-2


def test_ordinary_unet_matches_diffusers(sd_folders, loaded):
    image, mask = photo(), left_half()
    got = ours(loaded["sd1"], image, mask, strength=0.75)
    expected = reference(sd_folders["sd1"], loaded["sd1"], image, mask, strength=0.75)
    repainted = mask[0] == 1  # diffusers returns the decoded latents everywhere; we blend the original back
    error = float((got - expected)[..., repainted].abs().max())
    assert error <= TOLERANCE, f"max |ours - diffusers| on the repainted pixels = {error:.2e}"
    assert float((expected - (image_tensor(image, 3) + 1) / 2)[..., repainted].abs().mean()) > 1e-2  # it did repaint


def test_inpainting_unet_matches_diffusers(sd_folders, loaded):
    model = loaded["sd1-inpaint"]
    assert is_inpainting_model(model) and model.network.config.in_channels == 9
    image, mask = photo(), torch.ones(1, IMAGE, IMAGE)
    got, expected = ours(model, image, mask, strength=1.0), reference(sd_folders["sd1-inpaint"], model, image, mask, strength=1.0)
    error = float((got - expected).abs().max())
    assert error <= TOLERANCE, f"max |ours - diffusers| = {error:.2e}"
    # the masked image reaches the network: another picture behind the same all-white mask changes nothing
    # (it is all masked), while a half mask shows the network part of it
    torch.testing.assert_close(ours(model, photo(1), mask, strength=1.0), got, rtol=0, atol=0)
    half = left_half()
    assert (ours(model, photo(1), half, 1.0) - ours(model, image, half, 1.0))[..., half[0] == 1].abs().max() > 1e-3
