"""What a diffusion run trains and how (``task = "diffusion"``): the U-Net of the spec the data implies, the
denoising loss of :mod:`unstatic.training.losses`, the exported model folder and the sample-grid previews.

With ``data.vae`` it is latent diffusion (Rombach et al. 2022): the data are the VAE's latents (encoded once,
:mod:`unstatic.training.latent_cache`), the spec is latent, the exported folder carries the VAE, and previews are
decoded to pixels."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from unstatic.models.conditioning import Conditioner
from unstatic.models.folder import DiffusionModel, load_diffusion_model, save_diffusion_model
from unstatic.networks.weights import load_model
from unstatic.sampling.inpaint import InpaintingConditioned, masked_image
from unstatic.training.batches import seed_weight_init
from unstatic.training.config import TrainConfig
from unstatic.training.inpaint_masks import random_masks
from unstatic.training.latent_cache import LatentDataset
from unstatic.training.losses import diffusion_loss, drop_conditions, drop_mask, get_weighting
from unstatic.training.noise_levels import get_noise_levels, sample_noise
from unstatic.training.previews import write_previews
from unstatic.training.setup import build_network, build_spec


class DiffusionTask:
    """The trainable network (``network``, also the module compiled and wrapped for DDP) and the task's hooks."""

    adversary = None  # no second network (the autoencoder task may have a discriminator)

    def __init__(self, config: TrainConfig, dataset: Dataset, device: torch.device, progress: bool) -> None:
        self.config, self.device = config, device
        self.vae = None
        if config.data.vae:
            self.vae = _load_vae(config.data.vae)
            cache = Path(config.data.latent_cache or Path(config.output_dir) / "latents")
            dataset = LatentDataset(dataset, self.vae, cache, describe_data(config), progress=progress)
        self.dataset = dataset
        self.spec = build_spec(config, dataset)
        if self.vae is not None:
            self.spec = dataclasses.replace(self.spec, latent=True)
        self.conditioner = Conditioner(self.spec, device)
        width = self.conditioner.text_encoder.width if self.spec.conditioning == "text" else None
        seed_weight_init(config.seed)
        self.network = build_network(config, self.spec, width)
        diffusion = config.diffusion
        self.noise_levels = get_noise_levels(diffusion.noise_levels, self.spec.build_schedule(), **diffusion.noise_level_options)
        self.weighting = get_weighting(diffusion.weighting, **diffusion.weighting_options)
        self.null = self.conditioner.null()

    @property
    def forward_module(self) -> nn.Module:
        return self.network

    def loss(self, model: nn.Module, batch: dict, generator: torch.Generator, rows: slice, world: int,
             step: int = 0) -> Tensor:
        """The denoising loss of this rank's ``rows`` of a global batch whose randomness comes from ``generator``
        (drawn for all ``world`` ranks, so W processes compute what one process with the whole batch would).
        The same at every optimizer ``step``."""
        config, device = self.config, self.device
        x0 = batch["image"].to(device)
        shape = (x0.shape[0] * world, *x0.shape[1:])
        sigma = self.noise_levels(shape[0], generator)
        noise = sample_noise(shape, generator, config.diffusion.offset_noise)
        mask = drop_mask(shape[0], config.diffusion.cond_dropout, generator)
        sigma, noise, mask = sigma[rows].to(device), noise[rows].to(device), mask[rows]
        cond = self.conditioner.from_batch(batch)
        if cond is not None:
            cond = drop_conditions(cond, mask, self.null)
        network = model
        if config.diffusion.inpainting:  # drawn last, so other runs' random streams are unchanged
            regions = random_masks(shape[0], shape[-2], shape[-1], generator)[rows].to(device)
            network = InpaintingConditioned(model, regions, masked_image(x0, regions))
        loss, _ = diffusion_loss(self.spec.denoiser(network), x0, noise, sigma, cond, self.weighting)
        return loss

    def initial_weights(self, folder: Path) -> dict[str, Tensor]:
        """The network weights of a model folder (``init_from``); its spec must be this run's."""
        try:
            loaded = load_diffusion_model(folder)
        except (FileNotFoundError, ValueError, KeyError) as error:
            raise ValueError(f"cannot be loaded: {error}") from error
        if loaded.spec != self.spec:
            raise ValueError(f"was trained with another setup:\n  its spec: {loaded.spec}\n  this run: {self.spec}")
        return loaded.network.state_dict()

    def export(self, network: nn.Module, folder: Path, storage: torch.dtype | None) -> None:
        save_diffusion_model(network, self.spec, folder, storage, vae=self.vae)

    def previews(self, network: nn.Module, output: Path, step: int) -> None:
        prompts = None
        if self.spec.conditioning == "text":
            prompts = [self.dataset[i]["caption"] for i in range(min(self.config.sample_count, len(self.dataset)))]
        write_previews(DiffusionModel(network.eval(), self.spec, self.vae), output, step, self.config, prompts,
                       self.conditioner)


def describe_data(config: TrainConfig) -> dict:
    """What the images are: the data section without the settings that do not change them."""
    return {"name": config.data.name, "resolution": config.data.resolution, "options": config.data.options}


def _load_vae(folder: str) -> nn.Module:
    try:
        vae = load_model(folder)
    except (FileNotFoundError, ValueError, KeyError) as error:
        raise ValueError(f"data.vae={folder!r} cannot be loaded as a VAE folder: {error}") from error
    if not hasattr(vae, "encode_latents"):
        raise ValueError(f"data.vae={folder!r} holds a {type(vae).__name__}, not a VAE (AutoencoderKL)")
    return vae.eval().requires_grad_(False)
