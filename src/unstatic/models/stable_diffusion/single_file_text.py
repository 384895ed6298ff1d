"""The text encoders of a single-file checkpoint: read (with the tokenizers the file carries in our metadata or
the user supplies) and written, for each family. Names: :mod:`.clip_keys`.

SD 1.x and 2.x have one CLIP; SDXL two (Podell et al. 2023, Sec. 2.1), CLIP ViT-L (``conditioner.embedders.0``)
and OpenCLIP ViT-bigG with its text projection (``conditioner.embedders.1``), each with its own tokenizer: the
same CLIP BPE vocabulary, padded with ``<|endoftext|>`` by the first and with ``!`` (id 0, OpenCLIP's padding)
by the second, which is what a single ``--tokenizer`` folder is completed with when it has no ``tokenizer_2``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from unstatic.models.spec import DiffusionSpec
from unstatic.models.stable_diffusion import clip_keys
from unstatic.models.stable_diffusion.architecture import clip_config_from_tensors
from unstatic.models.stable_diffusion.components import (
    build_clip,
    clip_config,
    load_tokenizer,
    text_model_state,
    tokenizer_files,
    tokenizer_from_files,
)
from unstatic.text.clip import CLIPTextEncoder
from unstatic.text.sdxl import SDXLTextEncoder

OPENCLIP_PAD = "!"  # OpenCLIP pads with token 0, which is "!" in CLIP's vocabulary
_NAMES = ("text_encoder", "text_encoder_2")
_TOKENIZERS = ("tokenizer", "tokenizer_2")


def read_tokenizers(family: str, stored: dict | None, tokenizer: str | Path | None, source: str) -> list[Any]:
    """The tokenizer(s) of the file's text encoder(s): from our metadata, else from ``tokenizer`` (a tokenizer
    folder, or a diffusers model folder holding ``tokenizer/`` and for SDXL ``tokenizer_2/``)."""
    count = 2 if family == "sdxl" else 1
    if stored and "tokenizer" in stored:
        return [tokenizer_from_files(stored[name]) for name in _TOKENIZERS[:count]]
    if tokenizer is None:
        raise FileNotFoundError(f"{source} holds no tokenizer; pass --tokenizer FOLDER (the tokenizer/ folder of a "
                                "diffusers Stable Diffusion model of the same family, or that model's folder)")
    folder = Path(tokenizer)
    if (folder / "tokenizer").is_dir():
        first = load_tokenizer(folder / "tokenizer")
        if count == 1:
            return [first]
        if (folder / "tokenizer_2").is_dir():
            return [first, load_tokenizer(folder / "tokenizer_2")]
        folder = folder / "tokenizer"
    first = load_tokenizer(folder)
    return [first, load_tokenizer(folder, pad_token=OPENCLIP_PAD)][:count]


def read_text_models(tensors: dict[str, Tensor], family: str, stored: dict | None, tokenizers: list[Any], source: str,
                     dtype: torch.dtype | None = None) -> list[torch.nn.Module]:
    """The transformers CLIP model(s) of the file, by the mapping of :mod:`.clip_keys`; an error names the file
    and the missing encoder or tensor."""
    if family == "sdxl":
        states = [_sdxl_clip_l(tensors, source), _sdxl_openclip(tensors, source)]
        openclip = [False, True]
    else:
        states = [clip_keys.sd1_from_file(tensors) if family == "sd1" else _sd2_text(tensors, source)]
        openclip = [family == "sd2"]
        if not states[0]:
            raise ValueError(f"{source} holds no text encoder ({clip_keys.SD1_PREFIX}* or {clip_keys.SD2_PREFIX}* tensors)")
    models = []
    for index, (state, tokenizer) in enumerate(zip(states, tokenizers)):
        config = stored[_NAMES[index]] if stored else clip_config_from_tensors(state, family, tokenizer, openclip[index])
        models.append(build_clip(config, state, source, dtype))
    return models


def _sdxl_clip_l(tensors: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    state = clip_keys.sd1_from_file(tensors, clip_keys.SDXL_CLIP_L_PREFIX)
    if not state:
        raise ValueError(f"{source} holds no first SDXL text encoder (CLIP ViT-L, {clip_keys.SDXL_CLIP_L_PREFIX}* tensors)")
    return state


def _sdxl_openclip(tensors: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    if not clip_keys.openclip_layer_count(tensors, clip_keys.SDXL_OPENCLIP_PREFIX):
        raise ValueError(f"{source} holds no second SDXL text encoder (OpenCLIP ViT-bigG, "
                         f"{clip_keys.SDXL_OPENCLIP_PREFIX}* tensors)")
    return clip_keys.sdxl_openclip_from_file(tensors, source)


def _sd2_text(tensors: dict, source: str) -> dict:
    return clip_keys.sd2_from_file(tensors, source) if clip_keys.openclip_layer_count(tensors) else {}


def text_encoder(models: list[torch.nn.Module], tokenizers: list[Any], spec: DiffusionSpec, stored: dict | None,
                 device: torch.device | str) -> Any:
    """The model's text encoder: a :class:`CLIPTextEncoder`, or for SDXL an :class:`SDXLTextEncoder`."""
    if len(models) == 1:
        return CLIPTextEncoder(models[0], tokenizers[0], clip_skip=spec.clip_skip, max_length=spec.text_max_length,
                               device=device)
    zeros = stored.get("force_zeros_for_empty_prompt", True) if stored else True
    return SDXLTextEncoder.from_models(models[0], tokenizers[0], models[1], tokenizers[1], clip_skip=spec.clip_skip,
                                       max_length=spec.text_max_length, device=device, zero_empty_negative=zeros)


def text_to_file(encoder: Any, spec: DiffusionSpec) -> tuple[str, dict[str, Tensor], dict[str, Any], DiffusionSpec]:
    """``(family, tensors, metadata entries, spec)`` for writing ``encoder`` into a single file."""
    if isinstance(encoder, SDXLTextEncoder):
        first, second = encoder.first.model, encoder.second.model
        tensors = {**clip_keys.sd1_to_file(text_model_state(first), clip_keys.SDXL_CLIP_L_PREFIX),
                   **clip_keys.sdxl_openclip_to_file(text_model_state(second), second.config.num_hidden_layers)}
        stored = {"text_encoder": clip_config(first), "text_encoder_2": clip_config(second),
                  "tokenizer": tokenizer_files(encoder.first.tokenizer), "tokenizer_2": tokenizer_files(encoder.second.tokenizer),
                  "force_zeros_for_empty_prompt": encoder.zero_empty_negative}
        return "sdxl", tensors, stored, spec
    family = "sd2" if encoder.model.config.hidden_act == "gelu" else "sd1"
    text_state, config = text_model_state(encoder.model), clip_config(encoder.model)
    if family == "sd2":  # keep the layers the model reads; the file's last (identity) layer is skipped on reading
        used = encoder.model.config.num_hidden_layers - spec.clip_skip + 1
        text_state = {k: v for k, v in text_state.items()
                      if not (k.startswith("encoder.layers.") and int(k.split(".")[2]) >= used)}
        tensors = clip_keys.sd2_to_file(text_state, used)
        config["num_hidden_layers"], spec = used, replace(spec, clip_skip=1)
    else:
        tensors = clip_keys.sd1_to_file(text_state)
    return family, tensors, {"text_encoder": config, "tokenizer": tokenizer_files(encoder.tokenizer)}, spec
