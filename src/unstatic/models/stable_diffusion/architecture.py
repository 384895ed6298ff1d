"""Architecture configs of Stable Diffusion components: inferred from a single file's tensor names and shapes,
and written back as diffusers ``config.json`` dicts.

What shapes cannot tell is fixed by the family (SD 1.x, 2.x or SDXL), as the original ``v1-inference.yaml``,
``v2-inference(-v).yaml`` and ``sd_xl_base.yaml`` fix it: the U-Net's attention heads (SD 1.x: 8 heads
everywhere; SD 2.x and SDXL: heads of 64 channels), GroupNorm with 32 groups everywhere, the VAE's latent scale
(0.18215; SDXL 0.13025), CLIP heads of 64 channels and the CLIP activation (SD 1.x and SDXL's CLIP-L: quick
GELU; SD 2.x and SDXL's OpenCLIP-bigG: GELU). Files written by unstatic carry their exact
configs in the safetensors metadata instead (see :mod:`.single_file`).
"""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor

from unstatic.models.stable_diffusion.clip_keys import PROJECTION, SD1_PREFIX, SD2_PREFIX
from unstatic.models.stable_diffusion.unet_keys import PREFIX as UNET_PREFIX
from unstatic.networks.unet_config import UNetConfig
from unstatic.networks.vae import VAEConfig

FAMILIES = ("sd1", "sd2", "sdxl")
SDXL_PREFIX = "conditioner.embedders."
SDXL_VAE_SCALE = 0.13025  # sd_xl_base.yaml: scale_factor
ADDED_PREFIX = "label_emb.0."  # SDXL's added-conditioning MLP in the original U-Net (diffusers' add_embedding)
HEAD_WIDTH = 64  # SD 2.x U-Net heads and every CLIP head are 64 channels wide
SD1_HEADS = 8
_CONTEXT_WIDTH = {768: "sd1", 1024: "sd2"}


def _require(tensors: dict[str, Tensor], name: str, source: str) -> tuple[int, ...]:
    if name not in tensors:
        raise ValueError(f"{source}: missing tensor {name}")
    return tuple(tensors[name].shape)


def _indices(tensors: dict[str, Tensor], pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for k in tensors if (m := regex.match(k))})


def detect_family(tensors: dict[str, Tensor], source: str) -> str:
    """``"sd1"``, ``"sd2"`` or ``"sdxl"``: by the text encoders' layout (or SDXL's added-conditioning MLP), else by
    the U-Net's cross-attention width."""
    if not any(k.startswith(UNET_PREFIX) for k in tensors):
        raise ValueError(f"{source} is not a Stable Diffusion checkpoint of a known family: it has no U-Net "
                         f"tensors ({UNET_PREFIX}*)")
    if any(k.startswith(SDXL_PREFIX) for k in tensors) or f"{UNET_PREFIX}{ADDED_PREFIX}0.weight" in tensors:
        return "sdxl"
    if any(k.startswith(SD2_PREFIX) for k in tensors):
        return "sd2"
    if any(k.startswith(SD1_PREFIX) for k in tensors):
        return "sd1"
    widths = {t.shape[1] for k, t in tensors.items() if k.startswith(UNET_PREFIX) and k.endswith("attn2.to_k.weight")}
    if len(widths) == 1 and next(iter(widths)) in _CONTEXT_WIDTH:
        return _CONTEXT_WIDTH[next(iter(widths))]
    raise ValueError(f"{source}: unknown model family: no text encoder in the file and a cross-attention width of "
                     f"{sorted(widths) or 'none'} (SD 1.x: 768, SD 2.x: 1024)")


