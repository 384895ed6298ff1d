"""Sample grids during training, so users can watch the model learn: the EMA weights, fixed seeds (the same
images at every step), one tile per class for class-conditional models; latent models' samples decoded."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image

from unstatic.grids import image_grid
from unstatic.models.folder import DiffusionModel
from unstatic.sampling.from_model import sample_model
from unstatic.sampling.inpaint import InpaintingConditioned
from unstatic.training.metrics import write_atomically


def write_previews(model: DiffusionModel, output: Path, step: int, config, prompts=None, conditioner=None) -> Path:
    """Write ``samples/step-XXXXXXXX.png`` (and ``samples/latest.png``); returns the step's path. Text models
    draw ``prompts`` (the trainer passes the first captions of the dataset), captioned under each tile."""
    count = config.sample_count
    prompts = list(prompts)[:count] if model.spec.conditioning == "text" else None
    count = len(prompts) if prompts is not None else count
    edit = {}
    if config.diffusion.inpainting:  # nothing known: the inpainting model generates from scratch
        size = (count, model.spec.channels, model.spec.image_size, model.spec.image_size)
        everything = torch.ones(count, 1, *size[2:])
        edit["wrap_network"] = lambda network: InpaintingConditioned(network, everything, torch.zeros(size))
    images = sample_model(model, count, sampler=config.sample_sampler, steps=config.sample_steps, seed=config.seed,
                          prompts=prompts, conditioner=conditioner, guidance_scale=config.sample_guidance, **edit)
    captions = prompts
    if model.spec.conditioning == "class" and model.spec.class_names:
        captions = [model.spec.class_names[i % model.spec.num_classes] for i in range(count)]
    if model.vae is not None:  # latent models: show the decoded images
        images = model.decode(images)
    side = images.shape[-1]
    grid = image_grid(images.float().cpu(), captions=captions, scale=max(1, 64 // side))
    return save_grid(grid, output, step)


def save_grid(grid: Image.Image, output: Path, step: int) -> Path:
    """Write ``samples/step-XXXXXXXX.png`` and ``samples/latest.png`` atomically (a viewer never sees half a PNG)."""
    folder = Path(output) / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    path = folder / f"step-{step:08d}.png"
    for target in (path, folder / "latest.png"):
        write_atomically(target, buffer.getvalue())
    return path
