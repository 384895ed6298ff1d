"""Where stochastic samplers get their noise: per-sample generators, one generator, or pre-drawn tensors.

Drawing each sample's noise from its own generator makes image i of a batch identical to the same seed
run alone (batch invariance). Noise is drawn on the generator's device (CPU unless you pass a CUDA
generator) in float32 and then moved, so results do not depend on the device or dtype of ``x``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

NoiseSource = Callable[[], Tensor]  # each call returns fresh standard-normal noise shaped like x


def generators_from_seeds(seeds: Sequence[int], device: str | torch.device = "cpu") -> list[torch.Generator]:
    """One seeded generator per sample."""
    return [torch.Generator(device).manual_seed(int(seed)) for seed in seeds]


def randn_per_sample(shape: Sequence[int], generators: Sequence[torch.Generator]) -> Tensor:
    """Standard normal noise of ``shape`` whose sample i comes from ``generators[i]`` only (float32)."""
    if len(generators) != shape[0]:
        raise ValueError(f"got {len(generators)} generators for a batch of {shape[0]}")
    return torch.stack([torch.randn(tuple(shape[1:]), generator=g, device=g.device) for g in generators])


class PredrawnNoise:
    """Hands out ``noise[0], noise[1], ...`` in order; ``noise`` is ``[draws, *x.shape]``."""

    def __init__(self, noise: Tensor, like: Tensor) -> None:
        if noise.shape[1:] != like.shape:
            raise ValueError(f"pre-drawn noise has shape {tuple(noise.shape)}; expected [draws, *{tuple(like.shape)}]")
        self.noise = noise.to(like.device, like.dtype)
        self.used = 0

    def __call__(self) -> Tensor:
        if self.used >= len(self.noise):
            raise ValueError(f"the sampler needs more than the {len(self.noise)} pre-drawn noise tensors given")
        self.used += 1
        return self.noise[self.used - 1]


def make_noise_source(noise, like: Tensor) -> NoiseSource:
    """Normalise what a caller passed as ``noise`` into a :data:`NoiseSource` for tensors like ``like``.

    ``None``: a fresh CPU generator seeded from torch's global RNG (so ``torch.manual_seed`` reproduces a run);
    an ``int``: that seed for the whole batch; a ``torch.Generator``: that generator for the whole batch;
    a sequence of generators: one per sample (batch invariant); a tensor: pre-drawn noise
    ``[draws, *x.shape]``; a callable: used as it is.
    """
    if callable(noise) and not isinstance(noise, torch.Generator):
        return noise
    if isinstance(noise, Tensor):
        return PredrawnNoise(noise, like)
    if noise is None:
        noise = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    if isinstance(noise, int) and not isinstance(noise, bool):
        noise = torch.Generator("cpu").manual_seed(noise)
    if isinstance(noise, torch.Generator):
        generator = noise
        return lambda: torch.randn(like.shape, generator=generator, device=generator.device).to(like.device, like.dtype)
    if isinstance(noise, Sequence) and all(isinstance(g, torch.Generator) for g in noise):
        generators = list(noise)
        if len(generators) != like.shape[0]:
            raise ValueError(f"got {len(generators)} generators for a batch of {like.shape[0]}")
        return lambda: randn_per_sample(like.shape, generators).to(like.device, like.dtype)
    raise TypeError(f"noise must be None, a seed, a generator, a list of generators, a tensor or a callable; got {type(noise).__name__}")
