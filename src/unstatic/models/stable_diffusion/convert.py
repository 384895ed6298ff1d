"""``unstatic convert``: a model in any format (:data:`~.load.FORMATS`) written in another."""

from __future__ import annotations

from pathlib import Path

from unstatic.models.folder import save
from unstatic.models.stable_diffusion.diffusers_folder import save_diffusers_folder
from unstatic.models.stable_diffusion.load import LoadedModel, load_any_model
from unstatic.models.stable_diffusion.single_file import save_single_file

CONVERSIONS = {"diffusers": save_diffusers_folder, "single-file": save_single_file, "unstatic": save}


def convert_model(source: str | Path, destination: str | Path, to: str, **load_options) -> LoadedModel:
    """Load ``source`` (options as :func:`~.load.load_any_model`) and write it to ``destination`` in format
    ``to``. Refuses to write into an existing destination. Returns what was loaded."""
    if to not in CONVERSIONS:
        raise ValueError(f"unknown target format {to!r}; expected one of {', '.join(CONVERSIONS)}")
    destination = Path(destination)
    if destination.exists():
        raise FileExistsError(f"{destination} already exists; choose a new path")
    if to == "single-file" and destination.suffix != ".safetensors":
        raise ValueError(f"a single-file checkpoint is written as .safetensors, got {destination.name}")
    loaded = load_any_model(source, **load_options)
    CONVERSIONS[to](loaded.model, destination)
    return loaded
