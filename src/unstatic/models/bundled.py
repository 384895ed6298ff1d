"""The model that ships inside the package: a text-to-image model of the built-in shapes world, so
``unstatic generate "a red circle above a blue square"`` works right after install with nothing to download.
Its weights, training log and the command that reproduces it live in ``models/weights/<name>/``."""

from __future__ import annotations

from pathlib import Path

BUNDLED_MODEL = "shapes-text-32"
WEIGHTS_ROOT = Path(__file__).parent / "weights"


def bundled_models() -> list[str]:
    """Names of the model folders shipped with the package."""
    return sorted(p.name for p in WEIGHTS_ROOT.iterdir() if (p / "model.json").is_file()) if WEIGHTS_ROOT.is_dir() else []


def bundled_model_folder(name: str = BUNDLED_MODEL) -> Path:
    """The folder of a shipped model (``load_diffusion_model`` and ``TextToImagePipeline.from_folder`` read it)."""
    folder = WEIGHTS_ROOT / name
    if not (folder / "model.json").is_file():
        shipped = ", ".join(bundled_models()) or "none"
        raise FileNotFoundError(f"no bundled model named {name!r} (shipped: {shipped}); pass a model folder instead")
    return folder
