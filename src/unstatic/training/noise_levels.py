"""The noise a training example is corrupted with: its level (sigma samplers) and the noise itself.

Each sampler is a callable ``(n, generator) -> sigma`` returning ``n`` sigma-frame noise levels as float32
on the generator's device (CPU for the usual CPU generator); the math runs in float64 first. Samplers are
built by the small factories below (``functools.partial`` objects, so they print their settings and
pickle) and looked up by name in :data:`NOISE_LEVELS` through :func:`get_noise_levels`.
:func:`sample_noise` draws the noise, with optional offset noise.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor

from unstatic.core.betas import DiscreteSchedule
from unstatic.core.continuous import NoiseSchedule
from unstatic.core.frames import INFINITE_NOISE_SIGMA

NoiseLevelSampler = Callable[[int, torch.Generator], Tensor]

# Flow time t is kept in [1/(1+C), C/(1+C)] with C = INFINITE_NOISE_SIGMA, i.e. sigma in [1/C, C]: the top end
# is the project's stand-in for pure noise, the bottom end its mirror image in log-sigma.
_LOGIT_NORMAL_SIGMA_RANGE = (1 / INFINITE_NOISE_SIGMA, INFINITE_NOISE_SIGMA)


def _check_count(n: int) -> None:
    if n < 0:
        raise ValueError(f"number of noise levels must be non-negative, got n={n}")


def _draw_uniform_discrete(n: int, generator: torch.Generator, *, schedule: DiscreteSchedule) -> Tensor:
    _check_count(n)
    t = torch.randint(0, schedule.num_train_timesteps, (n,), generator=generator, device=generator.device)
    return schedule.sigma_at(t.cpu()).to(generator.device, torch.float32)


def uniform_discrete(schedule: DiscreteSchedule) -> NoiseLevelSampler:
    """Integer timestep ``t ~ U{0, ..., T-1}``, returned as its sigma (Ho et al. 2020, Algorithm 1, line 3).

    The float32 sigma maps back through ``Preconditioned.timestep`` to within ~2e-5 of the integer; wrap
    the network with ``quantize_timesteps=True`` to feed it exactly the integer it was drawn at.
    """
    if not isinstance(schedule, DiscreteSchedule):
        raise ValueError(
            f"uniform_discrete needs a DiscreteSchedule (integer training timesteps), got {type(schedule).__name__}"
        )
    return partial(_draw_uniform_discrete, schedule=schedule)


def _draw_log_normal(n: int, generator: torch.Generator, *, p_mean: float, p_std: float) -> Tensor:
    _check_count(n)
    log_sigma = p_mean + p_std * torch.randn(n, generator=generator, device=generator.device, dtype=torch.float64)
    return log_sigma.exp().float()


def log_normal(p_mean: float = -1.2, p_std: float = 1.2) -> NoiseLevelSampler:
    """``ln(sigma) ~ N(P_mean, P_std^2)`` (Karras et al. 2022, Table 1 "Training" rows and Sec. 5)."""
    if not p_std > 0:
        raise ValueError(f"log_normal p_std must be positive, got {p_std}")
    return partial(_draw_log_normal, p_mean=float(p_mean), p_std=float(p_std))


def _draw_logit_normal(n: int, generator: torch.Generator, *, mean: float, std: float, shift: float) -> Tensor:
    _check_count(n)
    logit_t = mean + std * torch.randn(n, generator=generator, device=generator.device, dtype=torch.float64)
    # t = sigmoid(logit_t) is flow time, and sigma = t / (1 - t) = exp(logit_t). SD3's shift
    # t' = shift t / (1 + (shift - 1) t) is exactly sigma' = shift * sigma, so work in sigma and never form
    # 1 - t, which loses all precision as t -> 1.
    sigma = shift * logit_t.exp()
    return sigma.clamp(*_LOGIT_NORMAL_SIGMA_RANGE).float()


def logit_normal(mean: float = 0.0, std: float = 1.0, shift: float = 1.0) -> NoiseLevelSampler:
    """Rectified-flow time ``t = sigmoid(u)``, ``u ~ N(mean, std^2)``, optionally shifted, as ``sigma = t / (1 - t)``.

    Logit-normal sampling is Esser et al. 2024 (SD3), Sec. 3.1, Eq. 19; ``shift`` is their resolution-dependent
    timestep shift ``t' = shift t / (1 + (shift - 1) t)`` (Sec. 5.3.2, Eq. 23; ``shift = sqrt(m / n)``), which
    moves samples towards more noise for ``shift > 1``. ``t`` is kept inside ``(0, 1)`` so sigma stays finite
    and positive: at most :data:`~unstatic.core.frames.INFINITE_NOISE_SIGMA`, at least its reciprocal.
    """
    if not std > 0:
        raise ValueError(f"logit_normal std must be positive, got {std}")
    if not shift > 0:
        raise ValueError(f"logit_normal shift must be positive, got {shift}")
    return partial(_draw_logit_normal, mean=float(mean), std=float(std), shift=float(shift))


def _draw_uniform_continuous(
    n: int, generator: torch.Generator, *, schedule: NoiseSchedule, low: float, high: float
) -> Tensor:
    _check_count(n)
    u = torch.rand(n, generator=generator, device=generator.device, dtype=torch.float64)
    return schedule.sigma_at((low + (high - low) * u).cpu()).to(generator.device, torch.float32)


def uniform_continuous(schedule: NoiseSchedule) -> NoiseLevelSampler:
    """The schedule's own time coordinate uniform over its range, returned as sigma.

    For a :class:`~unstatic.core.continuous.VPSDESchedule` this is Song et al. 2021's ``t ~ U[eps_t, 1]``
    (Eq. 7); for a :class:`~unstatic.core.continuous.FlowSchedule` it is rectified flow's ``t ~ U(0, 1)``
    (Liu et al. 2022, Eq. 1), bounded as the schedule bounds it.
    """
    if schedule is None or not all(hasattr(schedule, a) for a in ("sigma_at", "timestep_at", "sigma_min", "sigma_max")):
        raise ValueError(f"uniform_continuous needs a noise schedule, got {type(schedule).__name__}")
    low = float(schedule.timestep_at(schedule.sigma_min))
    high = float(schedule.timestep_at(schedule.sigma_max))
    return partial(_draw_uniform_continuous, schedule=schedule, low=low, high=high)


NOISE_LEVELS: dict[str, Callable[..., NoiseLevelSampler]] = {
    "uniform_discrete": uniform_discrete,
    "log_normal": log_normal,
    "logit_normal": logit_normal,
    "uniform_continuous": uniform_continuous,
}


def get_noise_levels(name: str, schedule: NoiseSchedule | None = None, **options: float) -> NoiseLevelSampler:
    """Build the noise-level sampler registered as ``name``.

    ``schedule`` goes to the samplers that need one (``uniform_discrete``, ``uniform_continuous``) and is
    ignored by the others, so a trainer can always pass its model's schedule.
    """
    if name not in NOISE_LEVELS:
        raise ValueError(f"unknown noise-level sampler {name!r}; expected one of {', '.join(NOISE_LEVELS)}")
    factory = NOISE_LEVELS[name]
    parameters = inspect.signature(factory).parameters
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        allowed = [p for p in parameters if p != "schedule"]
        raise ValueError(f"noise-level sampler {name!r} has no option(s) {unknown}; it takes {allowed}")
    if "schedule" in parameters:
        return factory(schedule, **options)
    return factory(**options)


def sample_noise(shape: tuple[int, ...], generator: torch.Generator, offset_noise: float = 0.0) -> Tensor:
    """Standard normal training noise of ``shape`` ``[B, C, ...]``, plus optional offset noise (float32).

    Offset noise adds ``offset_noise * randn(B, C, 1, ..., 1)``, one constant per sample and channel, so the
    model also learns to change an image's overall brightness and colour (Guttenberg 2023, "Diffusion with
    offset noise"). The offset is drawn right after the main noise from the same generator, and drawn even at
    zero strength, so what the generator gives afterwards (noise levels, dropout masks) does not depend on
    the strength.
    """
    shape = tuple(shape)
    noise = torch.randn(shape, generator=generator, device=generator.device)
    if len(shape) < 2:
        if offset_noise:
            raise ValueError(f"offset noise needs a [B, C, ...] shape with a channel axis, got {shape}")
        return noise
    offset = torch.randn(shape[:2] + (1,) * (len(shape) - 2), generator=generator, device=generator.device)
    return noise + offset_noise * offset
