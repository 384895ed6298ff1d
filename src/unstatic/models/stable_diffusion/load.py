"""One entry point for every model format: our model folder, a diffusers Stable Diffusion folder, or a single
checkpoint file; and one for a VAE given on its own (``--vae``)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from unstatic.cpu_features import emulates
from unstatic.models.folder import (
    SPEC_NAME,
    DiffusionModel,
    file_hash,
    load_diffusion_model,
    weights_hash,
)
from unstatic.models.stable_diffusion.architecture import vae_config_from_tensors
from unstatic.models.stable_diffusion.checkpoint_file import (
    PICKLE_SUFFIXES,
    read_checkpoint,
)
from unstatic.models.stable_diffusion.components import build_from_layout
from unstatic.models.stable_diffusion.diffusers_folder import (
    INDEX_NAME,
    load_diffusers_folder,
)
from unstatic.models.stable_diffusion.scheduler import parse_prediction
from unstatic.models.stable_diffusion.single_file import load_single_file
from unstatic.models.stable_diffusion.vae_keys import PREFIX as VAE_PREFIX
from unstatic.models.stable_diffusion.vae_keys import (
    vae_from_original,
    vae_key_map,
    vae_to_original,
)
from unstatic.networks.narrow_weights import compute_in_float32
from unstatic.networks.vae import AutoencoderKL
from unstatic.networks.weights import (
    CONFIG_NAME,
    DIFFUSERS_WEIGHTS_NAME,
    load_diffusers_vae,
    load_model,
)

FORMATS = ("unstatic", "diffusers", "single-file")
CHECKPOINT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A loaded model, the format it came in, and its short "Model hash" (A1111's: SHA-256 of the weights file)."""

    model: DiffusionModel
    format: str
    model_hash: str | None


def model_format(path: str | Path) -> str:
    """``"unstatic"``, ``"diffusers"`` or ``"single-file"`` for a path, or a FileNotFoundError saying what it lacks."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() not in CHECKPOINT_SUFFIXES:
            raise ValueError(f"{path}: not a checkpoint file (expected {', '.join(CHECKPOINT_SUFFIXES)})")
        return "single-file"
    if (path / SPEC_NAME).is_file():
        return "unstatic"
    if (path / INDEX_NAME).is_file():
        return "diffusers"
    if path.is_dir():
        raise FileNotFoundError(f"{path} is not a model folder: it has neither {SPEC_NAME} (unstatic) nor {INDEX_NAME} (diffusers)")
    raise FileNotFoundError(f"no model at {path}")


def load_any_model(
    path: str | Path, *, vae: str | Path | None = None, prediction: str | None = None, tokenizer: str | Path | None = None,
    dtype: torch.dtype | None = None, device: torch.device | str | None = None,
) -> LoadedModel:
    """Load a model in any of :data:`FORMATS`. ``vae`` (any form :func:`load_vae` reads) replaces the model's VAE
    or supplies a missing one; ``prediction`` ("eps"/"v") overrides the stored prediction kind; ``tokenizer`` is a
    tokenizer folder for single files that carry none.

    ``dtype`` is the weights' dtype. bf16 or float16 weights on a CPU without instructions for them compute in
    float32 (:mod:`unstatic.networks.narrow_weights`): half of float32's weight memory at float32's speed, where
    emulated bf16/float16 arithmetic would be several times slower (``torch.autocast`` still asks for it)."""
    loaded = _load_any_model(Path(path), vae, prediction, tokenizer, dtype, device)
    if torch.device(device or "cpu").type == "cpu" and emulates(dtype):
        for module in model_networks(loaded.model):
            compute_in_float32(module)
        log.info("this CPU has no %s instructions: %s keeps its weights in %s and computes in float32", dtype, path, dtype)
    return loaded


def model_networks(model: DiffusionModel) -> list[nn.Module]:
    """The networks of a model: denoiser, VAE and the text encoders' transformers models."""
    encoder = model.text_encoder
    encoders = [encoder.first, encoder.second] if hasattr(encoder, "second") else [encoder]
    text = [e.model for e in encoders if isinstance(getattr(e, "model", None), nn.Module)]
    return [m for m in (model.network, model.vae, *text) if m is not None]


def _load_any_model(path: Path, vae, prediction, tokenizer, dtype, device) -> LoadedModel:
    kind = model_format(path)
    vae_model = load_vae(vae, dtype=dtype, device=device) if vae is not None else None
    if kind == "single-file":
        model = load_single_file(path, vae=vae_model, prediction=prediction, tokenizer=tokenizer, dtype=dtype, device=device)
        return LoadedModel(model, kind, file_hash(path))
    if kind == "diffusers":
        model = load_diffusers_folder(path, vae=vae_model, prediction=prediction, dtype=dtype, device=device)
        weights = path / "unet" / DIFFUSERS_WEIGHTS_NAME
        return LoadedModel(model, kind, file_hash(weights) if weights.is_file() else None)
    model = load_diffusion_model(path, dtype=dtype, device=device)
    if vae_model is not None:
        if not model.spec.latent:
            raise ValueError(f"{path} is a pixel-space model; it takes no VAE")
        model = replace(model, vae=vae_model)
    if prediction is not None:
        model = replace(model, spec=replace(model.spec, prediction=parse_prediction(prediction)))
    return LoadedModel(model, kind, weights_hash(path))


def load_vae(path: str | Path, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> nn.Module:
    """A VAE from a diffusers ``vae/`` folder, our ``vae/`` folder, a standalone VAE file (original names, as
    ``vae-ft-mse-840000-ema-pruned.safetensors``) or a whole single-file checkpoint (its ``first_stage_model.*``)."""
    path = Path(path)
    if path.is_dir():
        config_path = path / CONFIG_NAME
        if not config_path.is_file():
            raise FileNotFoundError(f"--vae {path}: no {CONFIG_NAME} in the folder")
        if json.loads(config_path.read_text()).get("type") == AutoencoderKL.config_class.TYPE:
            return load_model(path, AutoencoderKL, dtype=dtype, device=device)
        return load_diffusers_vae(path, dtype=dtype, device=device)
    tensors, _ = read_checkpoint(path)
    prefix = VAE_PREFIX if any(k.startswith(VAE_PREFIX) for k in tensors) else ""
    if not any(k.startswith(prefix + "decoder.") for k in tensors):
        raise ValueError(f"--vae {path}: no VAE tensors in the file (expected decoder.* or {VAE_PREFIX}decoder.*)")
    if prefix:  # a whole checkpoint: keep only its VAE
        tensors = {k: v for k, v in tensors.items() if k.startswith(prefix)}
    return build_from_layout(AutoencoderKL, vae_config_from_tensors(tensors, prefix, str(path)), tensors, prefix,
                             vae_key_map, _with_prefix(prefix), str(path), dtype, device,
                             from_original=vae_from_original, ignore=("loss.", "model_ema."))


def _with_prefix(prefix: str):
    """:func:`vae_to_original` for files whose VAE names carry ``prefix`` instead of ``first_stage_model.``."""
    def to_original(state, key_map):
        return {prefix + k[len(VAE_PREFIX):]: v for k, v in vae_to_original(state, key_map).items()}
    return to_original
