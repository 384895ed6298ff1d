"""Learning rate as a pure function of the step, so resuming needs no scheduler state.

Linear warm-up (Goyal et al. 2017, Sec. 2.2) to the base rate, then constant or half-cosine decay to
``min_lr_ratio * lr`` (Loshchilov & Hutter 2017, SGDR, Eq. 5 without restarts)."""

from __future__ import annotations

import math


def learning_rate(
    step: int, total_steps: int, lr: float, warmup_steps: int = 0, schedule: str = "constant", min_lr_ratio: float = 0.0
) -> float:
    """The rate for optimizer step ``step`` (0-based) of ``total_steps``."""
    if warmup_steps > 0 and step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    if schedule != "cosine":
        raise ValueError(f"unknown learning-rate schedule {schedule!r}; expected constant or cosine")
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
