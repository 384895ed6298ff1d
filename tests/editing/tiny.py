"""Tiny random-weight models for the editing tests, and a counter of network calls."""

from __future__ import annotations

import torch

from tests.training.tiny import TINY_UNET
from unstatic.models import DiffusionModel, DiffusionSpec
from unstatic.networks import UNet, UNetConfig


def tiny_model(conditioning: str = "class", in_channels: int = 3) -> DiffusionModel:
    """An 8x8 RGB model (down-sampling factor 2); ``in_channels=7`` makes it an inpainting model."""
    torch.manual_seed(0)
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY_UNET.items()}
    if conditioning == "class":
        options.update(class_embed_type="embedding", num_class_embeds=4)
    network = UNet(UNetConfig(in_channels=in_channels, out_channels=3, **options)).eval()
    spec = DiffusionSpec(image_size=8, conditioning=conditioning, num_classes=3 if conditioning == "class" else 0,
                         class_names=("circle", "square", "star") if conditioning == "class" else ())
    return DiffusionModel(network, spec)


class CallCounter:
    """Counts forward calls of a module and remembers the input shapes (a forward pre-hook)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.shapes: list[tuple[int, ...]] = []
        module.register_forward_pre_hook(lambda _, args: self.shapes.append(tuple(args[0].shape)))

    @property
    def calls(self) -> int:
        return len(self.shapes)
