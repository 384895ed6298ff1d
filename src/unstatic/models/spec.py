"""What a trained network needs besides its weights to be sampled: the schedule it was trained on, what it
predicts, what it is conditioned on, and the images it makes.

A :class:`DiffusionSpec` is written beside the network as ``model.json``; :meth:`DiffusionSpec.denoiser`
wraps the network into the one denoiser interface with exactly the preconditioning used in training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from unstatic.core.betas import BETA_SCHEDULES, DiscreteSchedule
from unstatic.core.continuous import EDMSchedule, FlowSchedule, NoiseSchedule
from unstatic.core.predictions import PREDICTIONS
from unstatic.core.spacings import resolve_spacing
from unstatic.denoisers.precondition import Preconditioned
from unstatic.denoisers.protocol import Network
from unstatic.networks.weights import strip_type_and_version

SCHEDULE_KINDS = ("discrete", "edm", "flow")
CONDITIONINGS = ("none", "class", "text")


def check_guidance_interval(interval: Sequence[float]) -> tuple[float, float]:
    """``interval`` as a ``(low, high)`` pair of noise levels with ``0 <= low < high`` (``high`` may be infinite),
    or a ValueError saying what is wrong with it."""
    values = tuple(float(v) for v in interval)
    if len(values) != 2 or not (0 <= values[0] < values[1]) or math.isnan(values[1]):
        raise ValueError(f"a guidance interval is two noise levels (low, high) with 0 <= low < high, got {tuple(interval)}")
    return values


@dataclass(frozen=True)
class ScheduleSpec:
    """A noise schedule by kind; only the fields of that kind are used.

    - ``discrete``: DDPM betas (Ho et al. 2020) over ``num_train_timesteps`` integer timesteps.
    - ``edm``: continuous sigma in ``[sigma_min, sigma_max]`` with ``c_noise = ln(sigma)/4`` (Karras et al. 2022).
    - ``flow``: rectified-flow time with an optional ``shift`` (Esser et al. 2024).
    """

    kind: str = "edm"
    beta_schedule: str = "linear"
    beta_start: float = 0.0001
    beta_end: float = 0.02
    num_train_timesteps: int = 1000
    zero_terminal_snr: bool = False
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    shift: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"schedule.kind {self.kind!r} is not one of {', '.join(SCHEDULE_KINDS)}")
        if self.kind == "discrete" and self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"schedule.beta_schedule {self.beta_schedule!r} is not one of {', '.join(BETA_SCHEDULES)}")
        if not 0 < self.sigma_min < self.sigma_max:
            raise ValueError(f"schedule needs 0 < sigma_min < sigma_max, got {self.sigma_min} and {self.sigma_max}")

    def build(self, sigma_data: float = 0.5) -> NoiseSchedule:
        if self.kind == "discrete":
            return DiscreteSchedule.from_config(
                self.beta_schedule, self.beta_start, self.beta_end, self.num_train_timesteps, self.zero_terminal_snr
            )
        if self.kind == "edm":
            return EDMSchedule(self.sigma_min, self.sigma_max, sigma_data)
        return FlowSchedule(shift=self.shift, num_train_timesteps=self.num_train_timesteps)


@dataclass(frozen=True)
class DiffusionSpec:
    """A network's diffusion setup. ``conditioning`` is ``none``, ``class`` (labels ``0..num_classes-1``;
    label ``num_classes`` means "no class", the null condition guidance uses) or ``text`` (the network
    cross-attends to the per-token states of ``text_encoder``, a name in :mod:`unstatic.text`'s registry,
    padded to ``text_max_length`` tokens; the empty prompt is the null condition).

    Latent models (``latent``; Rombach et al. 2022) denoise the latents of the :class:`AutoencoderKL` kept in
    the model folder's ``vae/``: ``channels`` and ``image_size`` are then the latent's, and the VAE's config
    holds the latent scaling (and shift) factor. ``text_encoder="clip"`` means the CLIP text model and
    tokenizer in the model folder (``text_encoder/``, ``tokenizer/``), read with ``clip_skip`` (A1111 counting,
    1 = last layer). ``default_scheduler`` is the sigma spacing used when a caller names none (an imported
    checkpoint's own, e.g. ``ddim_uniform`` for SD's leading spacing with ``steps_offset=1``); empty: karras.
    ``default_guidance`` is the classifier-free guidance scale used when a caller names none, for models whose
    measured best differs from the pipelines' general default (``DEFAULT_GUIDANCE`` in
    :mod:`unstatic.pipelines.generation`); 0: that default. ``default_guidance_interval`` ``(low, high)`` guides only
    at noise levels ``low <= sigma <= high`` unless a caller says otherwise (Kynkäänniemi et al. 2024; outside it
    one call per step instead of two); empty: every step.

    Version 2 added ``latent``, ``clip_skip`` and ``default_scheduler``, version 3 the two guidance defaults; older
    files load with their defaults (pixel space, clip_skip 1, karras, the general guidance)."""

    TYPE: ClassVar[str] = "diffusion"
    VERSION: ClassVar[int] = 3

    prediction: str = "edm"
    schedule: ScheduleSpec = field(default_factory=ScheduleSpec)
    sigma_data: float = 0.5
    image_size: int = 32
    channels: int = 3
    conditioning: str = "none"
    num_classes: int = 0
    class_names: tuple[str, ...] = ()
    text_encoder: str = ""
    text_max_length: int = 0
    latent: bool = False
    clip_skip: int = 1
    default_scheduler: str = ""
    default_guidance: float = 0.0
    default_guidance_interval: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction {self.prediction!r} is not one of {', '.join(PREDICTIONS)}")
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning {self.conditioning!r} is not one of {', '.join(CONDITIONINGS)}")
        if self.conditioning == "class" and self.num_classes < 1:
            raise ValueError("conditioning 'class' needs num_classes >= 1")
        if self.conditioning == "text" and (not self.text_encoder or self.text_max_length < 1):
            raise ValueError("conditioning 'text' needs text_encoder and text_max_length >= 1")
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class_names for num_classes={self.num_classes}")
        if self.clip_skip < 1:
            raise ValueError(f"clip_skip must be at least 1 (1 = the last layer), got {self.clip_skip}")
        if self.default_scheduler:
            object.__setattr__(self, "default_scheduler", resolve_spacing(self.default_scheduler))
        if not (self.default_guidance == 0 or self.default_guidance >= 1):
            raise ValueError(f"default_guidance must be at least 1 (1 = no guidance), or 0 for the pipelines' default; "
                             f"got {self.default_guidance}")
        interval = self.default_guidance_interval
        object.__setattr__(self, "default_guidance_interval", check_guidance_interval(interval) if interval else ())

    @property
    def null_class(self) -> int:
        """The label that stands for "no class" (the unconditional branch of classifier-free guidance)."""
        return self.num_classes

    def build_schedule(self) -> NoiseSchedule:
        return self.schedule.build(self.sigma_data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, ``type`` and ``version`` first."""
        return {"type": self.TYPE, "version": self.VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiffusionSpec:
        """Inverse of :meth:`to_dict`; unknown fields and newer versions are errors, never silently dropped."""
        data = strip_type_and_version(cls, data)
        schedule = data.pop("schedule", {})
        _reject_unknown(cls, data)
        _reject_unknown(ScheduleSpec, schedule)
        data["class_names"] = tuple(data.get("class_names", ()))
        return cls(schedule=ScheduleSpec(**schedule), **data)

    def denoiser(self, network: Network) -> Preconditioned:
        """``network`` as a sigma-frame denoiser, preconditioned exactly as it was in training."""
        return Preconditioned(network, self.build_schedule(), self.prediction, sigma_data=self.sigma_data)


def _reject_unknown(config_class: type, data: dict[str, Any]) -> None:
    unknown = sorted(set(data) - {f.name for f in fields(config_class)})
    if unknown:
        raise ValueError(f"unknown {config_class.__name__} fields: {unknown}")
