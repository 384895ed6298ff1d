"""Original single-file Stable Diffusion checkpoints (CompVis/Stability layout): the U-Net under
``model.diffusion_model.``, the VAE under ``first_stage_model.``, the text encoder under
``cond_stage_model.transformer.`` (SD 1.x, CLIP-L) or ``cond_stage_model.model.`` (SD 2.x, OpenCLIP-H); SDXL's
two under ``conditioner.embedders.0.transformer.`` (CLIP-L) and ``conditioner.embedders.1.model.`` (OpenCLIP-bigG).

Name mappings: :mod:`.unet_keys`, :mod:`.vae_keys`, :mod:`.clip_keys`. Other tensors in such files (EMA copies
``model_ema.*``, the training schedule's buffers ``betas``, ``alphas_cumprod``, ...) are not read.

What a file cannot say: the prediction kind (SD 2.x "768-v" models predict v, the base models eps: pass
``prediction="v"``, or keep the original ``.yaml`` next to the file; its ``parameterization: "v"`` is read),
and the tokenizer (pass a ``tokenizer/`` folder, or a diffusers model folder with ``tokenizer/`` and SDXL's
``tokenizer_2/``). The schedule is SD's (scaled-linear betas 0.00085 to 0.012
over 1000 steps, sampled with leading spacing + 1). Files written by :func:`save_single_file` carry all of it,
with the exact component configs, as JSON under the safetensors metadata key ``unstatic``.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from unstatic.models.folder import DiffusionModel
from unstatic.models.spec import DiffusionSpec, ScheduleSpec
from unstatic.models.stable_diffusion.architecture import (
    SDXL_VAE_SCALE,
    detect_family,
    unet_config_from_tensors,
    vae_config_from_tensors,
)
from unstatic.models.stable_diffusion.checkpoint_file import read_checkpoint
from unstatic.models.stable_diffusion.components import (
    build_from_layout,
    check_sd_shaped,
    cpu_state,
    dumps,
)
from unstatic.models.stable_diffusion.scheduler import parse_prediction
from unstatic.models.stable_diffusion.single_file_text import (
    read_text_models,
    read_tokenizers,
    text_encoder,
    text_to_file,
)
from unstatic.models.stable_diffusion.unet_keys import PREFIX as UNET_PREFIX
from unstatic.models.stable_diffusion.unet_keys import unet_key_map, unet_to_original
from unstatic.models.stable_diffusion.vae_keys import PREFIX as VAE_PREFIX
from unstatic.models.stable_diffusion.vae_keys import (
    vae_from_original,
    vae_key_map,
    vae_to_original,
)
from unstatic.networks.unet import UNet
from unstatic.networks.vae import AutoencoderKL
from unstatic.networks.weights import config_from_dict, config_to_dict
from unstatic.text.sdxl import NAME as SDXL_TEXT_ENCODER

METADATA_KEY = "unstatic"
SD_SCHEDULE = ScheduleSpec(kind="discrete", beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                           num_train_timesteps=1000)
SD_SPACING = "ddim_uniform"  # leading + steps_offset 1, the original DDIM sampler's timesteps


def load_single_file(
    path: str | Path, *, vae: torch.nn.Module | None = None, prediction: str | None = None,
    tokenizer: str | Path | None = None, dtype: torch.dtype | None = None, device: torch.device | str | None = None,
) -> DiffusionModel:
    """A single-file checkpoint as a :class:`DiffusionModel`. ``vae`` replaces (or stands in for a missing) VAE,
    ``prediction`` ("eps" or "v") overrides what the file or its sidecar ``.yaml`` say."""
    path = Path(path)
    tensors, metadata = read_checkpoint(path)
    source = str(path)
    stored = json.loads(metadata[METADATA_KEY]) if METADATA_KEY in metadata else None
    family = stored["family"] if stored else detect_family(tensors, source)
    prediction = parse_prediction(prediction) or (stored["spec"]["prediction"] if stored else sidecar_prediction(path) or "eps")
    # 1024 px for SDXL, 768 px for SD 2.x v models, else 512
    sample_size = 128 if family == "sdxl" else 96 if family == "sd2" and prediction == "v" else 64

    tokenizers = read_tokenizers(family, stored, tokenizer, source)
    text_models = read_text_models(tensors, family, stored, tokenizers, source, dtype)
    pooled_width = text_models[-1].config.projection_dim if family == "sdxl" else None
    unet_config = (config_from_dict(UNet.config_class, stored["unet"]) if stored
                   else unet_config_from_tensors(tensors, family, sample_size, source, pooled_width))
    unet = build_from_layout(UNet, unet_config, tensors, UNET_PREFIX, unet_key_map, unet_to_original, source, dtype, device)

    if vae is None:
        if not any(k.startswith(VAE_PREFIX) for k in tensors):
            raise ValueError(f"{source} holds no VAE ({VAE_PREFIX}* tensors); pass one with --vae (a diffusers vae/ "
                             "folder, an unstatic vae/ folder or a VAE .safetensors file)")
        vae_config = (config_from_dict(AutoencoderKL.config_class, stored["vae"]) if stored
                      else vae_config_from_tensors(tensors, VAE_PREFIX, source))
        if family == "sdxl" and not stored:
            vae_config = replace(vae_config, scaling_factor=SDXL_VAE_SCALE)
        vae = build_from_layout(AutoencoderKL, vae_config, tensors, VAE_PREFIX, vae_key_map, vae_to_original, source,
                                dtype, device, from_original=vae_from_original, ignore=("loss.",))

    spec = DiffusionSpec.from_dict(stored["spec"]) if stored else DiffusionSpec(
        prediction=prediction, schedule=SD_SCHEDULE, image_size=sample_size, channels=unet_config.out_channels,
        conditioning="text", text_encoder=SDXL_TEXT_ENCODER if family == "sdxl" else "clip",
        text_max_length=tokenizers[0].model_max_length, latent=True, default_scheduler=SD_SPACING,
    )
    spec = replace(spec, prediction=prediction)
    return DiffusionModel(unet, spec, vae, text_encoder(text_models, tokenizers, spec, stored, device or "cpu"))


def sidecar_prediction(path: Path) -> str | None:
    """``"v"`` when the original inference ``.yaml`` beside the file says ``parameterization: "v"``."""
    for sidecar in (path.with_suffix(".yaml"), path.with_suffix(".yml")):
        if sidecar.is_file():
            match = re.search(r"^\s*parameterization:\s*[\"']?(\w+)", sidecar.read_text(errors="replace"), re.MULTILINE)
            if match:
                return parse_prediction(match.group(1))
    return None


def save_single_file(model: DiffusionModel, path: str | Path) -> Path:
    """Write a latent CLIP model as an original-layout ``.safetensors`` file that other SD tools read; the exact
    configs, spec and tokenizer go into its metadata so that unstatic reads it back identically."""
    path = Path(path)
    check_sd_shaped(model)
    unet_map = unet_key_map(model.network.config, model.network)
    vae_map = vae_key_map(model.vae.config, model.vae)
    tensors = {**unet_to_original(cpu_state(model.network), unet_map), **vae_to_original(cpu_state(model.vae), vae_map)}
    family, text_tensors, text_stored, spec = text_to_file(model.text_encoder, model.spec)
    tensors.update(text_tensors)
    stored = {"family": family, "spec": spec.to_dict(), "unet": config_to_dict(model.network.config),
              "vae": config_to_dict(model.vae.config), **text_stored}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata={"format": "pt", METADATA_KEY: dumps(stored)})
    return path

