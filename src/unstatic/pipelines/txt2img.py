"""Text to image: prompts in, PIL images with their parameters out. Composes the pieces below it (conditions,
sigmas, guidance, a registered sampler); it has no sampling loop of its own."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from unstatic.imaging import to_pil
from unstatic.models.conditioning import Conditioner
from unstatic.models.folder import DiffusionModel, load_diffusion_model
from unstatic.pipelines.infotext import format_infotext, png_info
from unstatic.sampling.from_model import sample_model
from unstatic.sampling.progress import Callback
from unstatic.sampling.registry import SAMPLERS, resolve_sampler

MAX_SEED = 2**32 - 1


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


def text_to_image(
    model: DiffusionModel,
    prompt: str | Sequence[str],
    *,
    negative_prompt: str = "",
    num_inference_steps: int = 20,
    guidance_scale: float = 5.0,
    sampler: str = "dpmpp_2m",
    scheduler: str | None = None,
    seed: int | None = None,
    num_images: int = 1,
    height: int | None = None,
    width: int | None = None,
    callback: Callback | None = None,
    conditioner: Conditioner | None = None,
    model_name: str | None = None,
) -> list[GeneratedImage]:
    """Generate ``num_images`` images per prompt. Image i of the batch uses seed ``seed + i`` (a random seed
    when ``seed`` is None), so any image can be made again alone. Class models take class names or numbers
    as prompts; unconditional models take ``""``."""
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
    scheduler = scheduler or implied or "karras"
    spec = model.spec
    conditions: dict[str, Any] = {}
    if spec.conditioning == "text":
        conditions = dict(prompts=rows, negative_prompt=negative_prompt)
    elif spec.conditioning == "class":
        conditions = dict(labels=[_class_number(p, spec.class_names, spec.num_classes) for p in rows])
    elif any(rows):
        raise ValueError("this model is unconditional; give an empty prompt")
    images = sample_model(
        model, len(rows), sampler=name, steps=num_inference_steps, scheduler=scheduler, seed=seed,
        guidance_scale=guidance_scale, callback=callback, conditioner=conditioner, height=height, width=width,
        **conditions,
    )
    parameters = {
        "Steps": num_inference_steps, "Sampler": SAMPLERS[name].display_name, "Schedule type": scheduler.title(),
        "CFG scale": float(guidance_scale), "Size": f"{images.shape[-1]}x{images.shape[-2]}", "Model": model_name,
    }
    return [GeneratedImage(to_pil(image), row, negative_prompt, seed + i, parameters)
            for i, (image, row) in enumerate(zip(images, rows))]


def _class_number(label: str, class_names: Sequence[str], num_classes: int) -> int:
    if label.isdigit() and int(label) < num_classes:
        return int(label)
    if label in class_names:
        return class_names.index(label)
    raise ValueError(f"unknown class {label!r}; this model's classes: {', '.join(class_names) or range(num_classes)}")


class TextToImagePipeline:
    """The object form users know: ``pipe = TextToImagePipeline.from_folder(path)``, then
    ``images = pipe("a red star", num_images=4, seed=1)`` (a list of :class:`GeneratedImage`). Keeps the model
    and the text encoder (with its prompt cache) loaded between calls."""

    def __init__(self, model: DiffusionModel, name: str | None = None) -> None:
        self.model, self.name = model, name
        self.conditioner = Conditioner(model.spec, next(model.network.parameters()).device)

    @classmethod
    def from_folder(cls, folder: str | Path, device: str = "cpu") -> TextToImagePipeline:
        return cls(load_diffusion_model(folder, device=device), Path(folder).name)

    def __call__(self, prompt: str | Sequence[str], **options: Any) -> list[GeneratedImage]:
        options.setdefault("model_name", self.name)
        return text_to_image(self.model, prompt, conditioner=self.conditioner, **options)
