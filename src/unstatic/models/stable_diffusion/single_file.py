"""Original single-file Stable Diffusion checkpoints (CompVis/Stability layout): the U-Net under
``model.diffusion_model.``, the VAE under ``first_stage_model.``, the text encoder under
``cond_stage_model.transformer.`` (SD 1.x, CLIP-L) or ``cond_stage_model.model.`` (SD 2.x, OpenCLIP-H).

Name mappings: :mod:`.unet_keys`, :mod:`.vae_keys`, :mod:`.clip_keys`. Other tensors in such files (EMA copies
``model_ema.*``, the training schedule's buffers ``betas``, ``alphas_cumprod``, ...) are not read.

What a file cannot say: the prediction kind (SD 2.x "768-v" models predict v, the base models eps: pass
``prediction="v"``, or keep the original ``.yaml`` next to the file; its ``parameterization: "v"`` is read),
and the tokenizer (pass a ``tokenizer/`` folder). The schedule is SD's (scaled-linear betas 0.00085 to 0.012
over 1000 steps, sampled with leading spacing + 1). Files written by :func:`save_single_file` carry all of it,
with the exact component configs, as JSON under the safetensors metadata key ``unstatic``.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from unstatic.models.folder import DiffusionModel
from unstatic.models.spec import DiffusionSpec, ScheduleSpec
from unstatic.models.stable_diffusion import clip_keys
from unstatic.models.stable_diffusion.architecture import (
    clip_config_from_tensors,
    detect_family,
    unet_config_from_tensors,
    vae_config_from_tensors,
)
from unstatic.models.stable_diffusion.checkpoint_file import read_checkpoint
from unstatic.models.stable_diffusion.components import (
    build_clip,
    build_from_layout,
    check_sd_shaped,
    cpu_state,
    dumps,
    load_tokenizer,
    text_model_state,
    tokenizer_files,
    tokenizer_from_files,
)
from unstatic.models.stable_diffusion.scheduler import parse_prediction
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
from unstatic.text.clip import CLIPTextEncoder

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
    sample_size = 96 if family == "sd2" and prediction == "v" else 64  # 768 px for SD 2.x v models, else 512

    unet_config = (config_from_dict(UNet.config_class, stored["unet"]) if stored
                   else unet_config_from_tensors(tensors, family, sample_size, source))
    unet = build_from_layout(UNet, unet_config, tensors, UNET_PREFIX, unet_key_map, unet_to_original, source, dtype, device)

    if vae is None:
        if not any(k.startswith(VAE_PREFIX) for k in tensors):
            raise ValueError(f"{source} holds no VAE ({VAE_PREFIX}* tensors); pass one with --vae (a diffusers vae/ "
                             "folder, an unstatic vae/ folder or a VAE .safetensors file)")
        vae_config = (config_from_dict(AutoencoderKL.config_class, stored["vae"]) if stored
                      else vae_config_from_tensors(tensors, VAE_PREFIX, source))
        vae = build_from_layout(AutoencoderKL, vae_config, tensors, VAE_PREFIX, vae_key_map, vae_to_original, source,
                                dtype, device, from_original=vae_from_original, ignore=("loss.",))

    if stored and "tokenizer" in stored:
        clip_tokenizer = tokenizer_from_files(stored["tokenizer"])
    elif tokenizer is not None:
        clip_tokenizer = load_tokenizer(tokenizer)
    else:
        raise FileNotFoundError(f"{source} holds no tokenizer; pass --tokenizer FOLDER (the tokenizer/ folder of a "
                                "diffusers Stable Diffusion model of the same family)")
    text_state = clip_keys.sd1_from_file(tensors) if family == "sd1" else _sd2_text(tensors, source)
    if not text_state:
        raise ValueError(f"{source} holds no text encoder ({clip_keys.SD1_PREFIX}* or {clip_keys.SD2_PREFIX}* tensors)")
    clip_config = stored["text_encoder"] if stored else clip_config_from_tensors(text_state, family, clip_tokenizer)
    clip = build_clip(clip_config, text_state, source, dtype)
    spec = DiffusionSpec.from_dict(stored["spec"]) if stored else DiffusionSpec(
        prediction=prediction, schedule=SD_SCHEDULE, image_size=sample_size, channels=unet_config.out_channels,
        conditioning="text", text_encoder="clip", text_max_length=clip_tokenizer.model_max_length, latent=True,
        default_scheduler=SD_SPACING,
    )
    spec = replace(spec, prediction=prediction)
    encoder = CLIPTextEncoder(clip, clip_tokenizer, clip_skip=spec.clip_skip, max_length=spec.text_max_length,
                              device=device or "cpu")
    return DiffusionModel(unet, spec, vae, encoder)


def _sd2_text(tensors: dict, source: str) -> dict:
    return clip_keys.sd2_from_file(tensors, source) if clip_keys.openclip_layer_count(tensors) else {}


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
    clip, spec = model.text_encoder, model.spec
    family = "sd2" if clip.model.config.hidden_act == "gelu" else "sd1"
    unet_map = unet_key_map(model.network.config, model.network)
    vae_map = vae_key_map(model.vae.config, model.vae)
    tensors = {**unet_to_original(cpu_state(model.network), unet_map), **vae_to_original(cpu_state(model.vae), vae_map)}
    text_state, clip_config = text_model_state(clip.model), _clip_config(clip.model)
    if family == "sd2":  # keep the layers the model reads; the file's last (identity) layer is skipped on reading
        used = clip.model.config.num_hidden_layers - spec.clip_skip + 1
        text_state = {k: v for k, v in text_state.items()
                      if not (k.startswith("encoder.layers.") and int(k.split(".")[2]) >= used)}
        tensors.update(clip_keys.sd2_to_file(text_state, used))
        clip_config["num_hidden_layers"], spec = used, replace(spec, clip_skip=1)
    else:
        tensors.update(clip_keys.sd1_to_file(text_state))
    stored = {"family": family, "spec": spec.to_dict(), "unet": config_to_dict(model.network.config),
              "vae": config_to_dict(model.vae.config), "text_encoder": clip_config, "tokenizer": tokenizer_files(clip.tokenizer)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, path, metadata={"format": "pt", METADATA_KEY: dumps(stored)})
    return path


def _clip_config(model: Any) -> dict:
    data = model.config.to_dict()
    return {k: v for k, v in data.items() if not k.startswith("_") and k != "transformers_version"}
