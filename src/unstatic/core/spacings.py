"""Sigma spacings for sampling: each returns a strictly decreasing 1-D float64 tensor ending in 0.

``steps`` is the number of sampler steps, so the result has ``steps + 1`` entries. Continuous spacings
need only the model's sigma range; timestep spacings use the model's :class:`NoiseSchedule`.
Names users type (A1111, ComfyUI, diffusers) resolve through :data:`SPACINGS` / :func:`resolve_spacing`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from unstatic.core.continuous import NoiseSchedule, shift_flow_t
from unstatic.core.frames import sigma_from_flow_t

_F64 = torch.float64


def _append_zero(sigmas: Tensor) -> Tensor:
    return torch.cat([sigmas.to(_F64), sigmas.new_zeros(1, dtype=_F64)])


def karras(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Karras et al. 2022, Eq. 5: ``(max^(1/rho) + i/(n-1) (min^(1/rho) - max^(1/rho)))^rho``."""
    ramp = torch.linspace(0, 1, steps, dtype=_F64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _append_zero((hi + ramp * (lo - hi)) ** rho)


def exponential(steps: int, sigma_min: float, sigma_max: float) -> Tensor:
    """Evenly spaced in log-sigma (k-diffusion ``get_sigmas_exponential``)."""
    return _append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), steps, dtype=_F64).exp())


