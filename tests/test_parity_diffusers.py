"""Parity of unstatic's samplers with diffusers' schedulers (diffusers 0.42).

Set-up. The data are an exact Gaussian mixture (float64). diffusers sees it as an eps-prediction
"UNet", ``NetworkFromDenoiser(gmm, schedule)``, and runs its usual loop
(``scale_model_input`` -> network(x_in, scheduler timestep) -> ``step``). unstatic runs the matching sampler
on ``Preconditioned(NetworkFromDenoiser(gmm, schedule), schedule)``, i.e. on the *same* raw network, with
sigmas taken from the scheduler itself (``scheduler.sigmas``, or ``alphas_cumprod[timesteps]`` for the
DDIM/DDPM/LCM family). ``schedule`` is built from the scheduler's own ``alphas_cumprod`` with the
interpolation the scheduler uses for fractional timesteps ("linear" for the Euler family's
``np.interp``, "log" where diffusers calls ``_sigma_to_t``), so that both libraries feed the network
the same timestep for the same noise level (up to diffusers rounding fractional timesteps to float32).
Schedulers whose network input is an integer timestep (DDIM, DDPM, DPM-Solver, UniPC, LCM;
DPM-Solver++ Karras rounds ``_sigma_to_t``) are compared with ``quantize_timesteps=True``.

Frames. The Euler family (Euler, Euler a, Heun, DPM2, LMS) keeps its sample in the sigma frame, so the
samples are compared directly. DDIM, DDPM, DPM-Solver, UniPC and LCM keep it in the VP frame:
unstatic starts from ``x_vp * sqrt(1 + sigma_0^2)`` and its result is mapped back with
``x / sqrt(1 + sigma_last^2)`` (sigma_last = 0 except for DDIM with ``set_alpha_to_one=False``, whose last
noise level is ``alphas_cumprod[0]``'s sigma).

Noise. Where diffusers takes ``variance_noise`` (DDIM, DPM-Solver SDE) the test passes one tensor per step;
where it only takes a ``generator`` (Euler a, DDPM, LCM) the test re-creates its draws with an identically
seeded generator (``randn_tensor`` is ``torch.randn(shape, generator=..., dtype=...)`` on CPU). unstatic gets
the draws of the steps that add noise as ``noise=[draws, *x.shape]``.

Tolerances. diffusers keeps its schedule in float32 (betas, ``alphas_cumprod``, ``sigmas``, the
coefficients computed from them), upcasts the sample to float32 inside ``step`` for Euler a and
DPM-Solver, and casts ``variance_noise`` to float32 in DPM-Solver. unstatic uses the same float32 sigma
values (promoted to float64) but does all arithmetic in float64. Each step therefore differs by float32
rounding, ~6e-8 relative, and <= 15 steps accumulate a few 1e-7. Observed (max |diff| / max |sample|):
1e-8 (DDIM eta = 0), 2e-8..1.5e-7 (Euler, Euler a, Heun, DPM2, DPM++ 2M / 2M SDE, UniPC, DDIM eta > 0, LCM),
2.5e-7 (LMS), 8e-7 (DDPM, whose posterior coefficients ``1 - alpha_t / alpha_prev`` cancel in float32).
``RTOL = 1e-5`` leaves >= 12x margin over the worst of these, while a formula difference shows up at
1e-4 and more (measured while writing these tests: UniPC order 3 run as order 2: 2e-4, bh1 as bh2:
2e-3, DPM++ 2M as Euler: 1e-2, ``final_step="extrapolate"``: 5e-2, DDPM as DDIM eta = 0.9: 7e-2).

Where diffusers genuinely differs (and what is therefore not compared):

- ``EulerDiscreteScheduler`` with ``s_churn > 0`` raises the sample to ``sigma_hat`` but still calls the
  network with the timestep of ``sigma`` and ``scale_model_input``'s ``1/sqrt(sigma^2 + 1)``, then converts
  its eps with ``sigma_hat``: the network is evaluated at the wrong noise level. k-diffusion and unstatic
  evaluate at ``sigma_hat`` (see ``test_parity_samplers.py``). Only churn-free Euler is compared here.
- ``HeunDiscreteScheduler`` and ``KDPM2DiscreteScheduler`` have no churn (gamma is fixed to 0).
- ``KDPM2DiscreteScheduler`` takes its main timesteps by *linear* interpolation and its midpoint
  timesteps by ``_sigma_to_t`` (log interpolation); one network can only match both at integer main
  timesteps, so it is compared with ``timestep_spacing="leading"``. With ``use_karras_sigmas`` it rounds the
  main timesteps but not the midpoints, which no single ``quantize_timesteps`` setting reproduces.
- ``LCMScheduler`` applies the consistency-model boundary condition
  ``denoised = c_skip(t) x_vp + c_out(t) x0_hat`` in the scheduler; unstatic's ``lcm`` sampler expects it
  inside the denoiser. The test wraps unstatic's denoiser in the same boundary condition (written out in
  ``_LCMBoundary``), which is where it belongs for a real LCM.
- ``UniPCMultistepScheduler(solver_type="bh1", final_sigmas_type="zero")`` returns NaN: on the last step
  (to sigma = 0) ``h = inf``, so ``B_h = -h = -inf``, and the order-1 predictor computes
  ``x_t_ - alpha_t * B_h * pred_res`` with ``pred_res = 0`` -> ``inf * 0``. bh1 is therefore compared with
  ``final_sigmas_type="sigma_min"`` (bh2, whose ``B_h = expm1(-h) = -1`` stays finite, with both).
- ``DDPMScheduler`` draws noise on the last step too (``t = steps_offset > 0``) and scales it by
  ``sqrt(max(variance, 1e-20)) = 1e-10``; unstatic adds none there. That is a 1e-10 absolute difference,
  far below the tolerance.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.references import load_diffusers_schedulers
from unstatic.core import DiscreteSchedule
from unstatic.denoisers import GaussianMixture, NetworkFromDenoiser, Preconditioned
from unstatic.sampling.registry import SAMPLERS

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy 2 notices inside diffusers

S = load_diffusers_schedulers()
if S is None:
    pytest.skip("diffusers is not installed", allow_module_level=True)

F64 = torch.float64
SHAPE = (2, 3, 8, 8)
RTOL = 1e-5


pytestmark = pytest.mark.usefixtures("single_thread")

# Stable Diffusion 1.x's scheduler config.
SD = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)


def _gmm() -> GaussianMixture:
    g = torch.Generator().manual_seed(1234)
    means = torch.randn((3, *SHAPE[1:]), generator=g, dtype=F64) * 0.7
    return GaussianMixture(means, torch.tensor([0.3, 0.5, 0.8], dtype=F64))


GMM = _gmm()


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    assert actual.shape == expected.shape
    assert torch.isfinite(expected).all(), "the reference produced non-finite values"
    return float((actual.double() - expected.double()).abs().max() / expected.double().abs().max())


def assert_close(actual, expected, rtol, what=""):
    err = rel_err(actual, expected)
    assert err <= rtol, f"{what}: relative error {err:.3e} > {rtol:.1e}"


def gaussian(seed: int, n: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = SHAPE if n is None else (n, *SHAPE)
    return torch.randn(shape, generator=g, dtype=F64)


def generator_draws(seed: int, n: int) -> torch.Tensor:
    """The first ``n`` draws diffusers' ``randn_tensor(shape, generator=g, dtype=float64)`` makes from ``g``."""
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randn(SHAPE, generator=g, dtype=F64) for _ in range(n)])


