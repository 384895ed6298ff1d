"""Linear multistep (Adams-Bashforth in sigma) as in k-diffusion's ``sample_lms``."""

from __future__ import annotations

from torch import Tensor

from unstatic.denoisers.protocol import Cond, Denoiser
from unstatic.sampling.checks import check_output, prepare
from unstatic.sampling.progress import Callback, StepInfo


def lms_coefficients(sig: list[float], i: int, order: int) -> list[float]:
    """``c_j = integral over [sig[i], sig[i+1]] of the Lagrange basis polynomial of node sig[i - j]``
    through nodes ``sig[i], ..., sig[i - order + 1]`` (Adams-Bashforth; Hairer et al., Sec. III.1).

    Integrated exactly (polynomial antiderivative in float64) instead of by numerical quadrature.
    """
    nodes = [sig[i - k] for k in range(order)]
    coefficients = []
    for j in range(order):
        poly = [1.0]  # ascending powers of tau
        for k in range(order):
            if k == j:
                continue
            scale = 1.0 / (nodes[j] - nodes[k])
            grown = [0.0] * (len(poly) + 1)
            for p, c in enumerate(poly):  # poly * (tau - nodes[k]) * scale
                grown[p + 1] += c * scale
                grown[p] -= c * nodes[k] * scale
            poly = grown

        def antiderivative(t: float) -> float:
            return sum(c * t ** (p + 1) / (p + 1) for p, c in enumerate(poly))

        coefficients.append(antiderivative(sig[i + 1]) - antiderivative(sig[i]))
    return coefficients


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
    residuals: list[Tensor] = []  # x_j - D_j, newest first; the 1/sigma_j of the slope is folded into c_j
    for i in range(steps):
        denoised = denoiser(x, rows[i], cond)
        residuals.insert(0, x - denoised)
        del residuals[order:]
        coefficients = lms_coefficients(sig, i, len(residuals))
        x = x.add(residuals[0], alpha=coefficients[0] / sig[i])
        for j in range(1, len(residuals)):
            x.add_(residuals[j], alpha=coefficients[j] / sig[i - j])
        if callback is not None and callback(StepInfo(i, steps, sig[i], sig[i + 1], x, denoised)):
            return check_output(denoised, "lms")
    return check_output(x, "lms")
