"""Weights kept in bfloat16 (or float16), arithmetic in float32: half the weight memory at float32 speed.

On a CPU without bf16 instructions PyTorch emulates every bf16 operation, several times slower than float32
(``unstatic.cpu_features``), so a model loaded in bf16 to save memory would run 7-10x slower there.
:func:`compute_in_float32` keeps the narrow weights as they are and lets each layer compute in float32: just
before a module with parameters of its own runs (or one that reads its submodules' parameters directly, with
theirs), its narrow parameters are widened to float32 copies and its narrow floating-point inputs cast to
float32; right after it runs (or fails), the narrow weights are put back.
Only one layer's float32 copy exists at a time (SD 1.5's largest is 13 MB), and widening the whole U-Net's
weights once per call (1.7 GB read, 3.4 GB written) costs a few percent of a float32 forward pass on a CPU.

The numbers are a float32 model's whose weights were rounded to bf16: activations never round to bf16, unlike
autocast or a bf16 model, whose every layer output rounds to 8 significant bits. For inference: the widened
copies are detached, so no gradient reaches the stored weights; and one call at a time per module, since the
float32 copies stand in the module's parameter slots while it runs (the server runs one job at a time).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

NARROW = (torch.bfloat16, torch.float16)
_MARK = "_unstatic_computes_in_float32"


def _widen(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.dtype in NARROW:
        return value.float()
    if isinstance(value, (tuple, list)):
        return type(value)(_widen(v) for v in value)
    return value


def _float32_slots(module: nn.Module) -> list[tuple[nn.Module, str, torch.Tensor]]:
    """The narrow parameters a module's forward reads: its own, or with ``reads_child_parameters`` (a class
    attribute, e.g. GEGLU's, which reads its projection's weight directly) also those of its submodules."""
    owners = module.modules() if getattr(module, "reads_child_parameters", False) else (module,)
    return [(owner, name, p) for owner in owners for name, p in owner._parameters.items()
            if p is not None and p.dtype in NARROW]  # fmt: skip


def _before(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    narrow = _float32_slots(module)
    module._unstatic_narrow = narrow
    for owner, name, p in narrow:
        # a plain tensor in _parameters: attribute access returns it as it would the Parameter
        owner._parameters[name] = p.detach().float()
    return _widen(args), {k: _widen(v) for k, v in kwargs.items()}


def _after(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
    for owner, name, p in module.__dict__.pop("_unstatic_narrow", ()):
        owner._parameters[name] = p


def compute_in_float32(module: nn.Module) -> nn.Module:
    """Make ``module`` (whose floating-point parameters may be bf16 or float16) compute in float32, keeping its
    parameters as stored. Idempotent; returns ``module``."""
    covered: set[int] = set()  # submodules of a module whose hooks widen their parameters too
    for sub in module.modules():  # parents before their children
        if id(sub) in covered:
            continue
        if getattr(sub, "reads_child_parameters", False):
            covered.update(id(m) for m in sub.modules() if m is not sub)
        elif not any(p is not None for p in sub._parameters.values()):
            continue
        if getattr(sub, _MARK, False):
            continue
        sub.register_forward_pre_hook(_before, with_kwargs=True)
        sub.register_forward_hook(_after, with_kwargs=True, always_call=True)
        setattr(sub, _MARK, True)
    return module


def computes_in_float32(module: nn.Module) -> bool:
    """Whether :func:`compute_in_float32` was applied to ``module``'s layers."""
    return any(getattr(sub, _MARK, False) for sub in module.modules())


def input_dtype(module: nn.Module) -> torch.dtype:
    """The dtype to hand ``module`` its inputs in: its parameters' dtype, or float32 for narrow weights that compute
    in float32 (casting an image or a latent to bf16 first would round it for nothing)."""
    dtype = next(module.parameters()).dtype
    return torch.float32 if dtype in NARROW and computes_in_float32(module) else dtype
