"""Generation parameters as AUTOMATIC1111 writes them into PNGs (the ``parameters`` text chunk), so tools
that read A1111 images (its PNG-info tab, image browsers, ``/sdapi/v1/png-info``) read ours, and we read theirs:

    a red circle above a blue square
    Negative prompt: blurry
    Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5, Seed: 7, Size: 64x64, Model: shapes

Writing and reading follow A1111's ``modules/infotext_utils.py`` (``quote``/``unquote`` and
``parse_generation_parameters``), so a text round-trips through either program.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

PARAMETERS_KEY = "parameters"
NEGATIVE_PREFIX = "Negative prompt:"

# One ``key: value`` pair of the settings line: a value is a JSON string in quotes (so it may hold commas,
# colons and escaped quotes) or runs to the next comma. A1111's ``re_param``, unchanged.
_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
# A1111 takes the last line as settings only if it holds at least this many pairs; otherwise it is prompt.
_MIN_SETTINGS = 3


def format_infotext(prompt: str, negative_prompt: str, settings: Mapping[str, Any]) -> str:
    """The three-line A1111 form; ``settings`` keys in A1111's spelling (``Steps``, ``Sampler``, ...)."""
    lines = [prompt]
    if negative_prompt:
        lines.append(f"{NEGATIVE_PREFIX} {negative_prompt}")
    lines.append(", ".join(f"{key}: {_value(value)}" for key, value in settings.items() if value is not None))
    return "\n".join(lines)


def _value(value: Any) -> str:
    text = _number(value) if isinstance(value, float) else str(value)
    if any(separator in text for separator in ",:\n"):
        return json.dumps(text, ensure_ascii=False)  # A1111 quotes values that contain separators, as JSON
    return text


def _number(value: float) -> str:
    """The shortest text that reads back as the same float (so a CFG scale of 4.123456789 reproduces
    exactly), without a trailing ".0": 7.0 -> "7", 3.5 -> "3.5"."""
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text


def parse_infotext(text: str) -> tuple[str, str, dict[str, str]]:
    """``(prompt, negative_prompt, settings)`` from an A1111 ``parameters`` text, the inverse of
    :func:`format_infotext`.

    A1111's rules: the last line is the settings line if it holds at least three ``key: value`` pairs; the
    lines before it are the prompt, up to a line starting ``Negative prompt:``, which with the lines after it
    is the negative prompt (so both may span lines). Lines are stripped of surrounding spaces. Quoted values
    are JSON-unquoted; settings values stay strings (``"Size": "512x512"``), in the order written.
    """
    *lines, last = text.strip().split("\n")
    if len(_PAIR.findall(last)) < _MIN_SETTINGS:
        lines.append(last)
        last = ""
    prompt = negative = ""
    in_negative = False
    for line in lines:
        line = line.strip()
        if line.startswith(NEGATIVE_PREFIX):
            in_negative = True  # this line and every later one belong to the negative prompt
            line = line[len(NEGATIVE_PREFIX):].strip()
        # Joined as A1111 joins them: an empty first line adds no newline.
        if in_negative:
            negative += ("\n" if negative else "") + line
        else:
            prompt += ("\n" if prompt else "") + line
    settings = {key: _unquote(value) for key, value in _PAIR.findall(last)}
    return prompt, negative, settings


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            return str(json.loads(value))
        except ValueError:
            return value  # A1111 keeps a malformed quoted value as written
    return value


def png_info(infotext: str) -> PngInfo:
    """PNG metadata carrying ``infotext`` under A1111's key."""
    info = PngInfo()
    info.add_text(PARAMETERS_KEY, infotext)
    return info


def read_png_parameters(path: str | Path) -> str | None:
    """The ``parameters`` text of a PNG (ours or A1111's), or None when it has none. Other formats raise
    ValueError: A1111 writes JPEG and WebP parameters into EXIF, which we do not read."""
    with Image.open(path) as image:
        if image.format != "PNG":
            raise ValueError(f"{path} is a {image.format or 'non-PNG'} image; generation parameters are read from PNGs")
        return image.text.get(PARAMETERS_KEY)
