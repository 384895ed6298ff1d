"""Preconditioning: turn a raw network into a sigma-frame denoiser, and back.

``D(x, sigma) = to_x0(F(c_in(sigma) * x, c_noise(sigma)))`` generalises EDM's
``c_skip x + c_out F(c_in x, c_noise)`` (Karras et al. 2022, Eq. 7 and Table 1) to every parameterisation:
what the network predicts (``prediction``, see :mod:`unstatic.core.predictions`), how its input is scaled
(``input_scaling``: the frame it was trained in), and what it is told about the noise level
(``c_noise``: the schedule's timestep, integer or fractional).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from unstatic.core.continuous import NoiseSchedule
from unstatic.core.frames import per_sample
from unstatic.core.predictions import PREDICTIONS, edm_scalings, from_x0, to_x0
from unstatic.denoisers.protocol import Cond, Denoiser, Network

# c_in(sigma, sigma_data): the factor that takes sigma-frame x to the frame the network was trained in.
INPUT_SCALINGS = {
    "vp": lambda s, sd: 1 / (1 + s**2) ** 0.5,  # x_vp = x / sqrt(1 + sigma^2)
    "flow": lambda s, sd: 1 / (1 + s),  # x_flow = x / (1 + sigma)
    "edm": lambda s, sd: edm_scalings(s, sd)[2],  # unit-variance input (Karras et al. 2022, Eq. 7)
    "none": lambda s, sd: torch.ones_like(s) if isinstance(s, Tensor) else 1.0,  # VE models
}

_DEFAULT_SCALING = {"eps": "vp", "v": "vp", "x0": "vp", "score": "none", "flow": "flow", "edm": "edm"}


def _resolve_scaling(prediction: str, input_scaling: str | None) -> str:
    """Validate the pair and fill in the input scaling that goes with the prediction kind."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; expected one of {', '.join(PREDICTIONS)}")
    input_scaling = input_scaling or _DEFAULT_SCALING[prediction]
    if input_scaling not in INPUT_SCALINGS:
        raise ValueError(f"unknown input scaling {input_scaling!r}; expected one of {', '.join(INPUT_SCALINGS)}")
    return input_scaling


@dataclass(frozen=True, eq=False)
class Preconditioned:
    """A raw network as a denoiser.

    Args:
        network: ``network(x_in, timestep, cond)`` returning its prediction.
        schedule: maps sigma to the network's timestep (a :class:`DiscreteSchedule` for discrete VP models,
            :class:`EDMSchedule`, :class:`VPSDESchedule` or :class:`FlowSchedule` for continuous ones).
        prediction: what the network predicts: ``eps``, ``v``, ``x0``, ``flow``, ``score`` or ``edm``.
        input_scaling: ``vp``, ``flow``, ``edm`` or ``none``; by default the one that goes with ``prediction``.
        quantize_timesteps: feed the nearest integer timestep instead of a fractional one.
        sigma_data: the data standard deviation EDM's scalings assume.
    """

    network: Network
    schedule: NoiseSchedule
    prediction: str = "eps"
    input_scaling: str | None = None
    quantize_timesteps: bool = False
    sigma_data: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_scaling", _resolve_scaling(self.prediction, self.input_scaling))

    def timestep(self, sigma: Tensor) -> Tensor:
        """The network's noise input for per-sample ``sigma``: float32 (float64 for float64 sigma; never
        bf16/fp16, which cannot tell timestep 998 from 999), on sigma's device."""
        t = self.schedule.timestep_at(sigma.detach().to("cpu", torch.float64))
        if self.quantize_timesteps:
            t = t.round()
        return t.to(sigma.device, torch.float64 if sigma.dtype == torch.float64 else torch.float32)

    def raw(self, x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
        """The network's own output (a ``prediction``) at sigma-frame ``(x, sigma)``, before conversion to x0.

        Training compares this with the target in the network's output space, so the loss calls the network
        exactly as sampling does.
        """
        c_in = INPUT_SCALINGS[self.input_scaling](per_sample(sigma, x), self.sigma_data)
        return self.network(x * c_in, self.timestep(sigma), cond)

    def __call__(self, x: Tensor, sigma: Tensor, cond: Cond = None) -> Tensor:
        out = self.raw(x, sigma, cond)
        return to_x0(self.prediction, out, x, per_sample(sigma, x), self.sigma_data)


@dataclass(frozen=True, eq=False)
class NetworkFromDenoiser:
    """The inverse of :class:`Preconditioned`: present a denoiser as a raw network of a given kind.

    Lets a denoiser (e.g. the exact :class:`GaussianMixture`) drive code that expects a trained network,
    such as another library's scheduler, and gives training targets in any parameterisation.
    """

    denoiser: Denoiser
    schedule: NoiseSchedule
    prediction: str = "eps"
    input_scaling: str | None = None
    sigma_data: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_scaling", _resolve_scaling(self.prediction, self.input_scaling))

    def __call__(self, x_in: Tensor, timestep: Tensor, cond: Cond = None) -> Tensor:
        t = torch.as_tensor(timestep, dtype=torch.float64).reshape(-1).cpu()
        if t.numel() == 1:
            t = t.expand(x_in.shape[0])
        sigma = self.schedule.sigma_at(t).to(x_in.device, x_in.dtype)
        s = per_sample(sigma, x_in)
        x = x_in / INPUT_SCALINGS[self.input_scaling](s, self.sigma_data)
        x0 = self.denoiser(x, sigma, cond)
        return from_x0(self.prediction, x0, x, s, self.sigma_data)
