"""The text encoders of Stable Diffusion checkpoints and their names in a single file.

SD 1.x stores OpenAI's CLIP ViT-L/14 text transformer (Radford et al. 2021) in transformers' own layout under
``cond_stage_model.transformer.text_model.`` (older files omit ``text_model.``); the names below it are
transformers' ``CLIPTextTransformer`` names, used as they are.

SD 2.x stores OpenCLIP ViT-H/14's text tower under ``cond_stage_model.model.``:

=================================================  ==========================================================
transformers (``CLIPTextTransformer``)             OpenCLIP
=================================================  ==========================================================
``embeddings.token_embedding.weight``              ``token_embedding.weight``
``embeddings.position_embedding.weight``           ``positional_embedding``
``encoder.layers.l.layer_norm1`` / ``2``           ``transformer.resblocks.l.ln_1`` / ``ln_2``
``encoder.layers.l.self_attn.{q,k,v}_proj``        ``transformer.resblocks.l.attn.in_proj_{weight,bias}``
                                                   (q, k and v stacked along the output dimension)
``encoder.layers.l.self_attn.out_proj``            ``transformer.resblocks.l.attn.out_proj``
``encoder.layers.l.mlp.fc1`` / ``fc2``             ``transformer.resblocks.l.mlp.c_fc`` / ``c_proj``
``final_layer_norm``                               ``ln_final``
=================================================  ==========================================================

SD 2.x conditions on the *penultimate* layer through ``ln_final`` (``FrozenOpenCLIPEmbedder(layer=
"penultimate")``), so reading such a file keeps all layers but the last, as diffusers' SD 2 folders do, and
writing one appends an identity layer (zero attention and MLP output projections: ``x + 0 + 0``) that the
penultimate rule skips again. ``text_projection`` and ``logit_scale`` are not used by SD and are not read.

SDXL (Podell et al. 2023) stores both of its encoders under ``conditioner.embedders.``: CLIP ViT-L in
transformers' layout under ``conditioner.embedders.0.transformer.`` (as SD 1.x), and OpenCLIP ViT-bigG under
``conditioner.embedders.1.model.`` (as SD 2.x, with every layer: its pooled output reads the last one) plus its
``text_projection``, a ``[width, projection]`` matrix applied as ``x @ P``, which is transformers'
``text_projection.weight`` transposed.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor

SD1_PREFIX = "cond_stage_model.transformer."
SD2_PREFIX = "cond_stage_model.model."
SDXL_CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
SDXL_OPENCLIP_PREFIX = "conditioner.embedders.1.model."
OPENCLIP_UNUSED = ("text_projection", "logit_scale", "attn_mask")
PROJECTION = "text_projection.weight"  # transformers' name (CLIPTextModelWithProjection), beside the transformer's

_LAYER = re.compile(r"transformer\.resblocks\.(\d+)\.")
_OPENCLIP_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "self_attn.out_proj": "attn.out_proj",
                   "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
_OPENCLIP_TOP = {"embeddings.token_embedding.weight": "token_embedding.weight",
                 "embeddings.position_embedding.weight": "positional_embedding",
                 "final_layer_norm.weight": "ln_final.weight", "final_layer_norm.bias": "ln_final.bias"}


def sd1_from_file(state_dict: dict[str, Tensor], prefix: str = SD1_PREFIX) -> dict[str, Tensor]:
    """The CLIP-L tensors of an SD 1.x file (or SDXL's first encoder), by transformers' ``CLIPTextTransformer`` names."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith(prefix):
            name = key[len(prefix):]
            name = name.removeprefix("text_model.")
            if name != "embeddings.position_ids":  # a buffer older transformers saved; it is arange(77)
                out[name] = value
    return out


def sd1_to_file(text_state: dict[str, Tensor], prefix: str = SD1_PREFIX) -> dict[str, Tensor]:
    return {f"{prefix}text_model.{k}": v for k, v in text_state.items()}


def openclip_layer_count(state_dict: dict[str, Tensor], prefix: str = SD2_PREFIX) -> int:
    found = {int(m.group(1)) for k in state_dict if k.startswith(prefix) and (m := _LAYER.match(k[len(prefix):]))}
    return max(found) + 1 if found else 0


def sd2_from_file(state_dict: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """The OpenCLIP text tower of an SD 2.x file as ``CLIPTextTransformer`` tensors, without its last layer."""
    if openclip_layer_count(state_dict) < 2:
        raise ValueError(f"{source}: the OpenCLIP text encoder needs at least 2 layers (SD 2 reads the penultimate one)")
    return openclip_from_file(state_dict, SD2_PREFIX, source, drop_last=True)


def sdxl_openclip_from_file(state_dict: dict[str, Tensor], source: str) -> dict[str, Tensor]:
    """SDXL's OpenCLIP-bigG as ``CLIPTextModelWithProjection`` tensors: every layer, and ``text_projection.weight``."""
    out = openclip_from_file(state_dict, SDXL_OPENCLIP_PREFIX, source, drop_last=False)
    name = SDXL_OPENCLIP_PREFIX + "text_projection"
    if name not in state_dict:
        raise ValueError(f"{source}: missing tensor {name} (SDXL's pooled text embedding needs it)")
    out[PROJECTION] = state_dict[name].T.contiguous()
    return out


def openclip_from_file(state_dict: dict[str, Tensor], prefix: str, source: str, drop_last: bool) -> dict[str, Tensor]:
    """An OpenCLIP text tower under ``prefix`` as ``CLIPTextTransformer`` tensors (``drop_last``: without its last
    layer, which the penultimate rule never reads)."""
    theirs = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    layers = openclip_layer_count(state_dict, prefix)
    if layers < 1:
        raise ValueError(f"{source}: no OpenCLIP text encoder layers ({prefix}transformer.resblocks.*)")
    out, used = {}, set()

    def take(name: str) -> Tensor:
        if name not in theirs:
            raise ValueError(f"{source}: missing tensor {prefix}{name}")
        used.add(name)
        return theirs[name]

    for ours, name in _OPENCLIP_TOP.items():
        out[ours] = take(name)
    for layer in range(layers):
        block = f"transformer.resblocks.{layer}."
        if drop_last and layer == layers - 1:  # skipped by the penultimate rule
            used.update(k for k in theirs if k.startswith(block))
            continue
        for ours, name in _OPENCLIP_LAYER.items():
            for kind in ("weight", "bias"):
                out[f"encoder.layers.{layer}.{ours}.{kind}"] = take(f"{block}{name}.{kind}")
        for kind in ("weight", "bias"):
            q, k, v = take(f"{block}attn.in_proj_{kind}").chunk(3, dim=0)
            for part, tensor in zip("qkv", (q, k, v)):
                out[f"encoder.layers.{layer}.self_attn.{part}_proj.{kind}"] = tensor
    unexpected = sorted(k for k in set(theirs) - used if k not in OPENCLIP_UNUSED)
    if unexpected:
        raise ValueError(f"{source}: unexpected OpenCLIP tensors: " + ", ".join(prefix + k for k in unexpected[:10]))
    return out


def sd2_to_file(text_state: dict[str, Tensor], layers: int) -> dict[str, Tensor]:
    """``CLIPTextTransformer`` tensors of ``layers`` layers as an SD 2.x OpenCLIP tower, plus the identity layer
    that the penultimate rule skips (see the module docstring)."""
    out = openclip_to_file(text_state, SD2_PREFIX, layers)
    out.update(_identity_layer(f"{SD2_PREFIX}transformer.resblocks.{layers}.", text_state, f"encoder.layers.{layers - 1}."))
    return out


def sdxl_openclip_to_file(text_state: dict[str, Tensor], layers: int) -> dict[str, Tensor]:
    """``CLIPTextModelWithProjection`` tensors as SDXL's OpenCLIP-bigG tower (every layer, the projection transposed)."""
    out = openclip_to_file({k: v for k, v in text_state.items() if k != PROJECTION}, SDXL_OPENCLIP_PREFIX, layers)
    out[SDXL_OPENCLIP_PREFIX + "text_projection"] = text_state[PROJECTION].T.contiguous()
    return out


def openclip_to_file(text_state: dict[str, Tensor], prefix: str, layers: int) -> dict[str, Tensor]:
    """``CLIPTextTransformer`` tensors of ``layers`` layers as an OpenCLIP text tower under ``prefix``."""
    out = {prefix + theirs: text_state[ours] for ours, theirs in _OPENCLIP_TOP.items()}
    for layer in range(layers):
        block = f"{prefix}transformer.resblocks.{layer}."
        src = f"encoder.layers.{layer}."
        for ours, theirs in _OPENCLIP_LAYER.items():
            for kind in ("weight", "bias"):
                out[f"{block}{theirs}.{kind}"] = text_state[f"{src}{ours}.{kind}"]
        for kind in ("weight", "bias"):
            out[f"{block}attn.in_proj_{kind}"] = torch.cat([text_state[f"{src}self_attn.{p}_proj.{kind}"] for p in "qkv"])
    return out


def _identity_layer(block: str, text_state: dict[str, Tensor], like: str) -> dict[str, Tensor]:
    """A residual block whose attention and MLP add exactly zero: layer norms at (1, 0), all projections 0."""
    out = {}
    for ours, theirs in _OPENCLIP_LAYER.items():
        for kind in ("weight", "bias"):
            template = text_state[f"{like}{ours}.{kind}"]
            is_norm_scale = theirs.startswith("ln_") and kind == "weight"
            out[f"{block}{theirs}.{kind}"] = torch.ones_like(template) if is_norm_scale else torch.zeros_like(template)
    for kind in ("weight", "bias"):
        out[f"{block}attn.in_proj_{kind}"] = torch.cat([torch.zeros_like(text_state[f"{like}self_attn.{p}_proj.{kind}"]) for p in "qkv"])
    return out
