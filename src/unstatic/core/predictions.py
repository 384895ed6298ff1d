"""Conversions between what networks predict, all expressed in the sigma frame ``x = x0 + sigma * eps``.

Kinds (``pred`` is what the network outputs; ``x`` is the sigma-frame input, ``sigma`` broadcastable):

- ``"x0"``: the clean sample itself.
- ``"eps"``: the noise, ``eps = (x - x0) / sigma`` (Ho et al. 2020).
- ``"v"``: ``v = alpha * eps - sigma_vp * x0`` with ``alpha = 1/sqrt(1+sigma^2)``,
  ``sigma_vp = sigma/sqrt(1+sigma^2)`` (Salimans & Ho 2022, "Progressive Distillation", Sec. 4).
- ``"flow"``: rectified-flow velocity ``u = eps - x0`` (Liu et al. 2022; Esser et al. 2024, Eq. 2).
- ``"score"``: ``grad log p_sigma(x) = (x0 - x) / sigma^2`` (Tweedie; Karras et al. 2022, Eq. 3).
- ``"edm"``: EDM's raw output F with ``x0 = c_skip x + c_out F`` (Karras et al. 2022, Table 1, Eq. 7).

Both directions are exact inverses (checked by round-trip tests).
"""

from __future__ import annotations

from torch import Tensor

PREDICTIONS = ("x0", "eps", "v", "flow", "score", "edm")


def edm_scalings(sigma, sigma_data: float):
    """EDM's ``c_skip, c_out, c_in`` (Karras et al. 2022, Table 1, "Ours" column)."""
    c_skip = sigma_data**2 / (sigma**2 + sigma_data**2)
    c_out = sigma * sigma_data / (sigma**2 + sigma_data**2) ** 0.5
    c_in = 1 / (sigma**2 + sigma_data**2) ** 0.5
    return c_skip, c_out, c_in


def _check(kind: str) -> None:
    if kind not in PREDICTIONS:
        raise ValueError(f"unknown prediction kind {kind!r}; expected one of {', '.join(PREDICTIONS)}")


def to_x0(kind: str, pred: Tensor, x: Tensor, sigma, sigma_data: float = 0.5) -> Tensor:
    """Turn a prediction of ``kind`` at sigma-frame point ``(x, sigma)`` into the clean estimate x0."""
    _check(kind)
    if kind == "x0":
        return pred
    if kind == "eps":
        return x - sigma * pred
    if kind == "v":
        return x / (1 + sigma**2) - sigma / (1 + sigma**2) ** 0.5 * pred
    if kind == "flow":
        return (x - sigma * pred) / (1 + sigma)
    if kind == "score":
        return x + sigma**2 * pred
    c_skip, c_out, _ = edm_scalings(sigma, sigma_data)
    return c_skip * x + c_out * pred


def from_x0(kind: str, x0: Tensor, x: Tensor, sigma, sigma_data: float = 0.5) -> Tensor:
    """The prediction of ``kind`` that corresponds to clean estimate ``x0`` at ``(x, sigma)``.

    ``eps``, ``v``, ``flow`` and ``score`` divide by sigma, so they are undefined at sigma = 0.
    """
    _check(kind)
    if kind == "x0":
        return x0
    eps = (x - x0) / sigma if kind != "edm" else None
    if kind == "eps":
        return eps
    if kind == "v":
        return (eps - sigma * x0) / (1 + sigma**2) ** 0.5
    if kind == "flow":
        return eps - x0
    if kind == "score":
        return -eps / sigma
    c_skip, c_out, _ = edm_scalings(sigma, sigma_data)
    return (x0 - c_skip * x) / c_out
