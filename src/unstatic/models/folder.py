"""A trained diffusion model on disk: ``model.json`` (the :class:`DiffusionSpec`) and ``unet/`` (the network in
our format, ``config.json`` + ``model.safetensors``). This is what training writes and sampling loads."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from unstatic.denoisers.precondition import Preconditioned
from unstatic.models.spec import DiffusionSpec
from unstatic.networks.weights import WEIGHTS_NAME, load_model, save_model

SPEC_NAME = "model.json"
NETWORK_FOLDER = "unet"


@dataclass(frozen=True, eq=False)
class DiffusionModel:
    """A network with its :class:`DiffusionSpec`; ``denoiser`` is what samplers take."""

    network: nn.Module
    spec: DiffusionSpec

    @property
    def denoiser(self) -> Preconditioned:
        return self.spec.denoiser(self.network)


def save_diffusion_model(
    network: nn.Module, spec: DiffusionSpec, folder: str | Path, storage_dtype: torch.dtype | None = None
) -> Path:
    """Write ``folder/model.json`` and ``folder/unet/``; the folder loads with :func:`load_diffusion_model`.
    ``storage_dtype`` (float16/bfloat16) stores the weights at half the size; they load back as float32."""
    folder = Path(folder)
    save_model(network, folder / NETWORK_FOLDER, storage_dtype)
    (folder / SPEC_NAME).write_text(json.dumps(spec.to_dict(), indent=2) + "\n")
    return folder


def weights_hash(folder: str | Path) -> str:
    """A model folder's short hash as A1111 writes "Model hash": the first 10 hex digits of the SHA-256 of its
    network weights file (A1111 hashes the checkpoint file the same way)."""
    digest = hashlib.sha256()
    with open(Path(folder) / NETWORK_FOLDER / WEIGHTS_NAME, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:10]


def load_diffusion_model(
    folder: str | Path, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> DiffusionModel:
    """Read a folder written by :func:`save_diffusion_model` (or by training)."""
    folder = Path(folder)
    spec_path = folder / SPEC_NAME
    if not spec_path.is_file():
        raise FileNotFoundError(f"{folder} is not a diffusion model folder: {SPEC_NAME} is missing")
    spec = DiffusionSpec.from_dict(json.loads(spec_path.read_text()))
    return DiffusionModel(load_model(folder / NETWORK_FOLDER, dtype=dtype, device=device), spec)
