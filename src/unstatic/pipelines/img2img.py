"""Image to image (SDEdit; Meng et al. 2022): noise the input part way up the schedule and sample the rest with
a new prompt, through :func:`~unstatic.pipelines.generation.run_generation` with a start image. No sampling loop
here: where img2img starts is all it changes (:mod:`unstatic.sampling.img2img`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image
from torch import Tensor

from unstatic.models.folder import DiffusionModel
from unstatic.pipelines.generation import GeneratedImage, results, run_generation
from unstatic.pipelines.source_image import image_tensor, resize, working_size
from unstatic.sampling.from_model import downsampling_factor

ImageInput = str | Path | Image.Image | Tensor  # a file, a PIL image, or [C, H, W] in [-1, 1]


def image_to_image(
    model: DiffusionModel,
    image: ImageInput,
    prompt: str | Sequence[str],
    *,
    strength: float = 0.75,
    steps_convention: str = "run",
    width: int | None = None,
    height: int | None = None,
    **options: Any,
) -> list[GeneratedImage]:
    """Redraw ``image`` with ``prompt``. ``strength`` 0 returns the image, 1 ignores it (txt2img);
    ``steps_convention`` says what ``num_inference_steps`` counts (``"run"``: the steps actually run,
    default; ``"a1111"``; ``"diffusers"``; see :mod:`unstatic.sampling.img2img`). The image is worked on at
    its own size, or ``width`` x ``height`` if given (see :mod:`unstatic.pipelines.source_image`). Other
    options as :func:`~unstatic.pipelines.txt2img.text_to_image`."""
    init = image_tensor(image, model.image_channels)
    h, w = working_size(init.shape[-2], init.shape[-1], downsampling_factor(model),
                        None if width is None and height is None else (width or init.shape[-1], height or init.shape[-2]))
    images, rows, seed, parameters = run_generation(model, resize(init, h, w), prompt, strength=strength,
                                              steps_convention=steps_convention, **options)
    return results(images, rows, options.get("negative_prompt", ""), seed, parameters)
