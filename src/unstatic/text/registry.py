"""Text encoders by name, so a saved model spec can say which encoder it was trained with."""

from __future__ import annotations

from typing import Any

import torch

from unstatic.text.embedding import TextEncoder

TEXT_ENCODERS = ("minilm", "clip")


def load_text_encoder(name: str = "minilm", device: torch.device | str = "cpu", **options: Any) -> TextEncoder:
    """Build a text encoder by registry name.

    ``"minilm"``: `MiniLMEncoder` (options: ``path``, ``max_length``, ``torch_dtype``).
    ``"clip"``: `CLIPTextEncoder.from_folders` (options: ``text_encoder`` and ``tokenizer`` folders, required;
    ``clip_skip``, ``max_length``, ``torch_dtype``).
    Missing packages raise an ImportError that says how to reinstall.
    """
    if name == "minilm":
        from unstatic.text.minilm import MiniLMEncoder

        return MiniLMEncoder(device=device, **options)
    if name == "clip":
        from unstatic.text.clip import CLIPTextEncoder

        absent = [key for key in ("text_encoder", "tokenizer") if key not in options]
        if absent:
            raise ValueError(f"the clip text encoder needs the option(s) {', '.join(absent)} (local folders)")
        return CLIPTextEncoder.from_folders(device=device, **options)
    raise ValueError(f"unknown text encoder {name!r}; expected one of {', '.join(TEXT_ENCODERS)}")
