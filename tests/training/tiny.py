"""A tiny deterministic dataset and model config so training tests run in seconds on 2 cores."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from unstatic.training.config import load_config

TINY_UNET = {
    "block_out_channels": [16, 32], "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "mid_block_type": "UNetMidBlock2D", "layers_per_block": 1,
    "norm_num_groups": 8, "attention_head_dim": 8, "num_attention_heads": None, "cross_attention_dim": None,
}


TINY_TEXT_UNET = {
    **TINY_UNET, "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"], "mid_block_type": "UNetMidBlock2DCrossAttn",
    "use_linear_projection": True,
}


class TinyImages(Dataset):
    """``count`` smooth 1x8x8 images (``side`` x ``side``, ``channels`` copies) of a blob whose position depends on
    the label, with 3 class labels and captions naming the blob's side."""

    num_classes = 3
    class_names = ("left", "middle", "right")

    def __init__(self, count: int = 24, nan_at: int | None = None, side: int = 8, channels: int = 1) -> None:
        self.count, self.nan_at, self.side, self.channels = count, nan_at, side, channels

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.count:
            raise IndexError(index)
        label = index % 3
        g = torch.Generator().manual_seed(index)
        grid = torch.linspace(-1, 1, self.side)
        centre = torch.tensor([-0.5 + 0.5 * label, 0.0]) + 0.2 * torch.randn(2, generator=g)
        blob = torch.exp(-((grid[None, :] - centre[0]) ** 2 + (grid[:, None] - centre[1]) ** 2) / 0.2)
        image = (2 * blob - 1)[None].expand(self.channels, -1, -1).clone()
        if self.nan_at is not None and index == self.nan_at:
            image = torch.full_like(image, float("nan"))
        return {"image": image, "label": label, "caption": f"a blob on the {self.class_names[label]}"}


def tiny_config(output_dir, *overrides: str, unet: dict = TINY_UNET):
    """A config for TinyImages: class-conditional, dropout on (so the RNG state matters), small everything."""
    unet = "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in unet.items() if v is not None) + "}"
    base = [
        f'output_dir = "{output_dir}"', "steps = 6", "batch_size = 4", "log_every = 1", "checkpoint_every = 3",
        "keep_checkpoints = 2", "sample_every = 0", "data.resolution = 8", f"model.unet = {unet}",
        "model.dropout = 0.1", 'diffusion.conditioning = "class"', "optim.warmup_steps = 2", "optim.lr = 1e-3",
    ]
    return load_config(None, base + list(overrides))


def _toml(value) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


TINY_AUTOENCODER = [
    'task = "autoencoder"', "autoencoder.block_out_channels = [8, 16]", "autoencoder.norm_num_groups = 4",
    "autoencoder.latent_channels = 2", "autoencoder.scale_images = 12", "data.resolution = 16",
]