def polyexponential(steps: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> Tensor:
    """Log-sigma following ``ramp^rho`` from max to min (k-diffusion ``get_sigmas_polyexponential``)."""
    ramp = torch.linspace(1, 0, steps, dtype=_F64) ** rho
    log_min = math.log(sigma_min)
    return _append_zero(torch.exp(ramp * (math.log(sigma_max) - log_min) + log_min))


def timestep_spacing(
    steps: int, schedule: NoiseSchedule, spacing: str = "leading", steps_offset: int = 0
) -> Tensor:
    """Uniform-in-timestep spacings exactly as diffusers defines them (Lin et al. 2024, Table 2).

    - ``leading``: ``arange(steps) * (T // steps) + steps_offset``, descending (SD 1.x/2.x default).
    - ``trailing``: ``round(arange(T, 0, -T / steps)) - 1``: starts at the last timestep, T - 1.
    - ``linspace``: ``linspace(0, T - 1, steps)`` descending, fractional timesteps kept.
    """
    T = len(schedule.sigmas)
    if steps > T:
        raise ValueError(f"{spacing!r} spacing needs steps <= the {T} training timesteps, got {steps}")
    if spacing == "leading":
        t = torch.arange(steps, dtype=_F64).mul(T // steps).round().flip(0) + steps_offset
    elif spacing == "trailing":
        t = torch.arange(T, 0, -T / steps, dtype=_F64).round() - 1
    elif spacing == "linspace":
        t = torch.linspace(0, T - 1, steps, dtype=_F64).flip(0)
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}; expected leading, trailing or linspace")
    return _append_zero(schedule.sigma_at(t))


def uniform_timesteps(steps: int, schedule: NoiseSchedule, sgm: bool = False) -> Tensor:
    """Evenly spaced in the model's own timestep from sigma_max to sigma_min.

    ``sgm=False`` is ComfyUI's "normal" and A1111's "uniform" (k-diffusion ``get_sigmas``);
    ``sgm=True`` is "sgm_uniform": ``steps + 1`` points with sigma_min dropped, as SGM/SDXL sample.
    """
    start = float(schedule.timestep_at(schedule.sigma_max))
    end = float(schedule.timestep_at(schedule.sigma_min))
    t = torch.linspace(start, end, steps + 1, dtype=_F64)[:-1] if sgm else torch.linspace(start, end, steps, dtype=_F64)
    return _append_zero(schedule.sigma_at(t))


def simple(steps: int, schedule: NoiseSchedule) -> Tensor:
    """Every ``T / steps``-th training sigma from the top (ComfyUI "simple")."""
    table = schedule.sigmas
    stride = len(table) / steps
    picks = [len(table) - 1 - int(i * stride) for i in range(steps)]
    return _append_zero(table[picks])


def flow_shift(steps: int, shift: float = 3.0, num_train_timesteps: int = 1000) -> Tensor:
    """SD3's shifted flow schedule (Esser et al. 2024, Sec. 5.3.2), as diffusers' FlowMatchEulerDiscreteScheduler.

    Flow times ``linspace(1, t_min, steps)`` are shifted by ``shift t / (1 + (shift - 1) t)`` and mapped to
    the sigma frame. Like diffusers, ``t_min`` is itself the shifted ``1 / T`` (the low end is shifted twice).
    """
    t_min = float(shift_flow_t(torch.tensor(1 / num_train_timesteps, dtype=_F64), shift))
    t = shift_flow_t(torch.linspace(1.0, t_min, steps, dtype=_F64), shift)
    return _append_zero(sigma_from_flow_t(t))


Spacing = Callable[..., Tensor]

# name -> fn(steps, schedule, **options). Continuous spacings read the range off the schedule.
SPACINGS: dict[str, Spacing] = {
    "karras": lambda n, s, **kw: karras(n, s.sigma_min, s.sigma_max, **kw),
    "exponential": lambda n, s, **kw: exponential(n, s.sigma_min, s.sigma_max),
    "polyexponential": lambda n, s, **kw: polyexponential(n, s.sigma_min, s.sigma_max, **kw),
    "leading": lambda n, s, **kw: timestep_spacing(n, s, "leading", **kw),
    "trailing": lambda n, s, **kw: timestep_spacing(n, s, "trailing"),
    "linspace": lambda n, s, **kw: timestep_spacing(n, s, "linspace"),
    "normal": lambda n, s, **kw: uniform_timesteps(n, s),
    "sgm_uniform": lambda n, s, **kw: uniform_timesteps(n, s, sgm=True),
    "simple": lambda n, s, **kw: simple(n, s),
    "ddim_uniform": lambda n, s, **kw: timestep_spacing(n, s, "leading", steps_offset=1),
    "flow_shift": lambda n, s, **kw: flow_shift(n, **kw),
}

# What users type in A1111, ComfyUI and diffusers configs, normalised by normalise_name().
_SPACING_ALIASES = {
    "uniform": "normal",
    "default": "normal",
    "ddim": "ddim_uniform",
    "sgm": "sgm_uniform",
    "shift": "flow_shift",
    "flow": "flow_shift",
    "use karras sigmas": "karras",
    "use exponential sigmas": "exponential",
}


# How AUTOMATIC1111 labels a spacing in its "Schedule type" setting, where it has one (its "Uniform" is our
# "normal"); other spacings are written title-cased. resolve_spacing reads all of them back.
A1111_SCHEDULE_LABELS = {
    "normal": "Uniform", "sgm_uniform": "SGM Uniform", "ddim_uniform": "DDIM", "karras": "Karras",
    "exponential": "Exponential", "polyexponential": "Polyexponential", "simple": "Simple",
}


def schedule_label(name: str) -> str:
    """The "Schedule type" A1111 writes for a spacing: ``"sgm_uniform"`` -> ``"SGM Uniform"``."""
    canonical = resolve_spacing(name)
    return A1111_SCHEDULE_LABELS.get(canonical, canonical.replace("_", " ").title())


def normalise_name(name: str) -> str:
    """Lower case, with "_", "-" and runs of spaces folded to one space: "DPM++_2M" -> "dpm++ 2m"."""
    return " ".join(name.strip().lower().replace("_", " ").replace("-", " ").split())


def resolve_spacing(name: str) -> str:
    """The canonical spacing name for what a user typed ("Karras", "sgm-uniform", "uniform", ...)."""
    key = normalise_name(name)
    by_key = {normalise_name(k): k for k in SPACINGS}
    if key in by_key:
        return by_key[key]
    if key in _SPACING_ALIASES:
        return _SPACING_ALIASES[key]
    raise ValueError(f"unknown scheduler {name!r}; known: {', '.join(sorted(SPACINGS))}")


def get_sigmas(name: str, steps: int, schedule: NoiseSchedule, **options) -> Tensor:
    """Sigmas for ``steps`` sampler steps of the named spacing on a model's ``schedule``."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    sigmas = SPACINGS[resolve_spacing(name)](steps, schedule, **options)
    if not bool((sigmas[1:] < sigmas[:-1]).all()):
        raise ValueError(
            f"scheduler {name!r} with {steps} steps repeats a noise level (too many steps for this model's "
            f"{len(schedule.sigmas)} timesteps?)"
        )
    return sigmas
