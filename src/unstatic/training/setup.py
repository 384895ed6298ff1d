"""From a :class:`TrainConfig` and a dataset to the things a run trains: the model spec and the network."""

from __future__ import annotations

from torch import nn

from unstatic.data.registry import dataset_classes
from unstatic.models.spec import DiffusionSpec
from unstatic.networks import UNet, UNetConfig
from unstatic.training.config import TrainConfig


def build_spec(config: TrainConfig, dataset) -> DiffusionSpec:
    """The spec of the model this run trains: the diffusion setup plus the data's shape and classes."""
    diffusion = config.diffusion
    sample = dataset[0]["image"]
    if sample.ndim != 3 or sample.shape[1] != sample.shape[2]:
        raise ValueError(f"dataset images must be square [C, R, R], got {tuple(sample.shape)}")
    num_classes, class_names = dataset_classes(dataset) if diffusion.conditioning == "class" else (0, ())
    if diffusion.conditioning == "class" and num_classes < 1:
        raise ValueError(f"diffusion.conditioning = 'class' but the {config.data.name} dataset has no class labels")
    if diffusion.conditioning == "text" and not isinstance(dataset[0].get("caption"), str):
        raise ValueError(f"diffusion.conditioning = 'text' but the {config.data.name} dataset has no captions")
    text = dict(text_encoder=diffusion.text_encoder, text_max_length=diffusion.text_max_length) \
        if diffusion.conditioning == "text" else {}
    return DiffusionSpec(
        prediction=diffusion.prediction, schedule=diffusion.schedule, sigma_data=diffusion.sigma_data,
        image_size=sample.shape[-1], channels=sample.shape[0], conditioning=diffusion.conditioning,
        num_classes=num_classes, class_names=class_names, **text,
    )


def unet_config(config: TrainConfig, spec: DiffusionSpec, context_width: int | None = None) -> UNetConfig:
    """``model.unet`` fields if given, else our CPU-efficient U-Net of ``model.base_channels``; sized for the
    data's channels (plus mask and masked image for inpainting models) and resolution, with one extra class embedding for the null class of guidance, and
    cross-attention to ``context_width``-wide text states for text models."""
    model = config.model
    # An inpainting model also sees the mask and the masked image (sampling.inpaint.InpaintingConditioned).
    in_channels = 2 * spec.channels + 1 if config.diffusion.inpainting else spec.channels
    fixed = dict(in_channels=in_channels, out_channels=spec.channels, sample_size=spec.image_size, dropout=model.dropout)
    if spec.conditioning == "class":
        fixed.update(class_embed_type="embedding", num_class_embeds=spec.num_classes + 1)
    if spec.conditioning == "text":
        fixed.update(cross_attention_dim=context_width)
    if model.unet:  # lists (TOML/JSON arrays) become the config's tuples
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in model.unet.items()}
        return UNetConfig(**{**fields, **fixed})
    return UNetConfig.cpu_efficient(base_channels=model.base_channels, **{"cross_attention_dim": None, **fixed})


def build_network(config: TrainConfig, spec: DiffusionSpec, context_width: int | None = None) -> nn.Module:
    network = UNet(unet_config(config, spec, context_width))
    factor = 2 ** network.config.num_downsamplings
    if spec.image_size % factor:
        raise ValueError(f"data.resolution {spec.image_size} must be divisible by {factor}, the U-Net's down-sampling factor")
    if spec.conditioning == "text" and not network.config.has_cross_attention:
        raise ValueError("diffusion.conditioning = 'text' needs a U-Net with cross-attention (CrossAttn* blocks); "
                         "model.unet has none, so the text would be ignored")
    network.gradient_checkpointing = config.model.gradient_checkpointing
    return network
