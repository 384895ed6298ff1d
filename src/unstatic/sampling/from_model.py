"""Sample a :class:`~unstatic.models.DiffusionModel` (a trained network and its spec): the glue every caller
needs — seeds to start noise, the spacing on the model's own schedule, conditions, and guidance."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from unstatic.core.spacings import get_sigmas
from unstatic.models.conditioning import Conditioner
from unstatic.models.folder import DiffusionModel
from unstatic.sampling.guidance import ClassifierFreeGuidance
from unstatic.sampling.noise import generators_from_seeds, randn_per_sample
from unstatic.sampling.progress import Callback
from unstatic.sampling.registry import SAMPLERS, resolve_sampler


def _conditions(model: DiffusionModel, conditioner: Conditioner, count: int, labels, prompts, negative_prompt: str):
    """``(cond, uncond)`` for ``count`` images: labels cycle through the classes by default; prompts are
    required for text models; the negative prompt (text) or the null class is the unconditional branch."""
    spec = model.spec
    if spec.conditioning == "class":
        labels = list(labels) if labels is not None else [i % spec.num_classes for i in range(count)]
        if len(labels) != count:
            raise ValueError(f"got {len(labels)} labels for {count} images")
        return conditioner.labels(labels), conditioner.null(count)
    if spec.conditioning == "text":
        if prompts is None or len(prompts) != count:
            raise ValueError(f"a text model needs one prompt per image: got {0 if prompts is None else len(prompts)} for {count}")
        return conditioner.prompts(prompts), conditioner.prompts([negative_prompt] * count)
    if labels is not None or prompts is not None:
        raise ValueError("this model is unconditional: it takes no labels or prompts")
    return None, None


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
    prompts: Sequence[str] | None = None,
    negative_prompt: str = "",
    guidance_scale: float = 1.0,
    callback: Callback | None = None,
    conditioner: Conditioner | None = None,
    height: int | None = None,
    width: int | None = None,
) -> Tensor:
    """``count`` images ``[count, C, H, W]`` in the data range ([-1, 1]); image i starts from seed ``seed + i``,
    so it does not depend on ``count``. Class models take ``labels``, text models ``prompts`` (and a
    ``negative_prompt``); ``guidance_scale`` > 1 adds classifier-free guidance. Pass a ``conditioner`` to reuse
    a loaded text encoder across calls. ``height``/``width`` default to the training resolution; U-Nets are
    convolutional, so other sizes divisible by the down-sampling factor work too (quality may drop)."""
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    spec = model.spec
    device = next(model.network.parameters()).device
    conditioner = conditioner or Conditioner(spec, device)
    cond, uncond = _conditions(model, conditioner, count, labels, prompts, negative_prompt)
    name, implied = resolve_sampler(sampler)
    sigmas = get_sigmas(scheduler or implied or "karras", steps, spec.build_schedule()).to(device)
    generators = generators_from_seeds(range(seed, seed + count))
    height, width = height or spec.image_size, width or spec.image_size
    factor = 2 ** getattr(getattr(model.network, "config", None), "num_downsamplings", 0)
    if height < factor or width < factor or height % factor or width % factor:
        raise ValueError(f"height and width must be positive multiples of {factor} for this model, got {height}x{width}")
    x = randn_per_sample((count, spec.channels, height, width), generators).to(device) * sigmas[0]
    denoiser = spec.denoiser(model.network)
    if cond is not None and guidance_scale != 1.0:
        denoiser, cond = ClassifierFreeGuidance(denoiser, cond, uncond, guidance_scale), None
    return SAMPLERS[name].fn(denoiser, x, sigmas, cond=cond, callback=callback, noise=generators).clamp(-1, 1)
