"""The Stable Diffusion U-Net's original names (CompVis/Stability ``ldm.modules.diffusionmodules.openaimodel
.UNetModel``, under ``model.diffusion_model.`` in a checkpoint) and ours (diffusers').

The original keeps flat, numbered lists where diffusers has named blocks:

=========================================  ===================================================================
ours (diffusers)                           original
=========================================  ===================================================================
``time_embedding.linear_1`` / ``_2``       ``time_embed.0`` / ``time_embed.2``
``add_embedding.linear_1`` / ``_2``        ``label_emb.0.0`` / ``label_emb.0.2`` (SDXL's added conditioning)
``conv_in``                                ``input_blocks.0.0``
``down_blocks.i.resnets.j``                ``input_blocks.k.0``, k = 1 + (layers of levels < i, +1 each) + j
``down_blocks.i.attentions.j``             ``input_blocks.k.1``
``down_blocks.i.downsamplers.0.conv``      ``input_blocks.k.0.op`` (k: the entry after the level's last layer)
``mid_block.resnets.0`` / ``attentions.0`` / ``resnets.1``   ``middle_block.0`` / ``.1`` / ``.2``
``up_blocks.i.resnets.j``                  ``output_blocks.k.0``, k counting every up layer before it
``up_blocks.i.attentions.j``               ``output_blocks.k.1``
``up_blocks.i.upsamplers.0.conv``          ``output_blocks.k.1.conv`` (``.2.conv`` on levels with attention),
                                           k the level's last layer
``conv_norm_out`` / ``conv_out``           ``out.0`` / ``out.2``
=========================================  ===================================================================

Inside a ResNet block ``norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut`` are ``in_layers.0,
in_layers.2, emb_layers.1, out_layers.0, out_layers.3, skip_connection``; inside a transformer
(``SpatialTransformer``) every name is already the same. Up block i is the up path's i-th level from the
bottom, like ``output_blocks``; it has one layer more than its down level.
"""

from __future__ import annotations

from torch import Tensor, nn

from unstatic.models.stable_diffusion.key_maps import Prefix, build_key_map
from unstatic.networks.unet_config import UNetConfig

PREFIX = "model.diffusion_model."

RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1", "norm2": "out_layers.0",
          "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}


def unet_prefixes(config: UNetConfig) -> list[Prefix]:
    """The module pairs of the table above for a U-Net of this config."""
    pairs = [Prefix("time_embedding.linear_1", "time_embed.0"), Prefix("time_embedding.linear_2", "time_embed.2"),
             Prefix("conv_in", "input_blocks.0.0"), Prefix("conv_norm_out", "out.0"), Prefix("conv_out", "out.2")]
    if config.addition_embed_type == "text_time":  # SDXL: nn.Sequential(nn.Sequential(linear, SiLU, linear))
        pairs += [Prefix("add_embedding.linear_1", "label_emb.0.0"), Prefix("add_embedding.linear_2", "label_emb.0.2")]
    layers, levels = config.per_level("layers_per_block"), config.num_levels
    k = 1
    for i in range(levels):
        for j in range(layers[i]):
            pairs += [Prefix(f"down_blocks.{i}.resnets.{j}", f"input_blocks.{k}.0", RESNET),
                      Prefix(f"down_blocks.{i}.attentions.{j}", f"input_blocks.{k}.1")]
            k += 1
        if i < levels - 1:
            pairs.append(Prefix(f"down_blocks.{i}.downsamplers.0.conv", f"input_blocks.{k}.0.op"))
            k += 1
    pairs += [Prefix("mid_block.resnets.0", "middle_block.0", RESNET), Prefix("mid_block.attentions.0", "middle_block.1"),
              Prefix("mid_block.resnets.1", "middle_block.2", RESNET)]
    k = 0
    for i, block in enumerate(config.up_block_types):
        for j in range(layers[levels - 1 - i] + 1):
            pairs += [Prefix(f"up_blocks.{i}.resnets.{j}", f"output_blocks.{k}.0", RESNET),
                      Prefix(f"up_blocks.{i}.attentions.{j}", f"output_blocks.{k}.1")]
            k += 1
        if i < levels - 1:
            slot = 2 if block.startswith(("CrossAttn", "Attn")) else 1
            pairs.append(Prefix(f"up_blocks.{i}.upsamplers.0.conv", f"output_blocks.{k - 1}.{slot}.conv"))
    return pairs


def unet_key_map(config: UNetConfig, model: nn.Module) -> dict[str, str]:
    """Our parameter name -> original name (without ``model.diffusion_model.``) for ``model``'s every tensor."""
    if config.mid_block_type not in (None, "UNetMidBlock2DCrossAttn") or config.class_embed_type or config.addition_embed_dim:
        raise ValueError("only Stable-Diffusion-shaped U-Nets (no class embeddings; added ones only SDXL's) have original names")
    return build_key_map(model.state_dict(), unet_prefixes(config), "U-Net")


def unet_to_original(state_dict: dict[str, Tensor], key_map: dict[str, str]) -> dict[str, Tensor]:
    """Our U-Net state dict under its checkpoint names (shapes are the same in both layouts)."""
    return {PREFIX + key_map[k]: v for k, v in state_dict.items()}