def network_for(scheduler, interpolation: str):
    """The schedule matching the scheduler's own float32 ``alphas_cumprod``, and the eps network on it."""
    schedule = DiscreteSchedule(scheduler.alphas_cumprod.double(), interpolation=interpolation)
    return schedule, NetworkFromDenoiser(GMM, schedule)


def run_diffusers(scheduler, network, x, step_kwargs=None):
    """The standard diffusers denoising loop; ``step_kwargs(i)`` gives extra arguments for step i."""
    for i, t in enumerate(scheduler.timesteps):
        x_in = scheduler.scale_model_input(x, t)
        eps = network(x_in, t)
        x = scheduler.step(eps, t, x, **({} if step_kwargs is None else step_kwargs(i))).prev_sample
    return x


def vp_sigmas(scheduler, final_alpha) -> torch.Tensor:
    """Sigma-frame noise levels of ``alphas_cumprod[timesteps]`` plus the final ``alpha_prev``."""
    a = scheduler.alphas_cumprod.double()[scheduler.timesteps.long()]
    sig = ((1 - a) / a).sqrt()
    final = float(final_alpha)
    return torch.cat([sig, torch.tensor([math.sqrt((1 - final) / final)], dtype=F64)])


# ------------------------------------------------------------------------------------------- Euler family


