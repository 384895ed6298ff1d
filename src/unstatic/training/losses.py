"""The diffusion training loss, its targets and weightings for every parameterisation, and condition dropout.

Training calls the network through the same :class:`~unstatic.denoisers.precondition.Preconditioned` object
that sampling uses: ``x = x0 + sigma * noise`` (sigma frame), the network sees ``c_in(sigma) * x`` and its own
timestep, and its raw output is compared with the target in its *own* output space (eps, v, flow velocity,
x0, EDM's F or the score).

Weightings are defined once in x0 space and converted: a raw-output error ``e`` moves the x0 estimate by
``s(sigma) * e`` (``s`` is :func:`x0_error_scale`, read off :func:`~unstatic.core.predictions.to_x0`), so
``w_native = w_x0 * s^2`` gives ``w_native |raw - target|^2 == w_x0 |x0_hat - x0|^2`` for every kind, and a
weighting means the same thing whatever the network predicts.

Nothing here draws random numbers: the trainer draws noise, sigma (:mod:`unstatic.training.noise_levels`)
and dropout masks for the whole global batch from one generator and slices them per rank.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from functools import partial

import torch
from torch import Tensor

from unstatic.core.frames import per_sample
from unstatic.core.predictions import PREDICTIONS, edm_scalings
from unstatic.denoisers.precondition import Preconditioned
from unstatic.denoisers.protocol import Cond

# weighting(sigma [B], prediction, sigma_data) -> native loss weight [B]
Weighting = Callable[[Tensor, str, float], Tensor]


def _check_prediction(prediction: str) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; expected one of {', '.join(PREDICTIONS)}")


def training_target(
    prediction: str, x0: Tensor, noise: Tensor, sigma: Tensor | float, sigma_data: float = 0.5
) -> Tensor:
    """What a network of kind ``prediction`` should output at ``x = x0 + sigma * noise``.

    Equal to ``from_x0(prediction, x0, x, sigma)`` but written in ``x0`` and ``noise`` so nothing cancels:
    eps -> ``noise`` (Ho et al. 2020, Eq. 14); v -> ``(noise - sigma x0) / sqrt(1 + sigma^2)`` (Salimans & Ho
    2022, Sec. 4); flow -> ``noise - x0`` (Esser et al. 2024, Eq. 2); x0 -> ``x0``; score -> ``-noise / sigma``
    (Vincent 2011, denoising score matching); edm -> ``(x0 - c_skip x) / c_out``
    ``= (sigma x0 / sigma_data - sigma_data noise) / sqrt(sigma^2 + sigma_data^2)`` (Karras et al. 2022, Eq. 8).
    ``sigma`` must broadcast over ``x0`` (use :func:`~unstatic.core.frames.per_sample`).
    """
    _check_prediction(prediction)
    if prediction == "eps":
        return noise
    if prediction == "v":
        return (noise - sigma * x0) / (1 + sigma**2) ** 0.5
    if prediction == "flow":
        return noise - x0
    if prediction == "x0":
        return x0
    if prediction == "score":
        return -noise / sigma
    return (sigma / sigma_data * x0 - sigma_data * noise) / (sigma**2 + sigma_data**2) ** 0.5


def x0_error_scale(prediction: str, sigma: Tensor, sigma_data: float = 0.5) -> Tensor:
    """How far the x0 estimate moves per unit of raw-output error: ``|d to_x0 / d pred|`` at ``sigma``.

    eps ``sigma``, v ``sigma / sqrt(1 + sigma^2)``, flow ``sigma / (1 + sigma)``, x0 ``1``, score ``sigma^2``,
    edm ``c_out`` (the coefficients of ``pred`` in :func:`~unstatic.core.predictions.to_x0`).
    """
    _check_prediction(prediction)
    if prediction == "eps":
        return sigma
    if prediction == "v":
        return sigma / (1 + sigma**2) ** 0.5
    if prediction == "flow":
        return sigma / (1 + sigma)
    if prediction == "x0":
        return torch.ones_like(sigma)
    if prediction == "score":
        return sigma**2
    return edm_scalings(sigma, sigma_data)[1]


def native_weight(x0_weight: Tensor, sigma: Tensor, prediction: str, sigma_data: float = 0.5) -> Tensor:
    """Convert a loss weight on ``|x0_hat - x0|^2`` into the weight on the network's own squared error."""
    return x0_weight * x0_error_scale(prediction, sigma, sigma_data) ** 2


