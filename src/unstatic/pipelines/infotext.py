"""Generation parameters as AUTOMATIC1111 writes them into PNGs (the ``parameters`` text chunk), so tools
that read A1111 images (its PNG-info tab, image browsers, ``/sdapi/v1/png-info``) read ours:

    a red circle above a blue square
    Negative prompt: blurry
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5, Seed: 7, Size: 64x64, Model: shapes
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PIL.PngImagePlugin import PngInfo

PARAMETERS_KEY = "parameters"


def format_infotext(prompt: str, negative_prompt: str, settings: Mapping[str, Any]) -> str:
    """The three-line A1111 form; ``settings`` keys in A1111's spelling (``Steps``, ``Sampler``, ...)."""
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    lines.append(", ".join(f"{key}: {_value(value)}" for key, value in settings.items() if value is not None))
    return "\n".join(lines)


def _value(value: Any) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return f'"{text}"' if "," in text or ":" in text else text  # A1111 quotes values that contain separators


def png_info(infotext: str) -> PngInfo:
    """PNG metadata carrying ``infotext`` under A1111's key."""
    info = PngInfo()
    info.add_text(PARAMETERS_KEY, infotext)
    return info