def unet_config_from_tensors(tensors: dict[str, Tensor], family: str, sample_size: int, source: str,
                             pooled_width: int | None = None) -> UNetConfig:
    """The U-Net config of an original-layout checkpoint (``model.diffusion_model.*``). SDXL's added conditioning
    is read off ``label_emb.0.0`` (``[time, pooled_width + 6 * addition_time_embed_dim]``), given the pooled text
    width (the second text encoder's projection)."""
    p = UNET_PREFIX
    entries = _indices(tensors, re.escape(p) + r"input_blocks\.(\d+)\.")
    downsamplers = [k for k in entries if f"{p}input_blocks.{k}.0.op.weight" in tensors]
    levels = len(downsamplers) + 1
    last = entries[-1] if entries else 0
    layers = (last - (levels - 1)) // levels
    if layers < 1 or layers * levels + levels - 1 != last:
        raise ValueError(f"{source}: the U-Net's input_blocks (1..{last}, downsampling at {downsamplers}) do not form "
                         "levels of equal depth")
    channels, attention, depth, linear, context = [], [], [], set(), set()
    for level in range(levels):
        k = 1 + level * (layers + 1)
        channels.append(_require(tensors, f"{p}input_blocks.{k}.0.out_layers.3.weight", source)[0])
        block = f"{p}input_blocks.{k}.1."
        attention.append(f"{block}proj_in.weight" in tensors)
        depth.append(len(_indices(tensors, re.escape(block) + r"transformer_blocks\.(\d+)\.")) or 1)
        if attention[-1]:
            linear.add(len(tensors[f"{block}proj_in.weight"].shape) == 2)
            context.add(_require(tensors, f"{block}transformer_blocks.0.attn2.to_k.weight", source)[1])
    if len(linear) != 1 or len(context) != 1:
        raise ValueError(f"{source}: the U-Net has no (or inconsistent) cross-attention layers; not a text-to-image SD model")
    c0 = channels[0]
    time_dim = _require(tensors, f"{p}time_embed.0.weight", source)[0]
    heads = SD1_HEADS if family == "sd1" else tuple(max(1, c // HEAD_WIDTH) for c in channels)
    added = _added_config(tensors, pooled_width, source) if family == "sdxl" else {}
    return UNetConfig.from_diffusers({
        **added, "_class_name": "UNet2DConditionModel", "sample_size": sample_size,
        "in_channels": _require(tensors, f"{p}input_blocks.0.0.weight", source)[1],
        "out_channels": _require(tensors, f"{p}out.2.weight", source)[0],
        "block_out_channels": channels, "layers_per_block": layers,
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)],
        "mid_block_type": "UNetMidBlock2DCrossAttn" if f"{p}middle_block.1.proj_in.weight" in tensors else None,
        "attention_head_dim": heads, "cross_attention_dim": context.pop(), "use_linear_projection": linear.pop(),
        "transformer_layers_per_block": depth, "upcast_attention": family == "sd2",
        "time_embedding_dim": None if time_dim == 4 * c0 else time_dim,
    })


def _added_config(tensors: dict[str, Tensor], pooled_width: int | None, source: str) -> dict[str, Any]:
    """SDXL's "text_time" fields of a diffusers U-Net config, from the added-conditioning MLP's input width."""
    width = _require(tensors, f"{UNET_PREFIX}{ADDED_PREFIX}0.weight", source)[1]
    if pooled_width is None or (width - pooled_width) % 6 or width <= pooled_width:
        raise ValueError(f"{source}: the U-Net's added conditioning reads {width} numbers, which is not the pooled text "
                         f"width ({pooled_width}) plus six size/crop embeddings (SDXL base; the refiner's aesthetic-score "
                         "conditioning is not supported)")
    return {"addition_embed_type": "text_time", "addition_time_embed_dim": (width - pooled_width) // 6,
            "projection_class_embeddings_input_dim": width}


def vae_config_from_tensors(tensors: dict[str, Tensor], prefix: str, source: str) -> VAEConfig:
    """The VAE config of an original-layout VAE (``first_stage_model.*``, or no prefix in a standalone VAE file)."""
    p = prefix
    levels = len(_indices(tensors, re.escape(p) + r"encoder\.down\.(\d+)\."))
    layers = len(_indices(tensors, re.escape(p) + r"encoder\.down\.0\.block\.(\d+)\."))
    if levels < 1 or layers < 1:
        raise ValueError(f"{source}: no VAE encoder blocks ({p}encoder.down.*)")
    channels = [_require(tensors, f"{p}encoder.down.{i}.block.0.conv1.weight", source)[0] for i in range(levels)]
    return VAEConfig(
        in_channels=_require(tensors, f"{p}encoder.conv_in.weight", source)[1],
        out_channels=_require(tensors, f"{p}decoder.conv_out.weight", source)[0],
        down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(channels), layers_per_block=layers,
        latent_channels=_require(tensors, f"{p}decoder.conv_in.weight", source)[1],
        use_quant_conv=f"{p}quant_conv.weight" in tensors, use_post_quant_conv=f"{p}post_quant_conv.weight" in tensors,
    )