def none_weighting(sigma: Tensor, prediction: str, sigma_data: float = 0.5) -> Tensor:
    """Weight 1 on the raw output's squared error: plain MSE on what the network predicts.

    For eps this is DDPM's "simple" loss (Ho et al. 2020, Eq. 14); for flow, rectified flow's loss
    (Liu et al. 2022, Eq. 1).
    """
    _check_prediction(prediction)
    return torch.ones_like(sigma)


def _min_snr(sigma: Tensor, prediction: str, sigma_data: float = 0.5, *, gamma: float) -> Tensor:
    snr = sigma.double() ** -2  # sigma-frame SNR = alpha^2 / sigma_vp^2 = 1 / sigma^2
    x0_weight = snr.clamp(max=gamma)
    return native_weight(x0_weight, sigma.double(), prediction, sigma_data).to(sigma.dtype)


def min_snr_weighting(gamma: float = 5.0) -> Weighting:
    """Min-SNR-gamma: x0-space weight ``min(SNR, gamma)`` with ``SNR = 1 / sigma^2``.

    Hang et al. 2023, "Efficient Diffusion Training via Min-SNR Weighting Strategy", Sec. 3.4
    (``w_t = min{SNR(t), gamma}`` on the x0 loss); converted to the network's space this is their
    Appendix B's ``min(SNR, gamma) / SNR`` for eps and ``min(SNR, gamma) / (SNR + 1)`` for v.
    """
    if not gamma > 0:
        raise ValueError(f"min_snr gamma must be positive, got {gamma}")
    return partial(_min_snr, gamma=float(gamma))


def _edm(sigma: Tensor, prediction: str, sigma_data: float = 0.5, *, weighting_sigma_data: float | None) -> Tensor:
    sd = sigma_data if weighting_sigma_data is None else weighting_sigma_data
    s = sigma.double()
    x0_weight = (s**2 + sd**2) / (s * sd) ** 2
    return native_weight(x0_weight, s, prediction, sigma_data).to(sigma.dtype)


def edm_weighting(sigma_data: float | None = None) -> Weighting:
    """EDM's ``lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2`` on the x0 loss
    (Karras et al. 2022, Eq. 8 and Table 1, "loss weighting"); exactly 1 for an ``edm``-prediction network.

    ``sigma_data`` defaults to the denoiser's own.
    """
    if sigma_data is not None and not sigma_data > 0:
        raise ValueError(f"edm weighting sigma_data must be positive, got {sigma_data}")
    return partial(_edm, weighting_sigma_data=sigma_data)


WEIGHTINGS: dict[str, Callable[..., Weighting]] = {
    "none": lambda: none_weighting,
    "min_snr": min_snr_weighting,
    "edm": edm_weighting,
}


def get_weighting(name: str, **options: float) -> Weighting:
    """Build the loss weighting registered as ``name`` (``none``, ``min_snr`` or ``edm``) with ``options``."""
    if name not in WEIGHTINGS:
        raise ValueError(f"unknown loss weighting {name!r}; expected one of {', '.join(WEIGHTINGS)}")
    factory = WEIGHTINGS[name]
    allowed = list(inspect.signature(factory).parameters)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"loss weighting {name!r} has no option(s) {unknown}; it takes {allowed}")
    return factory(**options)


