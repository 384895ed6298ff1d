"""From an image's A1111 ``parameters`` text back to the :func:`~unstatic.pipelines.txt2img.text_to_image`
arguments that make it again: the inverse of ``GeneratedImage.parameters``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from unstatic.core.spacings import resolve_spacing
from unstatic.models.spec import check_guidance_interval
from unstatic.pipelines.infotext import parse_infotext
from unstatic.sampling.registry import resolve_sampler

_SIZE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")  # A1111's "Size" is width x height
# A1111 writes "Automatic" when the sampler's own default scheduler was used; we pass None, which lets
# text_to_image choose as it does when no scheduler is named.
_AUTOMATIC = "automatic"


def settings_from_infotext(text: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``text_to_image`` keyword arguments (``prompt``, ``negative_prompt``, ``num_inference_steps``,
    ``guidance_scale``, ``guidance_interval``, ``sampler``, ``scheduler``, ``seed``, ``width``, ``height``) from a
    parameters text.

    Only what the text holds is returned; other settings (``Model``, ``Model hash``, ``Version``, ...) are
    not arguments and are ignored. ``overrides`` (the same argument names) win over the text, and the text's
    value for an overridden argument is not even read, so an image from a sampler we lack can still be
    re-made with one we have. An image without a "Guidance interval" was guided at every step
    (``guidance_interval=()``, whatever the model's default). Raises ValueError naming the setting that cannot
    be read.
    """
    overrides = dict(overrides or {})
    prompt, negative_prompt, settings = parse_infotext(text)
    arguments: dict[str, Any] = {"prompt": prompt, "negative_prompt": negative_prompt}
    for key, (names, read) in _READERS.items():
        if key not in settings or all(name in overrides for name in names):
            continue
        try:
            values = read(settings[key])
        except ValueError as error:
            raise ValueError(f"cannot read the image's setting {key}: {settings[key]!r} ({error})") from error
        for name, value in values.items():
            # Pre-1.9 A1111 folds the scheduler into the sampler ("DPM++ 2M Karras"); "Automatic" must not
            # undo that.
            if name == "scheduler" and value is None and "scheduler" in arguments:
                continue
            arguments[name] = value
    arguments.setdefault("guidance_interval", ())
    return {**arguments, **overrides}


def _size(value: str) -> dict[str, int]:
    match = _SIZE.match(value)
    if match is None:
        raise ValueError("expected WIDTHxHEIGHT")
    return {"width": int(match[1]), "height": int(match[2])}


def _sampler(value: str) -> dict[str, Any]:
    name, implied = resolve_sampler(value)
    return {"sampler": name, **({"scheduler": implied} if implied else {})}


def _guidance_interval(value: str) -> dict[str, tuple[float, float]]:
    low, _, high = value.partition("-")  # "LOW-HIGH", as run_generation writes it (both non-negative)
    return {"guidance_interval": check_guidance_interval((float(low), float(high)))}


def _scheduler(value: str) -> dict[str, str | None]:
    return {"scheduler": None if value.strip().lower() == _AUTOMATIC else resolve_spacing(value)}


# A1111 setting -> (the arguments it gives, its reader), in the order applied: "Schedule type" after
# "Sampler", so an explicit schedule beats one implied by an old-style sampler name.
_READERS = {
    "Steps": (("num_inference_steps",), lambda v: {"num_inference_steps": int(v)}),
    "CFG scale": (("guidance_scale",), lambda v: {"guidance_scale": float(v)}),
    "Guidance interval": (("guidance_interval",), _guidance_interval),
    "Seed": (("seed",), lambda v: {"seed": int(v)}),
    "Size": (("width", "height"), _size),
    "Sampler": (("sampler",), _sampler),
    "Schedule type": (("scheduler",), _scheduler),
}
