"""Sample a :class:`~unstatic.models.DiffusionModel` (a trained network and its spec): the glue every caller
needs — seeds to start noise, the spacing on the model's own schedule, and guidance for conditional models."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from unstatic.core.spacings import get_sigmas
from unstatic.models.folder import DiffusionModel
from unstatic.sampling.guidance import ClassifierFreeGuidance
from unstatic.sampling.noise import generators_from_seeds, randn_per_sample
from unstatic.sampling.progress import Callback
from unstatic.sampling.registry import SAMPLERS, resolve_sampler


def class_condition(model: DiffusionModel, labels: Sequence[int], device: torch.device) -> dict[str, Tensor]:
    """The network condition for class ``labels``, checked against the model's classes."""
    spec = model.spec
    bad = [label for label in labels if not 0 <= label <= spec.num_classes]
    if bad:
        raise ValueError(f"class labels {bad} out of range: this model has classes 0..{spec.num_classes - 1}")
    return {"class_labels": torch.tensor(list(labels), dtype=torch.long, device=device)}


@torch.no_grad()
def sample_model(
    model: DiffusionModel,
    count: int,
    *,
    sampler: str = "dpmpp_2m",
    steps: int = 20,
    scheduler: str | None = None,
    seed: int = 0,
    labels: Sequence[int] | None = None,
    guidance_scale: float = 1.0,
    callback: Callback | None = None,
) -> Tensor:
    """``count`` images ``[count, C, H, W]`` in the data range ([-1, 1]); image i starts from seed ``seed + i``,
    so it does not depend on ``count``. ``labels`` (class models; default: cycling through the classes)
    condition the images; ``guidance_scale`` > 1 adds classifier-free guidance against the null class."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    spec = model.spec
    parameter = next(model.network.parameters())
    device = parameter.device
    name, implied = resolve_sampler(sampler)
    sigmas = get_sigmas(scheduler or implied or "karras", steps, spec.build_schedule()).to(device)
    generators = generators_from_seeds(range(seed, seed + count))
    x = randn_per_sample((count, spec.channels, spec.image_size, spec.image_size), generators).to(device) * sigmas[0]
    denoiser = spec.denoiser(model.network)
    cond = None
    if spec.conditioning == "class":
        labels = list(labels) if labels is not None else [i % spec.num_classes for i in range(count)]
        if len(labels) != count:
            raise ValueError(f"got {len(labels)} labels for {count} images")
        cond = class_condition(model, labels, device)
        if guidance_scale != 1.0:
            uncond = class_condition(model, [spec.null_class] * count, device)
            denoiser, cond = ClassifierFreeGuidance(denoiser, cond, uncond, guidance_scale), None
    elif spec.conditioning != "none":
        raise ValueError(f"sample_model handles class and unconditional models; this one is {spec.conditioning!r}-conditioned")
    return SAMPLERS[name].fn(denoiser, x, sigmas, cond=cond, callback=callback, noise=generators).clamp(-1, 1)
