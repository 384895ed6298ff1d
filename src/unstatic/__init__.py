"""unstatic: diffusion image generation, from static to picture.

Layers (imports point down only): ``core`` (math) -> ``denoisers`` (the D(x, sigma, cond) interface and
preconditioning) -> ``sampling`` (samplers, guidance) -> ``pipelines`` -> ``cli``.
"""

from unstatic.core import DiscreteSchedule, EDMSchedule, FlowSchedule, get_sigmas
from unstatic.denoisers import GaussianMixture, Preconditioned
from unstatic.sampling import SAMPLERS, ClassifierFreeGuidance, StepInfo, get_sampler, resolve_sampler, sample

__version__ = "0.1.0"

__all__ = [
    "SAMPLERS",
    "ClassifierFreeGuidance",
    "DiscreteSchedule",
    "EDMSchedule",
    "FlowSchedule",
    "GaussianMixture",
    "Preconditioned",
    "StepInfo",
    "get_sampler",
    "get_sigmas",
    "resolve_sampler",
    "sample",
]
