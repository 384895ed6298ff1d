"""Text encoders by name, so a saved model spec can say which encoder it was trained with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from unstatic.text.embedding import TextEncoder

TEXT_ENCODERS = ("minilm", "clip", "sdxl_clip")
# Encoders that live in the model folder, and the subfolders they need there (the rest come from packages).
FOLDER_TEXT_ENCODERS = {"clip": ("text_encoder", "tokenizer"),
                        "sdxl_clip": ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")}


def load_text_encoder(name: str = "minilm", device: torch.device | str = "cpu", **options: Any) -> TextEncoder:
    """Build a text encoder by registry name.

    ``"minilm"``: `MiniLMEncoder` (options: ``path``, ``max_length``, ``torch_dtype``).
    ``"clip"``: `CLIPTextEncoder.from_folders` (options: ``text_encoder`` and ``tokenizer`` folders, required;
    ``clip_skip``, ``max_length``, ``torch_dtype``).
    ``"sdxl_clip"``: `SDXLTextEncoder.from_folder` (option ``folder``, required: a model folder holding the two
    encoders and tokenizers; ``clip_skip``, ``max_length``, ``torch_dtype``).
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
    if name == "sdxl_clip":
        from unstatic.text.sdxl import SDXLTextEncoder

        if "folder" not in options:
            raise ValueError("the sdxl_clip text encoder needs the option folder (a model folder with both encoders)")
        return SDXLTextEncoder.from_folder(device=device, **options)
    raise ValueError(f"unknown text encoder {name!r}; expected one of {', '.join(TEXT_ENCODERS)}")


def load_folder_text_encoder(name: str, folder: str | Path, device: torch.device | str = "cpu", **options: Any) -> TextEncoder:
    """The text encoder a model folder carries (``name`` in :data:`FOLDER_TEXT_ENCODERS`), from its subfolders."""
    folder = Path(folder)
    if name == "clip":
        return load_text_encoder(name, device, text_encoder=folder / "text_encoder", tokenizer=folder / "tokenizer", **options)
    return load_text_encoder(name, device, folder=folder, **options)
