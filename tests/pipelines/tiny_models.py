"""Tiny random-weight model folders for pipeline and CLI tests: class, unconditional and text (MiniLM) models
at 8x8, written with save_diffusion_model so they load the way users' folders do."""

from __future__ import annotations

from pathlib import Path

import torch

from tests.training.tiny import TINY_TEXT_UNET, TINY_UNET
from unstatic.models import DiffusionSpec, save_diffusion_model
from unstatic.networks import UNet, UNetConfig

CLASS_NAMES = ("circle", "square", "star")


def tiny_model_folder(folder: Path, conditioning: str = "class", text_max_length: int = 8) -> Path:
    """A model folder with a seeded random U-Net; text models use MiniLM with a short token limit."""
    torch.manual_seed(0)
    unet = TINY_TEXT_UNET if conditioning == "text" else TINY_UNET
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in unet.items()}
    spec_options: dict = {}
    if conditioning == "class":
        options.update(class_embed_type="embedding", num_class_embeds=len(CLASS_NAMES) + 1)
        spec_options = dict(num_classes=len(CLASS_NAMES), class_names=CLASS_NAMES)
    elif conditioning == "text":
        options.update(cross_attention_dim=384)
        spec_options = dict(text_encoder="minilm", text_max_length=text_max_length)
    network = UNet(UNetConfig(in_channels=3, out_channels=3, **options)).eval()
    spec = DiffusionSpec(image_size=8, conditioning=conditioning, **spec_options)
    return save_diffusion_model(network, spec, folder)
