"""Tiny random-weight Stable Diffusion pipelines in diffusers, saved with ``save_pretrained`` (no downloads).

The sizes follow the rules a single file's architecture is inferred by (docs/stable_diffusion.md): GroupNorm
with 32 groups, SD 1.x U-Nets with 8 heads, SD 2.x U-Nets and every CLIP with 64-channel heads. Images are
16x16 and latents 8x8 (a two-level VAE halves the side once).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.networks.helpers import perturb_parameters

diffusers = pytest.importorskip("diffusers")
transformers = pytest.importorskip("transformers")

TOKENIZER = Path(__file__).resolve().parents[1] / "fixtures" / "tiny_clip"
IMAGE, LATENT = 16, 8
SD_BETAS = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")

UNETS = {
    "sd1": dict(block_out_channels=(32, 64), attention_head_dim=8),
    "sd2": dict(block_out_channels=(64, 128), attention_head_dim=(1, 2), use_linear_projection=True, upcast_attention=True),
}
# SD 1.x: eps, leading spacing + 1. SD 2.x: v, plus trailing spacing and zero terminal SNR (Lin et al. 2024).
SCHEDULERS = {
    "sd1": dict(SD_BETAS, prediction_type="epsilon", timestep_spacing="leading", steps_offset=1),
    "sd2": dict(SD_BETAS, prediction_type="v_prediction", timestep_spacing="trailing", rescale_betas_zero_snr=True),
}


def tiny_pipeline(family: str, seed: int = 0):
    torch.manual_seed(seed)
    tokenizer = transformers.CLIPTokenizer.from_pretrained(TOKENIZER, local_files_only=True)
    text_encoder = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=1,
        max_position_embeddings=77, projection_dim=64, hidden_act="quick_gelu" if family == "sd1" else "gelu",
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )).eval()
    unet = perturb_parameters(diffusers.UNet2DConditionModel(
        sample_size=LATENT, in_channels=4, out_channels=4, layers_per_block=1, norm_num_groups=32, cross_attention_dim=64,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        **UNETS[family],
    ), seed=seed)
    vae = perturb_parameters(diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(32, 64), latent_channels=4, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=32,
        sample_size=IMAGE,
    ), seed=seed + 1, scale=0.02)
    scheduler = diffusers.EulerDiscreteScheduler(**SCHEDULERS[family])
    return diffusers.StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                             scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)


def save_tiny_pipeline(family: str, folder: Path) -> Path:
    tiny_pipeline(family).save_pretrained(folder, safe_serialization=True)
    return folder


def generate(model, seed: int = 7, steps: int = 3, guidance: float = 4.0, prompt: str = "a red star above a blue ring",
             **options) -> torch.Tensor:
    """Our txt2img core's images ``[N, 3, H, W]`` in [0, 1] (before quantisation to 8 bits)."""
    from unstatic.pipelines.generation import run_generation

    options = {"height": IMAGE, "width": IMAGE, **options}
    init = options.pop("init", None)
    images, *_ = run_generation(model, init, prompt, num_inference_steps=steps, guidance_scale=guidance, sampler="euler",
                                seed=seed, **options)
    return (images + 1) / 2
