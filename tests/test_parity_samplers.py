"""Parity of unstatic's samplers with k-diffusion's (``k_diffusion.sampling``, v0.1.1.post1).

Both libraries run on the same denoiser, the same start ``x``, the same float64 Karras sigmas and, for the
stochastic samplers, the very same noise tensors: unstatic gets them pre-drawn as ``noise=[draws, *x.shape]``,
k-diffusion through ``noise_sampler=lambda sigma, sigma_next: next(draws)`` over the same tensor. The
deterministic ODE samplers run with ``final_step="plain"`` (return the clean estimate at the step to
sigma = 0), the reference behaviour.

k-diffusion's Euler / Heun / DPM2 draw their churn noise with ``torch.randn_like(x)`` on *every* step
(also where churn is off) from torch's global RNG; unstatic draws one tensor per step where churn is active.
The churn tests re-create k-diffusion's draws by re-seeding the global RNG and hand unstatic only the draws
of the steps where churn is on (``s_tmin``/``s_tmax`` switch it off on some steps, so a sampler that consumed
a draw on every step would be caught).

Denoisers: an exact Gaussian mixture (float64 throughout) and a smooth nonlinear analytic function of
``(x, sigma)`` with a per-sample sigma dependence, both cheap on ``[2, 3, 8, 8]``.

Tolerances: everything runs in float64. The two libraries do the same arithmetic in a different order
(unstatic writes steps as ``lerp``s of clean estimates and ``x``, k-diffusion as ``x + d * dt`` with
``d = (x - D) / sigma``), so each step differs by a few ulps of ``|x|``; over <= 12 steps on a smooth
denoiser that stays below ~1e-13 relative. ``RTOL = 1e-10`` leaves three orders of margin for that and
still fails on any real difference of formula (a wrong coefficient, a noise draw on the wrong step or
with the wrong scale gives errors of 1e-3 and up). Observed: <= 6e-14 for every
sampler here. LMS is the one sampler whose coefficients are computed differently (unstatic integrates the
Lagrange basis polynomials with an exact rule of its own, k-diffusion with ``scipy.integrate.quad``, also
exact to rounding for these cubic integrands but with its own rounding), so it gets ``RTOL_LMS = 1e-9``.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.references import load_k_diffusion_sampling
from unstatic.core import DiscreteSchedule, get_sigmas
from unstatic.denoisers import GaussianMixture
from unstatic.sampling.registry import SAMPLERS

K = load_k_diffusion_sampling()
if K is None:
    pytest.skip("k-diffusion (with torchsde and scipy) is not installed", allow_module_level=True)

F64 = torch.float64
SHAPE = (2, 3, 8, 8)
STEPS = 12
RTOL = 1e-10
RTOL_LMS = 1e-9


pytestmark = pytest.mark.usefixtures("single_thread")


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected| (a scale-aware max error)."""
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype == F64
    return float((actual - expected).abs().max() / expected.abs().max())


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float, what: str = "") -> None:
    err = rel_err(actual, expected)
    assert err <= rtol, f"{what}: relative error {err:.3e} > {rtol:.1e}"


# --------------------------------------------------------------------------------------------- denoisers


def _gmm() -> GaussianMixture:
    g = torch.Generator().manual_seed(1234)
    means = torch.randn((3, *SHAPE[1:]), generator=g, dtype=F64) * 0.7
    return GaussianMixture(means, torch.tensor([0.3, 0.5, 0.8], dtype=F64))


def _analytic(x: torch.Tensor, sigma: torch.Tensor, cond=None) -> torch.Tensor:
    """A smooth, nonlinear clean estimate: shrinks x towards a bent copy of itself, more so at high sigma."""
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    a = 1 / (1 + s**2)
    return a * (torch.tanh(x) + 0.25 * x) + (1 - a) * 0.2 * torch.sin(0.5 * x) + 0.05 * s / (1 + s) * x**2 / (1 + x**2)


DENOISERS = {"gmm": _gmm(), "analytic": _analytic}


class Counted:
    """Records every (x, sigma) the sampler asks for, to compare call sequences."""

    def __init__(self, denoiser):
        self.denoiser = denoiser
        self.sigmas: list[float] = []

    def __call__(self, x, sigma, cond=None):
        assert sigma.shape == (x.shape[0],)
        self.sigmas.append(float(sigma[0]))
        return self.denoiser(x, sigma, cond)


@pytest.fixture(params=sorted(DENOISERS))
def denoiser(request):
    return DENOISERS[request.param]


# --------------------------------------------------------------------------------------------- setup


def karras_sigmas(steps: int = STEPS) -> torch.Tensor:
    schedule = DiscreteSchedule.from_config()
    return get_sigmas("karras", steps, schedule)


