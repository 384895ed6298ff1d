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


def tiny_pipeline(family: str, seed: int = 0, in_channels: int = 4):
    """A tiny SD 1.x/2.x pipeline; ``in_channels=9`` makes an inpainting one (latents, mask, masked-image latents)."""
    torch.manual_seed(seed)
    tokenizer = transformers.CLIPTokenizer.from_pretrained(TOKENIZER, local_files_only=True)
    text_encoder = transformers.CLIPTextModel(transformers.CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=1,
        max_position_embeddings=77, projection_dim=64, hidden_act="quick_gelu" if family == "sd1" else "gelu",
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )).eval()
    unet = perturb_parameters(diffusers.UNet2DConditionModel(
        sample_size=LATENT, in_channels=in_channels, out_channels=4, layers_per_block=1, norm_num_groups=32,
        cross_attention_dim=64, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        **UNETS[family],
    ), seed=seed)
    vae = _tiny_vae(seed)
    scheduler = diffusers.EulerDiscreteScheduler(**SCHEDULERS[family])
    kind = diffusers.StableDiffusionInpaintPipeline if in_channels == 9 else diffusers.StableDiffusionPipeline
    return kind(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def _tiny_vae(seed: int, **options):
    return perturb_parameters(diffusers.AutoencoderKL(
        in_channels=3, out_channels=3, block_out_channels=(32, 64), latent_channels=4, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=32,
        sample_size=IMAGE, **options,
    ), seed=seed + 1, scale=0.02)


def _tiny_clip(tokenizer, width: int, act: str, projection: int | None = None):
    config = transformers.CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=width // 64, max_position_embeddings=77, projection_dim=projection or width, hidden_act=act,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    model_class = transformers.CLIPTextModelWithProjection if projection else transformers.CLIPTextModel
    return model_class(config).eval()


# SDXL (Podell et al. 2023) in miniature: CLIP-L-like (64 wide, quick GELU) + OpenCLIP-bigG-like (128 wide, GELU,
# projected to 32), so the context is 192 wide; per-level transformer depths (level 1: 2, also the mid block);
# added conditioning of the 32-wide pooled embedding and six 8-wide size/crop embeddings; SDXL's VAE scale.
SDXL_POOLED, SDXL_TIME = 32, 8


def tiny_sdxl_pipeline(seed: int = 0):
    torch.manual_seed(seed)
    tokenizer = transformers.CLIPTokenizer.from_pretrained(TOKENIZER, local_files_only=True)
    tokenizer_2 = transformers.CLIPTokenizer.from_pretrained(TOKENIZER, local_files_only=True, pad_token="!")
    text_encoder = _tiny_clip(tokenizer, 64, "quick_gelu")
    text_encoder_2 = _tiny_clip(tokenizer_2, 128, "gelu", projection=SDXL_POOLED)
    unet = perturb_parameters(diffusers.UNet2DConditionModel(
        sample_size=LATENT, in_channels=4, out_channels=4, layers_per_block=1, norm_num_groups=32,
        block_out_channels=(32, 64), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(1, 1), transformer_layers_per_block=(1, 2),
        cross_attention_dim=64 + 128, use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=SDXL_TIME, projection_class_embeddings_input_dim=SDXL_POOLED + 6 * SDXL_TIME,
    ), seed=seed)
    scheduler = diffusers.EulerDiscreteScheduler(**SD_BETAS, prediction_type="epsilon", timestep_spacing="leading",
                                                 steps_offset=1)
    return diffusers.StableDiffusionXLPipeline(
        vae=_tiny_vae(seed, scaling_factor=0.13025), text_encoder=text_encoder, text_encoder_2=text_encoder_2,
        tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler, add_watermarker=False,
    )


def save_tiny_pipeline(family: str, folder: Path) -> Path:
    """``family``: sd1, sd2, sdxl, or sd1-inpaint (SD 1.x with a 9-channel inpainting U-Net)."""
    if family == "sdxl":
        pipe = tiny_sdxl_pipeline()
    else:
        pipe = tiny_pipeline(family.removesuffix("-inpaint"), in_channels=9 if family.endswith("-inpaint") else 4)
    pipe.save_pretrained(folder, safe_serialization=True)
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
