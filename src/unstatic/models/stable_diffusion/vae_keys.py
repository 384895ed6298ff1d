"""The Stable Diffusion VAE's original names (``ldm.models.autoencoder.AutoencoderKL``, under
``first_stage_model.`` in a checkpoint) and ours (diffusers').

=================================================  ==========================================================
ours (diffusers)                                   original
=================================================  ==========================================================
``encoder.down_blocks.i.resnets.j``                ``encoder.down.i.block.j``
``encoder.down_blocks.i.downsamplers.0.conv``      ``encoder.down.i.downsample.conv``
``decoder.up_blocks.i.resnets.j``                  ``decoder.up.(n-1-i).block.j`` (the original numbers the
``decoder.up_blocks.i.upsamplers.0.conv``          ``decoder.up.(n-1-i).upsample.conv``   levels by resolution)
``{en,de}coder.mid_block.resnets.0`` / ``.1``      ``{en,de}coder.mid.block_1`` / ``block_2``
``{en,de}coder.mid_block.attentions.0``            ``{en,de}coder.mid.attn_1``
``{en,de}coder.conv_norm_out``                     ``{en,de}coder.norm_out``
``conv_in``, ``conv_out``, ``quant_conv``, ``post_quant_conv``   the same
=================================================  ==========================================================

Inside a ResNet block ``conv_shortcut`` is ``nin_shortcut``; inside the mid attention ``group_norm, to_q,
to_k, to_v, to_out.0`` are ``norm, q, k, v, proj_out``, and the original's four projections are 1x1
convolutions (``[C, C, 1, 1]``) where ours are linear layers (``[C, C]``).
"""

from __future__ import annotations

from torch import Tensor, nn

from unstatic.models.stable_diffusion.key_maps import Prefix, build_key_map
from unstatic.networks.vae import VAEConfig

PREFIX = "first_stage_model."

RESNET = {"conv_shortcut": "nin_shortcut"}
ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_CONV_PROJECTIONS = tuple(f".mid.attn_1.{name}.weight" for name in ("q", "k", "v", "proj_out"))


def vae_prefixes(config: VAEConfig) -> list[Prefix]:
    levels, layers = len(config.block_out_channels), config.layers_per_block
    pairs = [Prefix(name, name) for name in ("encoder.conv_in", "encoder.conv_out", "decoder.conv_in", "decoder.conv_out",
                                             "quant_conv", "post_quant_conv")]
    for side in ("encoder", "decoder"):
        pairs += [Prefix(f"{side}.conv_norm_out", f"{side}.norm_out"),
                  Prefix(f"{side}.mid_block.resnets.0", f"{side}.mid.block_1", RESNET),
                  Prefix(f"{side}.mid_block.resnets.1", f"{side}.mid.block_2", RESNET),
                  Prefix(f"{side}.mid_block.attentions.0", f"{side}.mid.attn_1", ATTENTION)]
    for i in range(levels):
        pairs += [Prefix(f"encoder.down_blocks.{i}.resnets.{j}", f"encoder.down.{i}.block.{j}", RESNET) for j in range(layers)]
        pairs += [Prefix(f"decoder.up_blocks.{i}.resnets.{j}", f"decoder.up.{levels - 1 - i}.block.{j}", RESNET)
                  for j in range(layers + 1)]
        if i < levels - 1:
            pairs += [Prefix(f"encoder.down_blocks.{i}.downsamplers.0.conv", f"encoder.down.{i}.downsample.conv"),
                      Prefix(f"decoder.up_blocks.{i}.upsamplers.0.conv", f"decoder.up.{levels - 1 - i}.upsample.conv")]
    return pairs


def vae_key_map(config: VAEConfig, model: nn.Module) -> dict[str, str]:
    """Our parameter name -> original name (without ``first_stage_model.``)."""
    return build_key_map(model.state_dict(), vae_prefixes(config), "VAE")


def vae_to_original(state_dict: dict[str, Tensor], key_map: dict[str, str]) -> dict[str, Tensor]:
    """Our VAE state dict under its checkpoint names, attention projections as 1x1 convolutions."""
    out = {}
    for key, value in state_dict.items():
        name = PREFIX + key_map[key]
        out[name] = value[:, :, None, None] if name.endswith(_CONV_PROJECTIONS) else value
    return out


def vae_from_original(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """The inverse reshaping, on an already renamed state dict (our names): 1x1 convolutions back to linear."""
    return {k: v[:, :, 0, 0] if v.ndim == 4 and ".attentions." in k else v for k, v in state_dict.items()}
