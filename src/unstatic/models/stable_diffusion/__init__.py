"""Stable-Diffusion-family checkpoints the user brings (nothing is downloaded): diffusers folders and original
single files of SD 1.x and 2.x, read into (and written from) our :class:`~unstatic.models.DiffusionModel`.
docs/stable_diffusion.md describes the formats, the key mappings and what is not supported."""

from unstatic.models.stable_diffusion.convert import CONVERSIONS, convert_model
from unstatic.models.stable_diffusion.load import (
    FORMATS,
    LoadedModel,
    load_any_model,
    load_vae,
    model_format,
)

__all__ = ["CONVERSIONS", "FORMATS", "LoadedModel", "convert_model", "load_any_model", "load_vae", "model_format"]
