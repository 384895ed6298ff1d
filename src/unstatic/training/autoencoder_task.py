"""What an autoencoder run trains and how (``task = "autoencoder"``): the VAE of the ``[autoencoder]`` section, its
reconstruction + KL loss (:mod:`unstatic.training.autoencoder`), the exported VAE folder (with its latent scaling
factor measured on the data) and previews of originals above their reconstructions, with PSNR and SSIM."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from unstatic.core.image_quality import SSIM_WINDOW
from unstatic.grids import image_grid
from unstatic.networks.weights import load_model, save_model
from unstatic.training.autoencoder import (
    Reconstruction,
    autoencoder_loss,
    build_autoencoder,
    latent_scale,
    reconstruct,
    reconstruction_quality,
)
from unstatic.training.batches import seed_weight_init
from unstatic.training.config import TrainConfig
from unstatic.training.discriminator import Adversary, minimum_side
from unstatic.training.metrics import write_atomically
from unstatic.training.previews import save_grid


class AutoencoderTask:
    def __init__(self, config: TrainConfig, dataset: Dataset, device: torch.device, progress: bool) -> None:
        self.config, self.device, self.dataset = config, device, dataset
        image = dataset[0]["image"]
        if image.ndim != 3 or image.shape[1] != image.shape[2]:
            raise ValueError(f"dataset images must be square [C, R, R], got {tuple(image.shape)}")
        seed_weight_init(config.seed)
        self.network = build_autoencoder(config.autoencoder, image.shape[0], image.shape[-1])
        crop, factor = config.autoencoder.crop, self.network.config.downsampling_factor
        if crop and (crop > image.shape[-1] or crop % factor):
            raise ValueError(f"autoencoder.crop {crop} must be at most the image side {image.shape[-1]} and a multiple "
                             f"of the down-sampling factor {factor}")
        if config.autoencoder.ssim_weight and min(crop or image.shape[-1], image.shape[-1]) < SSIM_WINDOW:
            raise ValueError(f"autoencoder.ssim_weight needs windows of at least {SSIM_WINDOW} pixels (autoencoder.crop "
                             f"or the image side); set it to 0 or use larger images")
        self.forward_module = Reconstruction(self.network)
        self.adversary = self._adversary(config, image.shape[0], crop or image.shape[-1])

    def _adversary(self, config: TrainConfig, channels: int, side: int) -> Adversary | None:
        settings = config.autoencoder
        if not settings.disc_weight:
            return None
        if settings.disc_layers < 1 or settings.disc_width < 1 or settings.disc_start < 0 or settings.disc_weight < 0:
            raise ValueError("autoencoder.disc_layers and disc_width must be at least 1, disc_start and disc_weight "
                             "not negative")
        if side < minimum_side(settings.disc_layers):
            raise ValueError(f"autoencoder.disc_layers = {settings.disc_layers} needs images (or crops) of at least "
                             f"{minimum_side(settings.disc_layers)} pixels, these are {side}: use fewer layers")
        return Adversary(channels, settings, config.optim.lr, self.device)

    def loss(self, model: nn.Module, batch: dict, generator: torch.Generator, rows: slice, world: int,
             step: int = 0) -> Tensor:
        """This rank's ``rows`` of the global batch; the posterior draws come from ``generator`` for every rank.
        From ``autoencoder.disc_start`` on, plus the adaptively weighted adversarial term."""
        x = batch["image"].to(self.device)
        cfg, crop = self.network.config, self.config.autoencoder.crop
        count = x.shape[0] * world
        if crop:  # a window per image, drawn first for the global batch
            corners = torch.randint(0, x.shape[-1] - crop + 1, (count, 2), generator=generator)[rows]
            x = torch.stack([image[:, top:top + crop, left:left + crop] for image, (top, left) in zip(x, corners.tolist())])
        factor = cfg.downsampling_factor
        eps = torch.randn((count, cfg.latent_channels, x.shape[-2] // factor, x.shape[-1] // factor), generator=generator)
        eps = eps[rows].to(self.device)
        reconstruction, mean, logvar = model(x, eps)
        loss = autoencoder_loss(x, reconstruction, mean, logvar, self.config.autoencoder)
        if self.adversary is not None:
            last_layer = self.network.decoder.conv_out.weight
            loss = loss + self.adversary.generator_term(x, reconstruction, loss, last_layer, step)
        return loss

    def initial_weights(self, folder: Path) -> dict[str, Tensor]:
        try:
            vae = load_model(folder)
        except (FileNotFoundError, ValueError, KeyError) as error:
            raise ValueError(f"cannot be loaded: {error}") from error
        if dataclasses.replace(vae.config, scaling_factor=1.0) != self.network.config:  # the scale is measured anew
            raise ValueError(f"has another architecture:\n  its config: {vae.config}\n  this run:   {self.network.config}")
        return vae.state_dict()

    def export(self, network: nn.Module, folder: Path, storage: torch.dtype | None) -> None:
        """The VAE folder, with ``scaling_factor`` = 1 / std of its latents on the first ``scale_images`` images."""
        scale = latent_scale(network.eval(), self.dataset, self.config.autoencoder.scale_images)
        network.config = dataclasses.replace(network.config, scaling_factor=scale)
        save_model(network, folder, storage)

    def previews(self, network: nn.Module, output: Path, step: int) -> None:
        """Originals (top rows) above their reconstructions, and ``samples/step-XXXXXXXX.json`` with their quality."""
        count = min(self.config.sample_count, len(self.dataset))
        images = torch.stack([self.dataset[i]["image"] for i in range(count)])
        reconstructions = reconstruct(network.eval(), images)
        quality = reconstruction_quality(images, reconstructions)
        grid = image_grid(torch.cat([images, reconstructions]), nrow=count, scale=max(1, 64 // images.shape[-1]))
        path = save_grid(grid, output, step)
        write_atomically(path.with_suffix(".json"), (json.dumps({"step": step, **quality}) + "\n").encode())