def _euler_family(scheduler, interpolation, name, steps, noise=None, generator_seed=None, **options):
    schedule, network = network_for(scheduler, interpolation)
    scheduler.set_timesteps(steps)
    sigmas = scheduler.sigmas.double()
    if name in ("heun", "dpm_2"):  # the interleaved second-order entries collapse to one per step
        sigmas = torch.cat([sigmas[:1], sigmas[1:-1:2], sigmas[-1:]]) if name == "heun" else sigmas[::2]
    assert len(sigmas) == steps + 1 and sigmas[-1] == 0
    x = gaussian(0) * sigmas[0]
    kwargs = None
    if generator_seed is not None:
        g = torch.Generator().manual_seed(generator_seed)
        kwargs = lambda i: {"generator": g}  # noqa: E731
    ref = run_diffusers(scheduler, network, x.clone(), kwargs)
    ours = SAMPLERS[name].fn(Preconditioned(network, schedule), x.clone(), sigmas, noise=noise, **options)
    return ours, ref


@pytest.mark.parametrize(
    "spacing, karras, interpolation",
    [("linspace", False, "linear"), ("leading", False, "linear"), ("linspace", True, "log")],
)
def test_euler(spacing, karras, interpolation):
    scheduler = S.EulerDiscreteScheduler(
        **SD, timestep_spacing=spacing, use_karras_sigmas=karras, final_sigmas_type="zero"
    )
    ours, ref = _euler_family(scheduler, interpolation, "euler", 15, final_step="plain")
    assert_close(ours, ref, RTOL, "euler")


def test_euler_ancestral():
    steps = 15
    scheduler = S.EulerAncestralDiscreteScheduler(**SD, timestep_spacing="linspace")
    noise = generator_draws(5, steps - 1)  # diffusers draws on every step; the last is scaled by sigma_up = 0
    ours, ref = _euler_family(scheduler, "linear", "euler_ancestral", steps, noise=noise, generator_seed=5)
    assert_close(ours, ref, RTOL, "euler_ancestral")
    other, _ = _euler_family(scheduler, "linear", "euler_ancestral", steps, noise=generator_draws(6, steps - 1))
    assert rel_err(other, ref) > 1e-3  # the comparison is sensitive to the noise


@pytest.mark.parametrize("spacing, karras, interpolation", [("linspace", False, "linear"), ("leading", True, "log")])
def test_heun(spacing, karras, interpolation):
    scheduler = S.HeunDiscreteScheduler(**SD, timestep_spacing=spacing, use_karras_sigmas=karras)
    ours, ref = _euler_family(scheduler, interpolation, "heun", 10, final_step="plain")
    assert_close(ours, ref, RTOL, "heun")


