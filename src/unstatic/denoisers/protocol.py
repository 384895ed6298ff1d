"""The one interface every model is used through: a denoiser ``D(x, sigma, cond) -> x0_hat``.

``x`` is a batch in the sigma frame (``x = x0 + sigma * eps``, any shape ``[B, ...]``), ``sigma`` a tensor of
shape ``[B]`` (one noise level per sample), ``cond`` whatever the model is conditioned on. The result is the
model's estimate of the clean sample, the posterior mean ``E[x0 | x]`` for an ideal model
(Karras et al. 2022, Eq. 2-3).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, Union

import torch
from torch import Tensor

# A condition is a tensor with a leading batch dimension (text tokens, class labels), a mapping of
# such tensors (several conditions at once), or None for an unconditional model.
Cond = Union[Tensor, Mapping[str, Tensor], None]


class Denoiser(Protocol):
    def __call__(self, x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor: ...


class Network(Protocol):
    """A raw network: it sees a scaled input and its own noise input ("timestep"), never sigma itself."""

    def __call__(self, x: Tensor, timestep: Tensor, cond: Cond = None) -> Tensor: ...


def concat_conds(first: Cond, second: Cond) -> Cond:
    """Stack two conditions along the batch so one forward evaluates both (used by guidance)."""
    if first is None and second is None:
        return None
    if isinstance(first, Tensor) and isinstance(second, Tensor):
        if first.shape[1:] != second.shape[1:]:
            raise ValueError(
                f"cannot batch conditions of shapes {tuple(first.shape)} and {tuple(second.shape)}; "
                "encode both to the same length"
            )
        return torch.cat([first, second])
    if isinstance(first, Mapping) and isinstance(second, Mapping):
        if first.keys() != second.keys():
            raise ValueError(f"conditions have different keys: {sorted(first)} vs {sorted(second)}")
        return {key: concat_conds(first[key], second[key]) for key in first}
    raise TypeError(f"cannot batch a {type(first).__name__} condition with a {type(second).__name__} one")
