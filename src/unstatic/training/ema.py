"""Exponential moving average of weights (Polyak & Juditsky 1992; as used for diffusion by Ho et al. 2020,
Sec. 4, and Song & Ermon 2020): ``ema <- decay * ema + (1 - decay) * weights`` after every optimizer step.

With warm-up the decay is ``min(decay, (1 + n) / (10 + n))`` after n updates (TensorFlow's
``ExponentialMovingAverage(num_updates=n)``), so early, poor weights are forgotten quickly instead of dominating
the average for ~1/(1-decay) steps."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn


class EMA:
    """The averaged copy of a model's state dict (floating tensors averaged, integer buffers copied)."""

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0 <= decay < 1:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.updates = 0
        self.shadow: dict[str, Tensor] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        for name, value in model.state_dict().items():
            shadow = self.shadow[name]
            if shadow.is_floating_point():
                shadow.lerp_(value.detach().to(shadow.dtype), 1 - decay)
            else:
                shadow.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict[str, Tensor]:
        return self.shadow

    def load_state_dict(self, shadow: Mapping[str, Tensor], updates: int) -> None:
        missing, unexpected = set(self.shadow) - set(shadow), set(shadow) - set(self.shadow)
        if missing or unexpected:
            raise ValueError(f"EMA weights do not match the model: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}")
        for name, value in shadow.items():
            self.shadow[name].copy_(value)
        self.updates = updates

    def copy_to(self, model: nn.Module) -> None:
        """Load the averaged weights into ``model`` (e.g. a copy used for sampling previews or export)."""
        model.load_state_dict(self.shadow)
