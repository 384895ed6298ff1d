"""A network plus what it takes to sample it: schedule, prediction kind, conditioning, image shape."""

from unstatic.models.bundled import BUNDLED_MODEL, bundled_model_folder, bundled_models
from unstatic.models.folder import DiffusionModel, load_diffusion_model, save_diffusion_model
from unstatic.models.spec import CONDITIONINGS, SCHEDULE_KINDS, DiffusionSpec, ScheduleSpec

__all__ = [
    "BUNDLED_MODEL", "bundled_model_folder", "bundled_models", "CONDITIONINGS", "SCHEDULE_KINDS", "DiffusionModel", "DiffusionSpec", "ScheduleSpec",
    "load_diffusion_model", "save_diffusion_model",
]
