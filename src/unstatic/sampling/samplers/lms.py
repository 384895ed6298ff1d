"""Linear multistep (Adams-Bashforth in sigma) as in k-diffusion's ``sample_lms``."""

from __future__ import annotations

import collections
import functools

import numpy
import torch
from torch import Tensor

from unstatic.denoisers.protocol import Cond, Denoiser
from unstatic.sampling.checks import check_output, prepare
from unstatic.sampling.progress import Callback, StepInfo


@functools.lru_cache(maxsize=4096)
def lms_coefficients(nodes: tuple[float, ...], sigma_next: float) -> tuple[float, ...]:
    """``c_j = integral from nodes[0] to sigma_next of the Lagrange basis polynomial of nodes[j]``
    (Adams-Bashforth on an uneven grid; Hairer, Norsett & Wanner, Sec. III.1).

    The basis polynomials have degree <= 3 (order <= 4), so 2-point Gauss-Legendre quadrature integrates
    them exactly; higher orders use proportionally more points. Cached: repeated runs on the same
    schedule pay for the coefficients once.
    """
    a, b = nodes[0], sigma_next
    points, weights = _gauss_legendre((len(nodes) + 1) // 2)
    half, mid = (b - a) / 2, (a + b) / 2
    taus = [mid + half * p for p in points]
    coefficients = []
    for j, node_j in enumerate(nodes):
        total = 0.0
        for tau, w in zip(taus, weights):
            basis = 1.0
            for k, node_k in enumerate(nodes):
                if k != j:
                    basis *= (tau - node_k) / (node_j - node_k)
            total += w * basis
        coefficients.append(half * total)
    return tuple(coefficients)


@functools.lru_cache(maxsize=16)
def _gauss_legendre(n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    points, weights = numpy.polynomial.legendre.leggauss(max(n, 1))
    return tuple(points.tolist()), tuple(weights.tolist())


@functools.lru_cache(maxsize=256)
def lms_plan(sig: tuple[float, ...], order: int) -> tuple[tuple[float, ...], ...]:
    """Per step, the weights of the residuals ``x_j - D_j`` (newest first), i.e. the Adams-Bashforth
    coefficients divided by ``sigma_j``. Cached per schedule: the sampling loop does no arithmetic."""
    plan = []
    for i in range(len(sig) - 1):
        k = min(i + 1, order)
        coefficients = lms_coefficients(tuple(sig[i - j] for j in range(k)), sig[i + 1])
        plan.append(tuple(c / sig[i - j] for j, c in enumerate(coefficients)))
    return tuple(plan)


def sample_lms(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Cond = None,
    callback: Callback | None = None,
    noise=None,
    order: int = 4,
) -> Tensor:
    """Linear multistep on ``dx/dsigma = (x - D) / sigma`` with up to ``order`` past slopes (k-diffusion
    ``sample_lms``). Its last step integrates the slope polynomial through sigma = 0, already high order."""
    if order < 1:
        raise ValueError(f"order must be at least 1, got {order}")
    sig, rows = prepare(x, sigmas)
    steps = len(sig) - 1
    plan = lms_plan(tuple(sig), order)
    residuals: collections.deque[Tensor] = collections.deque(maxlen=order)  # x_j - D_j, newest first
    for i in range(steps):
        denoised = denoiser(x, rows[i], cond)
        weights = plan[i]
        residuals.appendleft(x - denoised)
        x = torch.lerp(denoised, x, 1 + weights[0])  # x + w_0 (x - D)
        for k in range(1, len(weights)):
            x.add_(residuals[k], alpha=weights[k])
        if callback is not None and callback(StepInfo(i, steps, sig[i], sig[i + 1], x, denoised)):
            return check_output(denoised, "lms")
    return check_output(x, "lms")