def clip_config_from_tensors(text_state: dict[str, Tensor], family: str, tokenizer: Any, openclip: bool | None = None) -> dict[str, Any]:
    """A transformers ``CLIPTextConfig`` dict for ``CLIPTextTransformer`` tensors (see :mod:`.clip_keys`);
    ``openclip`` (default: SD 2.x) picks GELU, and a ``text_projection.weight`` makes it a model with projection."""
    vocab, width = text_state["embeddings.token_embedding.weight"].shape
    layers = len(_indices(text_state, r"encoder\.layers\.(\d+)\."))
    openclip = family == "sd2" if openclip is None else openclip
    projection = text_state[PROJECTION].shape[0] if PROJECTION in text_state else width
    return {
        "vocab_size": vocab, "hidden_size": width, "num_hidden_layers": layers,
        "intermediate_size": text_state["encoder.layers.0.mlp.fc1.weight"].shape[0],
        "num_attention_heads": max(1, width // HEAD_WIDTH),
        "max_position_embeddings": text_state["embeddings.position_embedding.weight"].shape[0],
        "hidden_act": "gelu" if openclip else "quick_gelu", "projection_dim": projection,
        "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
        "architectures": ["CLIPTextModelWithProjection" if PROJECTION in text_state else "CLIPTextModel"],
    }


def unet_to_diffusers_config(config: UNetConfig) -> dict[str, Any]:
    """A diffusers ``UNet2DConditionModel`` config dict that :meth:`UNetConfig.from_diffusers` reads back into a
    U-Net with the same parameters and function (heads are written per level, as diffusers' SD 2 configs do)."""
    if any(t.startswith("Attn") for t in (*config.down_block_types, *config.up_block_types)):
        raise ValueError("U-Nets with plain self-attention blocks have no Stable Diffusion layout")
    if config.class_embed_type or config.addition_embed_dim or not config.has_cross_attention:
        raise ValueError("only text-conditioned U-Nets without class embeddings (added ones: SDXL's text_time only) "
                         "have a Stable Diffusion layout")
    levels = range(config.num_levels)
    return {
        "_class_name": "UNet2DConditionModel", "sample_size": config.sample_size or 64,
        "in_channels": config.in_channels, "out_channels": config.out_channels,
        "block_out_channels": list(config.block_out_channels), "layers_per_block": config.layers_per_block,
        "down_block_types": list(config.down_block_types), "up_block_types": list(config.up_block_types),
        "mid_block_type": config.mid_block_type,
        "attention_head_dim": [config.attention_shape(i, "transformer")[0] for i in levels],
        "cross_attention_dim": config.cross_attention_dim,
        "transformer_layers_per_block": list(config.per_level("transformer_layers_per_block")),
        "use_linear_projection": config.use_linear_projection, "only_cross_attention": config.only_cross_attention,
        "upcast_attention": config.upcast_attention, "norm_num_groups": config.norm_num_groups, "norm_eps": config.norm_eps,
        "resnet_time_scale_shift": config.resnet_time_scale_shift, "downsample_padding": config.downsample_padding,
        "flip_sin_to_cos": config.flip_sin_to_cos, "freq_shift": config.freq_shift,
        "time_embedding_dim": config.time_embedding_dim, "center_input_sample": config.center_input_sample,
        "conv_in_kernel": config.conv_in_kernel, "conv_out_kernel": config.conv_out_kernel,
        "mid_block_scale_factor": config.mid_block_scale_factor, "dropout": config.dropout,
        "addition_embed_type": config.addition_embed_type, "addition_time_embed_dim": config.addition_time_embed_dim,
        "projection_class_embeddings_input_dim": config.projection_class_embeddings_input_dim,
    }


def vae_to_diffusers_config(config: VAEConfig) -> dict[str, Any]:
    """A diffusers ``AutoencoderKL`` config dict (:meth:`VAEConfig.from_diffusers` reads it back unchanged)."""
    data = {k: v for k, v in config.to_dict().items() if k not in ("type", "version")}
    return {"_class_name": "AutoencoderKL", **data}
