"""A diffusers scheduler ``config.json`` as our schedule: the training noise levels (a :class:`ScheduleSpec` of
kind ``discrete``), what the network predicts, and the sigma spacing the checkpoint samples with by default.

Only the fields that define the model are read (betas, ``num_train_timesteps``, ``prediction_type``,
``rescale_betas_zero_snr``) plus the default spacing (``timestep_spacing``, ``steps_offset``,
``use_karras_sigmas``/``use_exponential_sigmas``). Which scheduler *class* a folder names (PNDM, DDIM, Euler,
...) is a sampling choice, not part of the model: any of our samplers can be used with it.
"""

from __future__ import annotations

import warnings
from typing import Any

from unstatic.models.spec import ScheduleSpec

# diffusers' prediction_type -> ours (Ho et al. 2020 eps; Salimans & Ho 2022 v; x0 = "sample")
PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
# what users type for a prediction kind (``--prediction``) -> ours
PREDICTION_WORDS = {"eps": "eps", "epsilon": "eps", "v": "v", "v_prediction": "v"}
# diffusers' beta_schedule -> ours ("squaredcos_cap_v2" is iDDPM's cosine schedule with betas capped at 0.999)
BETA_SCHEDULES = {"linear": "linear", "scaled_linear": "scaled_linear", "squaredcos_cap_v2": "cosine", "sigmoid": "sigmoid"}
# The scheduler classes whose timestep_spacing defaults to "linspace" rather than "leading" when a config omits it.
_LINSPACE_DEFAULT = ("DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler", "UniPCMultistepScheduler", "DEISMultistepScheduler")

# diffusers' defaults (shared by its SD schedulers) for keys an old config.json omits
_DEFAULTS: dict[str, Any] = {
    "num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
    "prediction_type": "epsilon", "steps_offset": 0, "rescale_betas_zero_snr": False, "trained_betas": None,
}


def schedule_from_diffusers(config: dict[str, Any], source: str = "scheduler config") -> tuple[ScheduleSpec, str, str]:
    """``(schedule, prediction, default_scheduler)`` for a diffusers scheduler config dict."""
    config = {**_DEFAULTS, **config}
    if config["trained_betas"] is not None:
        raise ValueError(f"{source}: explicit trained_betas are not supported (only named beta schedules)")
    if config["beta_schedule"] not in BETA_SCHEDULES:
        raise ValueError(f"{source}: beta_schedule {config['beta_schedule']!r} is not one of {', '.join(BETA_SCHEDULES)}")
    if config["prediction_type"] not in PREDICTION_TYPES:
        raise ValueError(f"{source}: prediction_type {config['prediction_type']!r} is not one of {', '.join(PREDICTION_TYPES)}")
    if config.get("timestep_type", "discrete") != "discrete":
        raise ValueError(f"{source}: timestep_type {config['timestep_type']!r} is not supported (only 'discrete')")
    schedule = ScheduleSpec(
        kind="discrete", beta_schedule=BETA_SCHEDULES[config["beta_schedule"]], beta_start=float(config["beta_start"]),
        beta_end=float(config["beta_end"]), num_train_timesteps=int(config["num_train_timesteps"]),
        zero_terminal_snr=bool(config["rescale_betas_zero_snr"]),
    )
    return schedule, PREDICTION_TYPES[config["prediction_type"]], default_spacing(config, source)


def default_spacing(config: dict[str, Any], source: str = "scheduler config") -> str:
    """Our spacing name for a scheduler config's own timestep choice."""
    if config.get("use_karras_sigmas"):
        return "karras"
    if config.get("use_exponential_sigmas"):
        return "exponential"
    fallback = "linspace" if config.get("_class_name") in _LINSPACE_DEFAULT else "leading"
    spacing, offset = config.get("timestep_spacing") or fallback, int(config.get("steps_offset") or 0)
    if spacing == "leading":
        if offset not in (0, 1):
            warnings.warn(f"{source}: steps_offset={offset} is not supported; sampling with steps_offset=1", stacklevel=2)
        return "ddim_uniform" if offset else "leading"  # ddim_uniform = leading + 1, SD 1.x/2.x's own
    if spacing in ("trailing", "linspace"):
        return spacing
    raise ValueError(f"{source}: timestep_spacing {spacing!r} is not one of leading, trailing, linspace")


def schedule_to_diffusers(schedule: ScheduleSpec, prediction: str, default_scheduler: str = "") -> dict[str, Any]:
    """An ``EulerDiscreteScheduler`` config that reproduces the schedule (the inverse of
    :func:`schedule_from_diffusers` for every spacing it produces; others fall back to SD's leading + 1)."""
    if schedule.kind != "discrete":
        raise ValueError(f"only discrete (DDPM-beta) schedules have a diffusers scheduler config, not {schedule.kind!r}")
    predictions = {v: k for k, v in PREDICTION_TYPES.items()}
    if prediction not in predictions:
        raise ValueError(f"prediction {prediction!r} has no diffusers prediction_type (eps, v or x0 only)")
    spacing = {"ddim_uniform": ("leading", 1), "leading": ("leading", 0), "trailing": ("trailing", 0),
               "linspace": ("linspace", 0)}.get(default_scheduler, ("leading", 1))
    return {
        "_class_name": "EulerDiscreteScheduler",
        "num_train_timesteps": schedule.num_train_timesteps, "beta_start": schedule.beta_start,
        "beta_end": schedule.beta_end, "beta_schedule": {v: k for k, v in BETA_SCHEDULES.items()}[schedule.beta_schedule],
        "prediction_type": predictions[prediction], "rescale_betas_zero_snr": schedule.zero_terminal_snr,
        "timestep_spacing": spacing[0], "steps_offset": spacing[1],
        "use_karras_sigmas": default_scheduler == "karras", "use_exponential_sigmas": default_scheduler == "exponential",
        "interpolation_type": "linear", "trained_betas": None,
    }


def parse_prediction(word: str | None) -> str | None:
    """``"eps"`` or ``"v"`` for what a user or an inference ``.yaml`` says (None stays None)."""
    if word is None:
        return None
    if word not in PREDICTION_WORDS:
        raise ValueError(f"prediction must be eps or v for a Stable Diffusion checkpoint, got {word!r}")
    return PREDICTION_WORDS[word]
