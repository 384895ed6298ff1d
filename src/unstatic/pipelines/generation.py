"""What every generating pipeline shares (txt2img, img2img, inpainting, outpainting): prompts and seeds to
conditions, one call of :func:`~unstatic.sampling.from_model.sample_model` (which owns nothing but the glue;
the sampler owns the loop), and the results as :class:`GeneratedImage` with A1111-style parameters.

Latent models (Rombach et al. 2022) are sampled in latent space and decoded once, here: the start image is
encoded with the VAE's posterior mean, sizes are divided by the VAE's factor, and the sampled latents are
decoded at the end, so every pipeline on top works unchanged. Wrappers (``wrap_network``, ``wrap_denoiser``)
see the network's space: inpainting hands them latents and masks on the latent grid."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from torch import Tensor

from unstatic.core.spacings import schedule_label
from unstatic.imaging import to_pil
from unstatic.models.conditioning import Conditioner
from unstatic.models.folder import DiffusionModel
from unstatic.models.spec import check_guidance_interval
from unstatic.pipelines.infotext import format_infotext, png_info
from unstatic.sampling.from_model import downsampling_factor, sample_model
from unstatic.sampling.progress import Callback
from unstatic.sampling.registry import SAMPLERS, resolve_sampler

MAX_SEED = 2**32 - 1
DEFAULT_GUIDANCE = 5.0  # the guidance scale when neither the caller nor the model's spec names one


@dataclass(frozen=True)
class GeneratedImage:
    """One image and everything needed to make it again."""

    image: Image.Image
    prompt: str
    negative_prompt: str
    seed: int
    parameters: dict[str, Any] = field(default_factory=dict)  # A1111-named settings: Steps, Sampler, ...

    @property
    def infotext(self) -> str:
        return format_infotext(self.prompt, self.negative_prompt, {**self.parameters, "Seed": self.seed})

    def save(self, path: str | Path) -> Path:
        """Write a PNG with the parameters in its ``parameters`` text chunk (as A1111 does)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.image.save(path, pnginfo=png_info(self.infotext))
        return path