def test_dpm_2():
    scheduler = S.KDPM2DiscreteScheduler(**SD, timestep_spacing="leading")
    ours, ref = _euler_family(scheduler, "log", "dpm_2", 10, final_step="plain")
    assert_close(ours, ref, RTOL, "dpm_2")


@pytest.mark.parametrize("spacing", ["linspace", "leading"])
def test_lms(spacing):
    scheduler = S.LMSDiscreteScheduler(**SD, timestep_spacing=spacing)
    ours, ref = _euler_family(scheduler, "linear", "lms", 15, order=4)
    assert_close(ours, ref, RTOL, "lms")


# ------------------------------------------------------------------------------------------- VP-frame solvers


def _vp_run(scheduler, name, sigmas, step_kwargs=None, noise=None, denoiser_wrap=None, **options):
    """Run diffusers in the VP frame and unstatic in the sigma frame from the same start; both in the VP frame."""
    schedule, network = network_for(scheduler, "log")
    x_vp = gaussian(0)
    ref = run_diffusers(scheduler, network, x_vp.clone(), step_kwargs)
    denoiser = Preconditioned(network, schedule, quantize_timesteps=True)
    if denoiser_wrap is not None:
        denoiser = denoiser_wrap(denoiser)
    x = x_vp * math.sqrt(1 + float(sigmas[0]) ** 2)
    ours = SAMPLERS[name].fn(denoiser, x, sigmas, noise=noise, **options)
    return ours / math.sqrt(1 + float(sigmas[-1]) ** 2), ref


@pytest.mark.parametrize("spacing", ["leading", "linspace"])
@pytest.mark.parametrize("karras", [False, True])
def test_dpmpp_2m(spacing, karras):
    scheduler = S.DPMSolverMultistepScheduler(
        **SD, timestep_spacing=spacing, algorithm_type="dpmsolver++", solver_order=2,
        use_karras_sigmas=karras, final_sigmas_type="zero",
    )  # fmt: skip
    scheduler.set_timesteps(12)
    sigmas = scheduler.sigmas.double()
    ours, ref = _vp_run(scheduler, "dpmpp_2m", sigmas, final_step="plain")
    assert_close(ours, ref, RTOL, "dpmpp_2m")


@pytest.mark.parametrize("solver_type", ["midpoint", "heun"])
def test_dpmpp_2m_sde(solver_type):
    steps = 12
    scheduler = S.DPMSolverMultistepScheduler(
        **SD, algorithm_type="sde-dpmsolver++", solver_order=2, solver_type=solver_type, final_sigmas_type="zero"
    )
    scheduler.set_timesteps(steps)
    sigmas = scheduler.sigmas.double()
    # diffusers casts variance_noise to float32; hand unstatic the same rounded values.
    noise = gaussian(11, steps).float().double()
    ours, ref = _vp_run(
        scheduler, "dpmpp_2m_sde", sigmas, step_kwargs=lambda i: {"variance_noise": noise[i]},
        noise=noise[: steps - 1], eta=1.0, solver_type=solver_type,
    )  # fmt: skip
    assert_close(ours, ref, RTOL, "dpmpp_2m_sde")


@pytest.mark.parametrize(
    "variant, final", [("bh1", "sigma_min"), ("bh2", "zero"), ("bh2", "sigma_min")]
)
@pytest.mark.parametrize("order", [2, 3])
def test_unipc(variant, final, order):
    scheduler = S.UniPCMultistepScheduler(
        **SD, timestep_spacing="leading", solver_order=order, solver_type=variant, final_sigmas_type=final,
        lower_order_final=True,
    )  # fmt: skip
    scheduler.set_timesteps(10)
    sigmas = scheduler.sigmas.double()
    ours, ref = _vp_run(scheduler, "unipc", sigmas, order=order, variant=variant, final_step="plain")
    assert_close(ours, ref, RTOL, f"unipc {variant} order {order}")


