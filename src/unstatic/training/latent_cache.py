"""Latents for latent diffusion training, encoded once (Rombach et al. 2022, Sec. 3: the diffusion model never
sees pixels, so encoding every image at every epoch would repeat the most expensive part of a step for nothing).

:class:`LatentDataset` wraps an image dataset: on first use it encodes every image with the VAE (posterior mean,
scaled by the VAE's ``scaling_factor``, as sampling decodes them) and writes one safetensors file holding the
latents (float16: latents have unit scale, where float16's 3 significant digits sit far below the noise the
model learns to remove) and, in its metadata, each item's other fields (caption, label). Later runs read that file
and never touch the images again. The file name carries a hash of the VAE's weights and of the data settings, so
a different VAE or dataset never reuses a stale cache; it is written atomically, so an interrupted encoding
leaves nothing behind."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm import tqdm

from unstatic.training.metrics import write_atomically

ENCODE_BATCH = 32


class LatentDataset(Dataset):
    """``dataset``'s items with ``image`` replaced by its VAE latents ``[C, h, w]`` (float32), from the cache in
    ``folder`` (built on first use). ``description`` identifies the data (name, resolution, options)."""

    def __init__(self, dataset: Dataset, vae: nn.Module, folder: str | Path, description: dict[str, Any],
                 progress: bool = True) -> None:
        self.path = Path(folder) / f"latents-{cache_key(vae, dataset, description)}.safetensors"
        if not self.path.is_file():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, encode_dataset(dataset, vae, description, progress))
        tensors = load_file(self.path)
        with safe_open(self.path, framework="pt") as handle:
            self.items = json.loads(handle.metadata()["items"])
        self.latents = tensors["latents"]
        if len(self.items) != len(self.latents):
            raise ValueError(f"{self.path} is inconsistent ({len(self.latents)} latents, {len(self.items)} items); delete it")
        # what the trainer asks a dataset about its classes
        self.num_classes = getattr(dataset, "num_classes", 0)
        self.class_names = getattr(dataset, "class_names", None)

    def __len__(self) -> int:
        return len(self.latents)

    def __getitem__(self, index: int) -> dict:
        return {**self.items[index], "image": self.latents[index].float()}


def cache_key(vae: nn.Module, dataset: Dataset, description: dict[str, Any]) -> str:
    """16 hex digits of a SHA-256 over the VAE's config and weights, the data's description and length, and the
    first and last images (a dataset handed to ``train`` in Python may not match its config's description)."""
    digest = hashlib.sha256(json.dumps({"data": description, "length": len(dataset), "vae": vae.config.to_dict()},
                                       sort_keys=True, default=str).encode())
    for index in {0, len(dataset) - 1}:
        digest.update(dataset[index]["image"].float().numpy().tobytes())
    for name, tensor in sorted(vae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().float().numpy().tobytes())  # C order, whatever the memory layout
    return digest.hexdigest()[:16]


@torch.no_grad()
def encode_dataset(dataset: Dataset, vae: nn.Module, description: dict[str, Any], progress: bool) -> bytes:
    """The cache file's bytes: every item's latents (posterior mean, scaled) and its other fields."""
    device = next(vae.parameters()).device
    latents: list[Tensor] = []
    items: list[dict[str, Any]] = []
    bar = tqdm(total=len(dataset), desc="encoding latents", unit="img", disable=not progress)
    for start in range(0, len(dataset), ENCODE_BATCH):
        batch = [dataset[i] for i in range(start, min(start + ENCODE_BATCH, len(dataset)))]
        images = torch.stack([item["image"] for item in batch]).to(device)
        latents.append(vae.encode_latents(images).to(torch.float16).cpu())
        for item in batch:
            rest = {k: v for k, v in item.items() if k != "image"}
            try:
                json.dumps(rest)
            except TypeError as error:
                raise ValueError(f"a dataset item's fields must be JSON values to be cached with its latents: {error}") from error
            items.append(rest)
        bar.update(len(batch))
    bar.close()
    metadata = {"items": json.dumps(items), "data": json.dumps(description, default=str)}
    return save({"latents": torch.cat(latents)}, metadata=metadata)
