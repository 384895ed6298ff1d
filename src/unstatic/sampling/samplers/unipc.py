"""UniPC: unified predictor-corrector multistep sampling (Zhao et al. 2023), data-prediction form.

Each step first *corrects* the previous move with the clean estimate just computed at the new point
(UniC, no extra denoiser call), then *predicts* the next point (UniP). Coefficients come from the
paper's linear system ``R rho = b`` (Zhao et al. 2023, Eq. 8 and Algorithm 1-2) with
``B(h) = h`` ("bh1") or ``B(h) = e^h - 1`` ("bh2").
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from unstatic.denoisers.protocol import Cond, Denoiser
from unstatic.sampling.checks import check_output, prepare
from unstatic.sampling.progress import Callback, StepInfo
from unstatic.sampling.steps import final_estimate, weighted_sum


def _solve(matrix: list[list[float]], rhs: list[float]) -> tuple[float, ...]:
    """Gaussian elimination with partial pivoting for the tiny (order <= 3) UniPC systems."""
    n = len(rhs)
    a = [row[:] + [rhs[i]] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(a[r][col]))
        a[col], a[pivot] = a[pivot], a[col]
        for r in range(col + 1, n):
            f = a[r][col] / a[col][col]
            for c in range(col, n + 1):
                a[r][c] -= f * a[col][c]
    out = [0.0] * n
    for r in reversed(range(n)):
        out[r] = (a[r][n] - sum(a[r][c] * out[c] for c in range(r + 1, n))) / a[r][r]
    return out


@functools.lru_cache(maxsize=4096)
def unipc_weights(lambdas: tuple[float, ...], order: int, variant: str, corrector: bool) -> tuple[float, ...]:
    """Weights of the clean estimates ``[D_0, D_-1, ..., (D_new)]`` in the bracket of
    ``x_next = e^{-h} x + (1 - e^{-h}) * [sum_k w_k D_k]``.

    ``lambdas`` are ``-log sigma`` of the current point, its predecessors (newest first) and, last, the target.
    For the corrector ``D_new`` is the estimate at the target and gets the last weight. Cached: repeated
    runs on the same schedule solve the small systems once.
    """
    lam0, lam_t = lambdas[0], lambdas[-1]
    h = lam_t - lam0
    hh = -h
    h_phi_1 = math.expm1(hh)
    b_h = hh if variant == "bh1" else math.expm1(hh)
    rks = [(lambdas[k] - lam0) / h for k in range(1, order)] + [1.0]
    h_phi_k, factorial = h_phi_1 / hh - 1, 1
    rows, b = [], []
    for i in range(1, order + 1):
        rows.append([r ** (i - 1) for r in rks])
        b.append(h_phi_k * factorial / b_h)
        factorial *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    if corrector:
        rhos = [0.5] if order == 1 else _solve(rows, b)
    elif order == 1:
        rhos = []
    else:
        rhos = [0.5] if order == 2 else _solve([row[:-1] for row in rows[:-1]], b[:-1])
    # x_next = e^{-h} x - h_phi_1 D_0 - B_h (sum_k rho_k (D_k - D_0) / r_k [+ rho_last (D_new - D_0)])
    scale = b_h / -h_phi_1  # B_h relative to the (1 - e^{-h}) = -h_phi_1 in front of the bracket
    weights = [1.0] + [0.0] * (order - 1) + ([0.0] if corrector else [])
    for k in range(1, order):
        c = scale * rhos[k - 1] / rks[k - 1]
        weights[k] -= c
        weights[0] += c
    if corrector:
        weights[-1] -= scale * rhos[-1]
        weights[0] += scale * rhos[-1]
    return tuple(weights)


@functools.lru_cache(maxsize=256)
def unipc_plan(
    sig: tuple[float, ...], order: int, variant: str, use_corrector: bool, lower_order_final: bool
) -> tuple[tuple[float, ...] | None, ...]:
    """Per step, the weights that take ``[x_i, D_i, D_{i-1}, ...]`` straight to the next predicted point
    (None for the final step to sigma = 0). Cached per schedule.

    The corrected point is never materialised: with ``rho = sigma_{i+1} / sigma_i`` the corrector gives
    ``xc_i = x_i + (1 - rho_{i-1}) (Bc_i - Bp_{i-1})`` (both moves start from ``xc_{i-1}``), and the
    predictor ``x_{i+1} = rho_i xc_i + (1 - rho_i) Bp_i``. Folding one into the other leaves a single
    combination of ``x_i`` and the clean estimates: one tensor op per estimate instead of two passes.
    """
    steps = len(sig) - 1
    lam = [-math.log(s) if s > 0 else math.inf for s in sig]
    plan, previous = [], None  # previous: the last predictor's weights over [D_{i-1}, D_{i-2}, ...]
    for i in range(steps):
        if sig[i + 1] == 0:
            plan.append(None)
            continue
        this_order = min(order, steps - i if lower_order_final else order, i + 1)
        lambdas = tuple(lam[i - k] for k in range(this_order)) + (lam[i + 1],)
        predictor = unipc_weights(lambdas, this_order, variant, corrector=False)
        rho = sig[i + 1] / sig[i]
        weights = [rho] + [0.0] * (order + 1)  # over [x_i, D_i, D_{i-1}, ..., D_{i-order}]
        for k, w in enumerate(predictor):
            weights[1 + k] += (1 - rho) * w
        if use_corrector and previous is not None:
            last_order = len(previous)
            lambdas = tuple(lam[i - 1 - k] for k in range(last_order)) + (lam[i],)
            corrector = unipc_weights(lambdas, last_order, variant, corrector=True)
            scale = rho * (1 - sig[i] / sig[i - 1])
            weights[1] += scale * corrector[-1]  # D_i, the estimate at the corrected point
            for k in range(last_order):  # D_{i-1-k}
                weights[2 + k] += scale * (corrector[k] - previous[k])
        while len(weights) > 2 and weights[-1] == 0.0:
            weights.pop()
        plan.append(tuple(weights))
        previous = predictor
    return tuple(plan)


def lerp_chain(weights: tuple[float, ...]) -> tuple[float, ...] | None:
    """Factors ``f_k`` such that ``t_0.lerp(t_1, f_1).lerp_(t_2, f_2)...`` is ``sum_k w_k t_k`` (weights sum
    to 1); None when a partial weight sum is ~0 and the chain is undefined."""
    total, factors = weights[0], []
    for w in weights[1:]:
        total += w
        if abs(total) < 1e-9:
            return None
        factors.append(w / total)
    return tuple(factors)


@functools.lru_cache(maxsize=256)
def _chains(plan: tuple) -> tuple:
    return tuple(None if w is None else lerp_chain(w) for w in plan)


def sample_unipc(
    denoiser: Denoiser,
    x: Tensor,
    sigmas: Tensor,
    *,
    cond: Cond = None,
    callback: Callback | None = None,
    noise=None,
    order: int = 2,
    variant: str = "bh2",
    use_corrector: bool = True,
    lower_order_final: bool = True,
    final_step: str = "extrapolate",
) -> Tensor:
    """UniPC-``order`` (Zhao et al. 2023, Algorithms 1-2); one denoiser call per step.

    It warms up from order 1 and, with ``lower_order_final`` (the reference's default, steadier at few
    steps), lowers the order over the last steps. With the corrector the method is of order ``order + 1``.
    """
    if order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order}")
    if variant not in ("bh1", "bh2"):
        raise ValueError(f"variant must be 'bh1' or 'bh2', got {variant!r}")
    sig, rows = prepare(x, sigmas, final_step)
    steps = len(sig) - 1
    plan = unipc_plan(tuple(sig), order, variant, use_corrector, lower_order_final)
    chains = _chains(plan)
    history: list[Tensor] = []  # clean estimates, newest first
    for i in range(steps):
        denoised = denoiser(x, rows[i], cond)
        history.insert(0, denoised)
        del history[order + 1 :]
        weights, chain = plan[i], chains[i]
        if weights is None:
            prev = (history[1], sig[i - 1]) if len(history) > 1 else None
            x = final_estimate(denoised, sig[i], prev, final_step)
        elif chain is None:
            x = weighted_sum(*zip(weights, [x] + history))
        else:
            x = torch.lerp(x, denoised, chain[0])
            for estimate, factor in zip(history[1:], chain[1:]):
                x.lerp_(estimate, factor)
        if callback is not None and callback(StepInfo(i, steps, sig[i], sig[i + 1], x, denoised)):
            return check_output(denoised, "unipc")
    return check_output(x, "unipc")
