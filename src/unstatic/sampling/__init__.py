"""Sampling: sampler functions over a denoiser and a sigma tensor, the name registry, noise and guidance."""

from unstatic.sampling.checks import NonFiniteError
from unstatic.sampling.guidance import ClassifierFreeGuidance
from unstatic.sampling.noise import generators_from_seeds, make_noise_source, randn_per_sample
from unstatic.sampling.progress import Callback, StepInfo
from unstatic.sampling.registry import SAMPLERS, SamplerInfo, get_sampler, resolve_sampler, sample

__all__ = [
    "SAMPLERS",
    "Callback",
    "ClassifierFreeGuidance",
    "NonFiniteError",
    "SamplerInfo",
    "StepInfo",
    "generators_from_seeds",
    "get_sampler",
    "make_noise_source",
    "randn_per_sample",
    "resolve_sampler",
    "sample",
]
