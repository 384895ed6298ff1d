"""Text to image: prompts in, PIL images with their parameters out. Composes the pieces below it (conditions,
sigmas, guidance, a registered sampler) through :func:`~unstatic.pipelines.generation.run_generation`; it has no
sampling loop of its own."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from unstatic.models.conditioning import Conditioner
from unstatic.models.folder import DiffusionModel
from unstatic.models.stable_diffusion.load import load_any_model
from unstatic.pipelines.generation import (
    MAX_SEED,
    GeneratedImage,
    results,
    run_generation,
)
from unstatic.sampling.progress import Callback

__all__ = ["MAX_SEED", "GeneratedImage", "TextToImagePipeline", "text_to_image"]


def text_to_image(
    model: DiffusionModel,
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
    height: int | None = None,
    width: int | None = None,
    callback: Callback | None = None,
    conditioner: Conditioner | None = None,
    model_name: str | None = None,
    model_hash: str | None = None,
) -> list[GeneratedImage]:
    """Generate ``num_images`` images per prompt. Image i of the batch uses seed ``seed + i`` (a random seed
    when ``seed`` is None), so any image can be made again alone. Class models take class names or numbers
    as prompts; unconditional models take ``""``. ``guidance_scale`` and
    ``guidance_interval`` None: the model's own defaults (see :func:`~unstatic.pipelines.generation.run_generation`)."""
    images, rows, seed, parameters = run_generation(
        model, None, prompt, negative_prompt=negative_prompt, num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale, guidance_interval=guidance_interval, sampler=sampler, scheduler=scheduler, seed=seed, num_images=num_images,
        callback=callback, conditioner=conditioner, model_name=model_name, model_hash=model_hash,
        height=height, width=width,
    )
    return results(images, rows, negative_prompt, seed, parameters)


class TextToImagePipeline:
    """The object form users know: ``pipe = TextToImagePipeline.from_folder(path)``, then
    ``images = pipe("a red star", num_images=4, seed=1)`` (a list of :class:`GeneratedImage`). Keeps the model
    and the text encoder (with its prompt cache) loaded between calls."""

    def __init__(self, model: DiffusionModel, name: str | None = None, model_hash: str | None = None) -> None:
        self.model, self.name, self.model_hash = model, name, model_hash
        self.conditioner = Conditioner.for_model(model)

    @classmethod
    def from_folder(cls, folder: str | Path, device: str = "cpu", **options: Any) -> TextToImagePipeline:
        """Load our model folder, a diffusers Stable Diffusion folder or a single-file checkpoint (``options``:
        see :func:`~unstatic.models.stable_diffusion.load.load_any_model`, e.g. ``vae=`` or ``prediction=``)."""
        loaded = load_any_model(folder, device=device, **options)
        name = Path(folder).stem if Path(folder).is_file() else Path(folder).name
        return cls(loaded.model, name, loaded.model_hash)

    def __call__(self, prompt: str | Sequence[str], **options: Any) -> list[GeneratedImage]:
        options.setdefault("model_name", self.name)
        options.setdefault("model_hash", self.model_hash)
        return text_to_image(self.model, prompt, conditioner=self.conditioner, **options)