def run_generation(
    model: DiffusionModel,
    init: Tensor | None,
    prompt: str | Sequence[str],
    *,
    negative_prompt: str = "",
    num_inference_steps: int = 20,
    guidance_scale: float | None = None,
    guidance_interval: Sequence[float] | None = None,
    sampler: str = "dpmpp_2m",
    scheduler: str | None = None,
    seed: int | None = None,
    num_images: int = 1,
    strength: float = 1.0,
    steps_convention: str = "run",
    callback: Callback | None = None,
    conditioner: Conditioner | None = None,
    model_name: str | None = None,
    model_hash: str | None = None,
    **edit: Any,
) -> tuple[Tensor, list[str], int, dict[str, Any]]:
    """Sample ``init`` edited (``[C, H, W]`` at a size the model takes), or from scratch when it is None (txt2img):
    ``num_images`` per prompt, image i with seed ``seed + i``; ``guidance_scale`` None: the model's default
    (``spec.default_guidance``), else :data:`DEFAULT_GUIDANCE`; ``guidance_interval`` ``(low, high)``: guide only
    at those noise levels, ``()`` (or ``(0, inf)``): at every step, None: the model's default interval. ``edit``
    goes to ``sample_model`` (wrappers, resampling, height and width). Returns the images ``[N, C, H, W]``, the prompt of each, the first seed and
    the A1111-style parameters."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts:
        raise ValueError("no prompt given")
    if num_images < 1:
        raise ValueError(f"num_images must be at least 1, got {num_images}")
    seed = random.randint(0, MAX_SEED) if seed is None else int(seed)
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in 0..{MAX_SEED}, got {seed}")
    rows = [p for p in prompts for _ in range(num_images)]
    name, implied = resolve_sampler(sampler)
    scheduler = scheduler or implied or model.spec.default_scheduler or "karras"
    if guidance_scale is None:
        guidance_scale = model.spec.default_guidance or DEFAULT_GUIDANCE
    if guidance_interval is None:
        guidance_interval = model.spec.default_guidance_interval
    interval = _guidance_interval(guidance_interval)
    init, edit = _to_model_space(model, init, edit)
    samples = sample_model(
        model, len(rows), sampler=name, steps=num_inference_steps, scheduler=scheduler, seed=seed,
        guidance_scale=guidance_scale, guidance_interval=interval, callback=callback, conditioner=conditioner,
        init=init, strength=strength,
        steps_convention=steps_convention, **_conditions(model, rows, negative_prompt), **edit,
    )
    images = model.decode(samples)
    parameters = {
        "Steps": num_inference_steps, "Sampler": SAMPLERS[name].display_name, "Schedule type": schedule_label(scheduler),
        "CFG scale": float(guidance_scale), "Size": f"{images.shape[-1]}x{images.shape[-2]}", "Model hash": model_hash,
        "Model": model_name,
    }
    if interval is not None and guidance_scale != 1.0:
        parameters["Guidance interval"] = f"{interval[0]:g}-{interval[1]:g}"
    if init is not None:
        parameters["Denoising strength"] = float(strength)
        if 0 < strength < 1:  # only then does the convention change anything
            parameters["Steps convention"] = steps_convention
    return images, rows, seed, parameters


def _guidance_interval(interval: Sequence[float]) -> tuple[float, float] | None:
    """A guidance interval as ``ClassifierFreeGuidance`` takes it: None for none (empty) or one that holds every
    noise level, so that guiding everywhere has one form (and no "Guidance interval" in the parameters)."""
    if not interval:
        return None
    low, high = check_guidance_interval(interval)
    return None if low == 0 and high == math.inf else (low, high)


def _to_model_space(model: DiffusionModel, init: Tensor | None, edit: dict[str, Any]) -> tuple[Tensor | None, dict[str, Any]]:
    """``init`` and the size options in the space the network samples: VAE latents (posterior mean) and sides
    divided by the VAE's factor for latent models; unchanged for pixel models."""
    if model.vae is None:
        return init, edit
    factor, edit = downsampling_factor(model), dict(edit)
    for name in ("height", "width"):
        if edit.get(name) is not None:
            if edit[name] % factor or edit[name] < factor:
                raise ValueError(f"{name} must be a positive multiple of {factor} for this latent model, got {edit[name]}")
            edit[name] //= model.pixels_per_cell
    if init is not None:
        device = next(model.vae.parameters()).device
        init = model.encode((init[None] if init.ndim == 3 else init).to(device))
    return init, edit


def _conditions(model: DiffusionModel, rows: list[str], negative_prompt: str) -> dict[str, Any]:
    """``sample_model`` keywords for the prompts: text, class names or numbers, or nothing."""
    spec = model.spec
    if spec.conditioning == "text":
        return dict(prompts=rows, negative_prompt=negative_prompt)
    if spec.conditioning == "class":
        return dict(labels=[class_number(p, spec.class_names, spec.num_classes) for p in rows])
    if any(rows):
        raise ValueError("this model is unconditional; give an empty prompt")
    return {}


def results(images: Tensor, rows: list[str], negative_prompt: str, seed: int, parameters: dict[str, Any]) -> list[GeneratedImage]:
    """One :class:`GeneratedImage` per row; image i carries seed ``seed + i``."""
    return [GeneratedImage(to_pil(image), row, negative_prompt, seed + i, parameters)
            for i, (image, row) in enumerate(zip(images, rows))]


def class_number(label: str, class_names: Sequence[str], num_classes: int) -> int:
    if label.isdigit() and int(label) < num_classes:
        return int(label)
    if label in class_names:
        return class_names.index(label)
    raise ValueError(f"unknown class {label!r}; this model's classes: {', '.join(class_names) or range(num_classes)}")
