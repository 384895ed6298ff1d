"""A diffusion model on disk in our format. Always ``model.json`` (the :class:`DiffusionSpec`) and ``unet/`` (the
network, ``config.json`` + ``model.safetensors``); a latent model adds ``vae/`` (an :class:`AutoencoderKL` in
the same format), and a CLIP-conditioned one ``text_encoder/`` + ``tokenizer/`` (transformers' own files; SDXL
also ``text_encoder_2/`` + ``tokenizer_2/`` and ``text_encoders.json``). This
is what training writes, what ``unstatic convert --to unstatic`` writes, and what sampling loads."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from unstatic.denoisers.precondition import Preconditioned
from unstatic.models.spec import DiffusionSpec
from unstatic.networks.narrow_weights import input_dtype
from unstatic.networks.weights import WEIGHTS_NAME, load_model, save_model
from unstatic.text.registry import FOLDER_TEXT_ENCODERS

SPEC_NAME = "model.json"
NETWORK_FOLDER = "unet"
VAE_FOLDER = "vae"
TEXT_ENCODER_FOLDER = "text_encoder"
TOKENIZER_FOLDER = "tokenizer"


@dataclass(frozen=True, eq=False)
class DiffusionModel:
    """A network with its :class:`DiffusionSpec`; ``denoiser`` is what samplers take. Latent models carry their
    ``vae``; models conditioned on a CLIP from their own folder carry its ``text_encoder`` (a loaded
    :class:`~unstatic.text.CLIPTextEncoder`)."""

    network: nn.Module
    spec: DiffusionSpec
    vae: nn.Module | None = None
    text_encoder: Any = None

    def __post_init__(self) -> None:
        if self.spec.latent and self.vae is None:
            raise ValueError("a latent model (spec.latent) needs its vae")
        if self.vae is not None and self.vae.config.latent_channels != self.spec.channels:
            raise ValueError(
                f"the VAE makes {self.vae.config.latent_channels}-channel latents but the spec says channels={self.spec.channels}"
            )

    @property
    def denoiser(self) -> Preconditioned:
        return self.spec.denoiser(self.network)

    @property
    def image_channels(self) -> int:
        """Channels of the images the model makes (the VAE's for latent models, else ``spec.channels``)."""
        return self.vae.config.out_channels if self.vae is not None else self.spec.channels

    @property
    def pixels_per_cell(self) -> int:
        """Image pixels per sampled cell along a side: the VAE's downsampling factor, 1 in pixel space."""
        return self.vae.config.downsampling_factor if self.vae is not None else 1

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """Images in the data range to what the network denoises: VAE latents from the posterior mean
        (Rombach et al. 2022, Sec. 3; scaled by the VAE config's factors), or the images themselves."""
        if self.vae is None:
            return images
        vae_dtype = input_dtype(self.vae)
        return self.vae.encode_latents(images.to(vae_dtype)).float()

    @torch.no_grad()
    def decode(self, samples: Tensor) -> Tensor:
        """What sampling returns back to images in the data range [-1, 1] (decoded once for latent models)."""
        if self.vae is not None:
            vae_dtype = input_dtype(self.vae)
            samples = self.vae.decode_latents(samples.to(vae_dtype)).float()
        return samples.clamp(-1, 1)


def save_diffusion_model(
    network: nn.Module, spec: DiffusionSpec, folder: str | Path, storage_dtype: torch.dtype | None = None,
    vae: nn.Module | None = None, text_encoder: Any = None,
) -> Path:
    """Write ``folder/model.json`` and ``folder/unet/`` (and ``vae/``, ``text_encoder/`` + ``tokenizer/`` when
    given); the folder loads with :func:`load_diffusion_model`. ``storage_dtype`` (float16/bfloat16) stores the
    U-Net and VAE weights at half the size; they load back as float32."""
    folder = Path(folder)
    DiffusionModel(network, spec, vae, text_encoder)  # the same consistency checks as loading
    if spec.text_encoder in FOLDER_TEXT_ENCODERS and text_encoder is None:
        raise ValueError(f"a model conditioned on its own CLIP (text_encoder={spec.text_encoder!r}) needs the text_encoder to save")
    save_model(network, folder / NETWORK_FOLDER, storage_dtype)
    if vae is not None:
        save_model(vae, folder / VAE_FOLDER, storage_dtype)
    if spec.text_encoder in FOLDER_TEXT_ENCODERS:
        text_encoder.save(folder)  # text_encoder/ + tokenizer/ (SDXL: and text_encoder_2/ + tokenizer_2/)
    (folder / SPEC_NAME).write_text(json.dumps(spec.to_dict(), indent=2) + "\n")
    return folder


def save(model: DiffusionModel, folder: str | Path, storage_dtype: torch.dtype | None = None) -> Path:
    """:func:`save_diffusion_model` for a whole :class:`DiffusionModel`."""
    return save_diffusion_model(model.network, model.spec, folder, storage_dtype, model.vae, model.text_encoder)


def weights_hash(folder: str | Path) -> str:
    """A model folder's short hash as A1111 writes "Model hash": the first 10 hex digits of the SHA-256 of its
    network weights file (A1111 hashes the checkpoint file the same way)."""
    return file_hash(Path(folder) / NETWORK_FOLDER / WEIGHTS_NAME)


def file_hash(path: str | Path) -> str:
    """The first 10 hex digits of a file's SHA-256 (A1111's short "Model hash" of a checkpoint file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
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
    needed = [NETWORK_FOLDER] + [VAE_FOLDER] * spec.latent
    needed += list(FOLDER_TEXT_ENCODERS.get(spec.text_encoder, ()))
    missing = [name for name in needed if not (folder / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {', '.join(f'{name}/' for name in missing)}, which its {SPEC_NAME} needs")
    network = load_model(folder / NETWORK_FOLDER, dtype=dtype, device=device)
    vae = load_model(folder / VAE_FOLDER, dtype=dtype, device=device) if spec.latent else None
    text_encoder = None
    if spec.text_encoder in FOLDER_TEXT_ENCODERS:
        from unstatic.text.registry import load_folder_text_encoder

        text_encoder = load_folder_text_encoder(spec.text_encoder, folder, device=device or "cpu",
                                                clip_skip=spec.clip_skip, max_length=spec.text_max_length)
    return DiffusionModel(network, spec, vae, text_encoder)
