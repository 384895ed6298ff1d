"""Sample a :class:`~unstatic.models.DiffusionModel` (a trained network and its spec): the glue every caller
needs — seeds to start noise, the spacing on the model's own schedule, conditions, and guidance — and the
hooks editing uses: a start image (img2img), wrappers around the network and the denoiser (inpainting), and
RePaint resampling. Every pipeline samples through here; none has a loop of its own."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from unstatic.core.spacings import get_sigmas
from unstatic.denoisers.protocol import Denoiser, Network
from unstatic.models.conditioning import Conditioner
from unstatic.models.folder import DiffusionModel
from unstatic.sampling.guidance import ClassifierFreeGuidance
from unstatic.sampling.img2img import img2img_sigmas, noised_start
from unstatic.sampling.noise import generators_from_seeds, randn_per_sample
from unstatic.sampling.progress import Callback
from unstatic.sampling.registry import SAMPLERS, resolve_sampler
from unstatic.sampling.resample import sample_resampled


def _conditions(model: DiffusionModel, conditioner: Conditioner, count: int, labels, prompts, negative_prompt: str,
                size: tuple[int, int]):
    """``(cond, uncond)`` for ``count`` images of ``size`` ``(h, w)`` pixels: labels cycle through the classes by
    default; prompts are required for text models; the negative prompt (text) or the null class is the
    unconditional branch."""
    spec = model.spec
    if spec.conditioning == "class":
        labels = list(labels) if labels is not None else [i % spec.num_classes for i in range(count)]
        if len(labels) != count:
            raise ValueError(f"got {len(labels)} labels for {count} images")
        return conditioner.labels(labels), conditioner.null(count)
    if spec.conditioning == "text":
        if prompts is None or len(prompts) != count:
            raise ValueError(f"a text model needs one prompt per image: got {0 if prompts is None else len(prompts)} for {count}")
        return conditioner.prompts(prompts, size), conditioner.negative([negative_prompt] * count, size)
    if labels is not None or prompts is not None:
        raise ValueError("this model is unconditional: it takes no labels or prompts")
    return None, None


def network_factor(model: DiffusionModel) -> int:
    """What the sides of the sampled tensor must be a multiple of: 2 to the number of the U-Net's down-sampling
    steps."""
    return 2 ** getattr(getattr(model.network, "config", None), "num_downsamplings", 0)


def downsampling_factor(model: DiffusionModel) -> int:
    """What image sides must be a multiple of: the U-Net's factor, times the VAE's for latent models."""
    return network_factor(model) * model.pixels_per_cell


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
    guidance_interval: tuple[float, float] | None = None,
    callback: Callback | None = None,
    conditioner: Conditioner | None = None,
    height: int | None = None,
    width: int | None = None,
    init: Tensor | None = None,
    strength: float = 1.0,
    steps_convention: str = "run",
    wrap_network: Callable[[Network], Network] | None = None,
    wrap_denoiser: Callable[[Denoiser], Denoiser] | None = None,
    jumps: int = 1,
    jump_length: int = 10,
) -> Tensor:
    """``count`` images ``[count, C, H, W]`` in the data range ([-1, 1]); image i starts from seed ``seed + i``,
    so it does not depend on ``count``. Class models take ``labels``, text models ``prompts`` (and a
    ``negative_prompt``); ``guidance_scale`` > 1 adds classifier-free guidance, at the noise levels of
    ``guidance_interval`` only if given (:class:`~unstatic.sampling.guidance.ClassifierFreeGuidance`'s
    ``sigma_interval``). Pass a ``conditioner`` to reuse a loaded text encoder across calls. ``height``/``width`` default to the training resolution; U-Nets are
    convolutional, so other sizes divisible by the down-sampling factor work too (quality may drop).

    Latent models (``spec.latent``) are sampled in latent space: ``init``, ``height`` and ``width`` are the
    latent's and the result is the latents, not clamped; ``model.decode`` turns them into images (the
    generation core does, once, in :func:`~unstatic.pipelines.generation.run_generation`).

    Editing (all optional; the defaults are plain sampling):

    - ``init``: ``[count or 1, C, H, W]`` start image in the data range; its size sets height and width.
      ``strength`` picks the part of the schedule that is run and ``steps_convention`` what ``steps`` counts
      (:mod:`unstatic.sampling.img2img`); strength 0 returns ``init`` without calling the model.
    - ``wrap_network``: applied to the raw network before preconditioning (an inpainting model's extra
      channels, :class:`~unstatic.sampling.inpaint.InpaintingConditioned`).
    - ``wrap_denoiser``: applied to the final denoiser, guidance included (keeping the known region,
      :class:`~unstatic.sampling.inpaint.KnownRegionDenoiser`).
    - ``jumps`` > 1: RePaint resampling every ``jump_length`` steps (:mod:`unstatic.sampling.resample`).
    """
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    spec = model.spec
    device = next(model.network.parameters()).device
    name, implied = resolve_sampler(sampler)
    schedule, spacing = spec.build_schedule(), scheduler or implied or spec.default_scheduler or "karras"
    sigmas = img2img_sigmas(lambda n: get_sigmas(spacing, n, schedule), steps, strength, steps_convention)
    if init is not None:
        init = _start_image(init, count, spec.channels).to(device)
        height, width = init.shape[-2:]
        if sigmas is None:  # strength 0: nothing to run
            return init.expand(count, -1, -1, -1).clone()
    elif sigmas is None or strength != 1.0:
        raise ValueError("strength below 1 needs a start image (init)")
    sigmas = sigmas.to(device)
    height, width = height or spec.image_size, width or spec.image_size
    conditioner = conditioner or Conditioner.for_model(model, device)
    pixels = (height * model.pixels_per_cell, width * model.pixels_per_cell)  # SDXL conditions on the image's size
    cond, uncond = _conditions(model, conditioner, count, labels, prompts, negative_prompt, pixels)
    generators = generators_from_seeds(range(seed, seed + count))
    factor = network_factor(model)
    if height < factor or width < factor or height % factor or width % factor:
        raise ValueError(f"height and width must be positive multiples of {factor} for this model, got {height}x{width}")
    noise = randn_per_sample((count, spec.channels, height, width), generators).to(device)
    x = noise * sigmas[0] if init is None else noised_start(init, noise, sigmas, strength)
    network = model.network if wrap_network is None else wrap_network(model.network)
    denoiser = spec.denoiser(network)
    if cond is not None and guidance_scale != 1.0:
        denoiser = ClassifierFreeGuidance(denoiser, cond, uncond, guidance_scale, sigma_interval=guidance_interval)
        cond = None
    if wrap_denoiser is not None:
        denoiser = wrap_denoiser(denoiser)
    x = sample_resampled(SAMPLERS[name].fn, denoiser, x, sigmas, jumps=jumps, jump_length=jump_length, cond=cond,
                         callback=callback, noise=generators)
    return x if spec.latent else x.clamp(-1, 1)


def _start_image(init: Tensor, count: int, channels: int) -> Tensor:
    """``init`` as ``[count, C, H, W]`` (a batch of one is repeated), checked against the model's channels."""
    if init.ndim == 3:
        init = init[None]
    if init.ndim != 4 or init.shape[1] != channels or init.shape[0] not in (1, count):
        raise ValueError(f"init must be [1 or {count}, {channels}, H, W] for this model, got {tuple(init.shape)}")
    return init.float().expand(count, -1, -1, -1)