def start(sigmas: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(SHAPE, generator=g, dtype=F64) * sigmas[0]


def predrawn(draws: int, seed: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((draws, *SHAPE), generator=g, dtype=F64)


def k_noise_sampler(noise: torch.Tensor):
    it = iter(noise)
    used = []

    def sampler(sigma, sigma_next):
        used.append((float(sigma), float(sigma_next)))
        return next(it)

    sampler.used = used
    return sampler


def run_k(name: str, denoiser, x, sigmas, **kw):
    """k-diffusion's sampler; returns (output, [x before step i], [denoised at step i], denoiser sigmas)."""
    counted = Counted(denoiser)
    xs, ds = [], []

    def callback(info):
        xs.append(info["x"].clone())
        ds.append(info["denoised"].clone())

    out = getattr(K, f"sample_{name}")(counted, x.clone(), sigmas, callback=callback, disable=True, **kw)
    return out, xs, ds, counted.sigmas


def run_u(name: str, denoiser, x, sigmas, **kw):
    """unstatic's sampler; returns (output, [x after step i], [denoised at step i], denoiser sigmas)."""
    counted = Counted(denoiser)
    xs, ds, steps = [], [], []

    def callback(info):
        steps.append(info.step)
        xs.append(info.x.clone())
        ds.append(info.denoised.clone())

    out = SAMPLERS[name].fn(counted, x.clone(), sigmas, callback=callback, **kw)
    assert steps == list(range(len(sigmas) - 1))
    return out, xs, ds, counted.sigmas


def check_trajectories(k_run, u_run, rtol: float, compare_x: bool = True) -> None:
    """Final outputs, clean estimates at every step, the states between steps and the denoiser's sigmas."""
    k_out, k_xs, k_ds, k_sig = k_run
    u_out, u_xs, u_ds, u_sig = u_run
    assert_close(u_out, k_out, rtol, "final sample")
    assert len(u_ds) == len(k_ds)
    for i, (u_d, k_d) in enumerate(zip(u_ds, k_ds)):
        assert_close(u_d, k_d, rtol, f"denoised at step {i}")
    if compare_x:  # k-diffusion reports x *before* step i, unstatic x *after* it
        for i in range(len(k_xs) - 1):
            assert_close(u_xs[i], k_xs[i + 1], rtol, f"x after step {i}")
        assert_close(u_xs[-1], k_out, rtol, "x after the last step")
    assert len(u_sig) == len(k_sig), "different number of denoiser calls"
    assert u_sig == pytest.approx(k_sig, rel=1e-14), "denoiser called at different noise levels"


# --------------------------------------------------------------------------------------------- schedules


def test_karras_sigmas_match_k_diffusion():
    """unstatic's float64 Karras sigmas equal k-diffusion's (which builds them in float32)."""
    schedule = DiscreteSchedule.from_config()
    ours = get_sigmas("karras", STEPS, schedule)
    theirs = K.get_sigmas_karras(STEPS, schedule.sigma_min, schedule.sigma_max)
    assert ours.dtype == F64 and ours[-1] == 0
    torch.testing.assert_close(ours.float(), theirs, rtol=2e-6, atol=0)  # float32 pow/linspace rounding


def test_exponential_sigmas_match_k_diffusion():
    schedule = DiscreteSchedule.from_config()
    ours = get_sigmas("exponential", STEPS, schedule)
    theirs = K.get_sigmas_exponential(STEPS, schedule.sigma_min, schedule.sigma_max)
    torch.testing.assert_close(ours.float(), theirs, rtol=2e-6, atol=0)


# --------------------------------------------------------------------------------------------- ODE samplers


@pytest.mark.parametrize("name", ["euler", "heun", "dpm_2", "dpmpp_2m"])
def test_deterministic(name, denoiser):
    sigmas = karras_sigmas()
    x = start(sigmas)
    k_run = run_k(name, denoiser, x, sigmas)
    u_run = run_u(name, denoiser, x, sigmas, final_step="plain")
    check_trajectories(k_run, u_run, RTOL)


@pytest.mark.parametrize("order", [1, 2, 4])
def test_lms(order, denoiser):
    sigmas = karras_sigmas()
    x = start(sigmas)
    k_run = run_k("lms", denoiser, x, sigmas, order=order)
    u_run = run_u("lms", denoiser, x, sigmas, order=order)
    check_trajectories(k_run, u_run, RTOL_LMS)


# --------------------------------------------------------------------------------------------- churn


def _churn_noise(steps: int, seed: int) -> list[torch.Tensor]:
    """The draws k-diffusion makes with ``torch.randn_like(x)`` (x float64) on each step, in order."""
    torch.manual_seed(seed)
    like = torch.empty(SHAPE, dtype=F64)
    return [torch.randn_like(like) for _ in range(steps)]


@pytest.mark.parametrize("name", ["euler", "heun", "dpm_2"])
@pytest.mark.parametrize("s_tmin, s_tmax", [(0.0, math.inf), (0.2, 5.0)])
def test_churn(name, s_tmin, s_tmax, denoiser):
    sigmas = karras_sigmas()
    steps = len(sigmas) - 1
    x = start(sigmas)
    opts = dict(s_churn=2.0, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=1.003)
    draws = _churn_noise(steps, seed=99)
    active = [i for i in range(steps) if s_tmin <= float(sigmas[i]) <= s_tmax]
    assert 0 < len(active) <= steps

    torch.manual_seed(99)
    k_run = run_k(name, denoiser, x, sigmas, **opts)
    noise = torch.stack([draws[i] for i in active])
    u_run = run_u(name, denoiser, x, sigmas, noise=noise, final_step="plain", **opts)
    # x between steps differs by design (k-diffusion reports x after churn); the clean estimates are
    # evaluated at those churned states, so comparing them compares the whole trajectory.
    check_trajectories(k_run, u_run, RTOL, compare_x=False)


def test_churn_draw_count_is_checked():
    """Sanity check of the churn test itself: feeding draws for every step (k-diffusion's count) to a churn
    window that skips steps changes the result, so the test above would notice a wrong draw order."""
    sigmas = karras_sigmas()
    steps = len(sigmas) - 1
    x = start(sigmas)
    opts = dict(s_churn=2.0, s_tmin=0.2, s_tmax=5.0)
    draws = _churn_noise(steps, seed=99)
    torch.manual_seed(99)
    k_out = K.sample_euler(_analytic, x.clone(), sigmas, disable=True, **opts)
    wrong = SAMPLERS["euler"].fn(_analytic, x.clone(), sigmas, noise=torch.stack(draws), final_step="plain", **opts)
    assert rel_err(wrong, k_out) > 1e-4


# --------------------------------------------------------------------------------------------- ancestral / SDE


def _stochastic(name, denoiser, kw_k, kw_u, rtol=RTOL):
    sigmas = karras_sigmas()
    steps = len(sigmas) - 1
    x = start(sigmas)
    noise = predrawn(steps - 1)  # one draw per step with sigma_next > 0
    sampler = k_noise_sampler(noise)
    k_run = run_k(name, denoiser, x, sigmas, noise_sampler=sampler, **kw_k)
    assert len(sampler.used) == steps - 1
    u_run = run_u(name, denoiser, x, sigmas, noise=noise, **kw_u)
    check_trajectories(k_run, u_run, rtol)
    # the noise matters: a different draw gives a clearly different sample
    other = SAMPLERS[name].fn(denoiser, x.clone(), sigmas, noise=predrawn(steps - 1, seed=8), **kw_u)
    assert rel_err(other, k_run[0]) > 1e-3


@pytest.mark.parametrize("name", ["euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral"])
@pytest.mark.parametrize("eta, s_noise", [(1.0, 1.0), (0.6, 0.9)])
def test_ancestral(name, eta, s_noise, denoiser):
    kw = dict(eta=eta, s_noise=s_noise)
    _stochastic(name, denoiser, kw, kw)


@pytest.mark.parametrize("solver_type", ["midpoint", "heun"])
@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_dpmpp_2m_sde(solver_type, eta, denoiser):
    kw = dict(eta=eta, s_noise=1.0, solver_type=solver_type)
    _stochastic("dpmpp_2m_sde", denoiser, kw, kw)


@pytest.mark.parametrize("eta, s_noise", [(1.0, 1.0), (0.5, 0.8)])
def test_dpmpp_3m_sde(eta, s_noise, denoiser):
    kw = dict(eta=eta, s_noise=s_noise)
    _stochastic("dpmpp_3m_sde", denoiser, kw, kw)


@pytest.mark.parametrize("name", ["dpmpp_2m_sde", "dpmpp_3m_sde"])
def test_sde_eta_zero_is_deterministic(name, denoiser):
    """With eta = 0 neither library draws noise; the samplers are then ODE solvers and must still agree."""
    sigmas = karras_sigmas()
    x = start(sigmas)

    def no_noise(sigma, sigma_next):
        raise AssertionError("k-diffusion drew noise with eta = 0")

    k_run = run_k(name, denoiser, x, sigmas, eta=0.0, noise_sampler=no_noise)
    u_run = run_u(name, denoiser, x, sigmas, eta=0.0, noise=torch.empty((0, *SHAPE), dtype=F64))
    check_trajectories(k_run, u_run, RTOL)