def diffusion_loss(
    denoiser: Preconditioned,
    x0: Tensor,
    noise: Tensor,
    sigma: Tensor,
    cond: Cond = None,
    weighting: Weighting = none_weighting,
) -> tuple[Tensor, Tensor]:
    """The denoising loss at given noise levels: returns (scalar mean loss, per-sample loss ``[B]``).

    Per sample, the mean over non-batch dims of ``weight(sigma) * (raw - target)^2``, where ``raw`` is the
    network's output at ``x = x0 + sigma * noise`` called exactly as sampling calls it and ``target`` is
    :func:`training_target` (Karras et al. 2022, Eq. 8, generalised to every parameterisation). The error is
    squared in float32 (float64 for float64 data) even when the network ran under bf16 autocast.
    """
    if noise.shape != x0.shape:
        raise ValueError(f"noise shape {tuple(noise.shape)} must equal x0 shape {tuple(x0.shape)}")
    if sigma.shape != (x0.shape[0],):
        raise ValueError(f"sigma must have shape [B] = [{x0.shape[0]}], got {tuple(sigma.shape)}")
    s = per_sample(sigma, x0)
    x = x0 + s * noise
    raw = denoiser.raw(x, sigma, cond)
    dtype = torch.promote_types(x0.dtype, torch.float32)
    target = training_target(denoiser.prediction, x0.to(dtype), noise.to(dtype), s.to(dtype), denoiser.sigma_data)
    squared_error = (raw.to(dtype) - target).square().flatten(1).mean(1)
    weight = weighting(sigma.to(dtype), denoiser.prediction, denoiser.sigma_data)
    per_sample_loss = weight * squared_error
    return per_sample_loss.mean(), per_sample_loss


def drop_mask(n: int, p: float, generator: torch.Generator) -> Tensor:
    """Which of ``n`` examples train unconditionally: each independently with probability ``p`` (bool ``[n]``).

    Classifier-free guidance trains one network for both by dropping the condition with probability
    ``p_uncond`` (Ho & Salimans 2022, Sec. 3.2 and Algorithm 1).
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"condition dropout probability p must lie in [0, 1], got {p}")
    return torch.rand(n, generator=generator, device=generator.device) < p


def _drop(name: str, value: Cond, mask: Tensor, null: Cond) -> Cond:
    """Replace the masked rows of one condition (tensor or nested mapping) by its null row."""
    if isinstance(value, Mapping):
        if not isinstance(null, Mapping):
            raise ValueError(f"condition {name!r} is a mapping, so its null value must be one too")
        return _drop_all(value, mask, null, prefix=f"{name}.")
    if not isinstance(value, Tensor) or not isinstance(null, Tensor):
        raise ValueError(f"condition {name!r} and its null value must both be tensors")
    if value.shape[0] != mask.shape[0]:
        raise ValueError(f"condition {name!r} has batch {value.shape[0]} but the mask has {mask.shape[0]} rows")
    row = null.to(value.device, value.dtype)
    if row.shape == value.shape[1:]:
        row = row.unsqueeze(0)
    if row.shape != (1,) + value.shape[1:]:
        raise ValueError(
            f"null value for {name!r} has shape {tuple(null.shape)}; expected one row, "
            f"{tuple(value.shape[1:])} or {(1,) + tuple(value.shape[1:])}"
        )
    # torch.where (not in-place writes) keeps gradients to the kept rows, e.g. from a trainable text encoder.
    return torch.where(mask.to(value.device).reshape((-1,) + (1,) * (value.ndim - 1)), row, value)


def _drop_all(cond: Mapping[str, Cond], mask: Tensor, null: Mapping[str, Cond], prefix: str) -> dict[str, Cond]:
    missing = sorted(set(null) - set(cond))
    if missing:
        raise ValueError(f"null condition has key(s) {[prefix + k for k in missing]} that the condition lacks")
    return {key: _drop(prefix + key, value, mask, null[key]) if key in null else value for key, value in cond.items()}


def drop_conditions(cond: Mapping[str, Cond], mask: Tensor, null: Mapping[str, Cond]) -> dict[str, Cond]:
    """Replace the rows of ``cond`` where ``mask`` is True by the null condition; other rows are untouched.

    ``null`` gives one row per key (e.g. the reserved class index ``num_classes`` for ``class_labels``
    ``[B]``, an all-zero or empty-prompt context ``[1, L, D]``, zero added embeddings), with or without the
    leading 1; nested mappings (groups of added embeddings) are handled key by key. Keys absent from
    ``null`` are left alone. Classifier-free guidance training (Ho & Salimans 2022, Algorithm 1, line 3).
    """
    if mask.dtype != torch.bool or mask.ndim != 1:
        raise ValueError(f"mask must be a 1-D bool tensor, got {mask.dtype} of shape {tuple(mask.shape)}")
    return _drop_all(cond, mask, null, prefix="")
