"""Progress reporting and clean interruption: what a sampler hands its callback after every step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True, slots=True)
class StepInfo:
    """The state after step ``step`` (0-based) of ``steps``: the new ``x`` and the clean estimate used."""

    step: int
    steps: int
    sigma: float
    sigma_next: float
    x: Tensor
    denoised: Tensor


# Return True (or anything truthy) to stop: the sampler then returns the latest clean estimate at once.
Callback = Callable[[StepInfo], "bool | None"]