@pytest.mark.parametrize("set_alpha_to_one", [False, True])
@pytest.mark.parametrize("eta", [0.0, 0.7, 1.0])
def test_ddim(set_alpha_to_one, eta):
    steps = 15
    scheduler = S.DDIMScheduler(**SD, clip_sample=False, set_alpha_to_one=set_alpha_to_one, timestep_spacing="leading")
    scheduler.set_timesteps(steps)
    sigmas = vp_sigmas(scheduler, scheduler.final_alpha_cumprod)
    assert (sigmas[-1] == 0) == set_alpha_to_one
    noise = gaussian(21, steps)
    draws = steps - 1 if set_alpha_to_one else steps  # no noise is added on a step to sigma = 0
    options = {"final_step": "plain"} if eta == 0 else {"noise": noise[:draws]}
    ours, ref = _vp_run(
        scheduler, "ddim", sigmas, step_kwargs=lambda i: {"eta": eta, "variance_noise": noise[i]}, eta=eta, **options
    )
    assert_close(ours, ref, RTOL, f"ddim eta={eta}")


def test_ddpm():
    steps = 15
    scheduler = S.DDPMScheduler(**SD, clip_sample=False, timestep_spacing="leading", variance_type="fixed_small")
    scheduler.set_timesteps(steps)
    sigmas = vp_sigmas(scheduler, 1.0)
    g = torch.Generator().manual_seed(31)
    ours, ref = _vp_run(
        scheduler, "ddpm", sigmas, step_kwargs=lambda i: {"generator": g}, noise=generator_draws(31, steps - 1)
    )
    assert_close(ours, ref, RTOL, "ddpm")


class _LCMBoundary:
    """The consistency boundary condition LCMScheduler applies (Song et al. 2023, Eq. 8 with diffusers'
    ``timestep_scaling``): ``c_skip(t) x_vp + c_out(t) x0_hat``, in the sigma frame."""

    def __init__(self, denoiser, timestep_scaling=10.0, sigma_data=0.5):
        self.denoiser, self.scaling, self.sigma_data = denoiser, timestep_scaling, sigma_data

    def __call__(self, x, sigma, cond=None):
        t = self.denoiser.timestep(sigma).double().round() * self.scaling
        c_skip = (self.sigma_data**2 / (t**2 + self.sigma_data**2)).reshape(-1, 1, 1, 1)
        c_out = (t / (t**2 + self.sigma_data**2).sqrt()).reshape(-1, 1, 1, 1)
        x_vp = x / (1 + sigma.reshape(-1, 1, 1, 1) ** 2).sqrt()
        return c_out * self.denoiser(x, sigma, cond) + c_skip * x_vp


@pytest.mark.parametrize("timesteps", [[999, 759, 499, 259], [999, 799, 599, 399, 199, 19]])
def test_lcm(timesteps):
    scheduler = S.LCMScheduler(**SD)
    scheduler.set_timesteps(timesteps=timesteps)
    steps = len(timesteps)
    sigmas = vp_sigmas(scheduler, 1.0)  # the last step returns the clean estimate: sigma 0
    g = torch.Generator().manual_seed(41)
    ours, ref = _vp_run(
        scheduler, "lcm", sigmas, step_kwargs=lambda i: {"generator": g}, noise=generator_draws(41, steps - 1),
        denoiser_wrap=_LCMBoundary,
    )  # fmt: skip
    assert_close(ours, ref, RTOL, "lcm")


def test_schedule_matches_diffusers_alphas():
    """``DiscreteSchedule.from_config()`` (float64) agrees with diffusers' float32 SD-1.x ``alphas_cumprod``."""
    scheduler = S.DDIMScheduler(**SD)
    ours = DiscreteSchedule.from_config().alphas_cumprod
    torch.testing.assert_close(ours.float(), scheduler.alphas_cumprod, rtol=2e-6, atol=0)
