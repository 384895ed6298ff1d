"""Beta schedules and sigma spacings: shape, monotonicity, and equality with the reference definitions."""

import math

import pytest
import torch

from tests.references import load_diffusers_schedulers, load_k_diffusion_sampling
from unstatic.core import DiscreteSchedule, EDMSchedule, FlowSchedule, get_sigmas, make_betas, rescale_zero_terminal_snr
from unstatic.core.spacings import SPACINGS, resolve_spacing, schedule_label

SD = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_train_timesteps=1000)


def _schedule_for(name):
    return FlowSchedule(3.0) if name == "flow_shift" else DiscreteSchedule.from_config()


@pytest.mark.parametrize("name", sorted(SPACINGS))
@pytest.mark.parametrize("steps", [1, 2, 7, 20, 50])
def test_every_spacing_is_strictly_decreasing_and_ends_in_zero(name, steps):
    sigmas = get_sigmas(name, steps, _schedule_for(name))
    assert sigmas.shape == (steps + 1,)
    assert sigmas[-1] == 0
    assert bool((sigmas[1:] < sigmas[:-1]).all())


@pytest.mark.parametrize("schedule", ["linear", "scaled_linear", "cosine", "sigmoid"])
@pytest.mark.parametrize("zero_snr", [False, True])
def test_alphas_cumprod_match_diffusers(schedule, zero_snr):
    schedulers = load_diffusers_schedulers() or pytest.skip("diffusers not installed")
    ref = schedulers.DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2" if schedule == "cosine" else schedule,
        beta_start=0.00085, beta_end=0.012, rescale_betas_zero_snr=zero_snr,
    )
    betas = make_betas(schedule, 1000, 0.00085, 0.012)
    if zero_snr:
        betas = rescale_zero_terminal_snr(betas)
    ours = DiscreteSchedule.from_betas(betas).alphas_cumprod
    # diffusers accumulates the product in float32: relative error grows like sqrt(T) * 6e-8.
    torch.testing.assert_close(ours, ref.alphas_cumprod.double(), rtol=2e-5, atol=1e-9)


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize("steps", [10, 25, 50])
def test_timestep_spacings_match_diffusers_euler_for_sd_config(spacing, steps):
    schedulers = load_diffusers_schedulers() or pytest.skip("diffusers not installed")
    ref = schedulers.EulerDiscreteScheduler(**SD, steps_offset=1, timestep_spacing=spacing)
    ref.set_timesteps(steps)
    # diffusers' Euler interpolates sigma linearly between integer timesteps (only linspace needs it).
    schedule = DiscreteSchedule.from_config(interpolation="linear")
    options = {"steps_offset": 1} if spacing == "leading" else {}
    ours = get_sigmas(spacing, steps, schedule, **options)
    # diffusers' float32 alpha_bar carries ~1e-7 absolute error; at t = 0, 1 - alpha_bar = 0.00085 turns that
    # into ~5e-5 relative error of sigma = sqrt((1 - a) / a).
    torch.testing.assert_close(ours.float(), ref.sigmas, rtol=5e-5, atol=0)
    torch.testing.assert_close(schedule.timestep_at(ours[:-1]).float(), ref.timesteps.float(), rtol=0, atol=2e-3)


@pytest.mark.parametrize("steps", [4, 20])
def test_karras_and_exponential_match_k_diffusion(steps):
    kd = load_k_diffusion_sampling() or pytest.skip("k-diffusion not installed")
    schedule = DiscreteSchedule.from_config()
    lo, hi = schedule.sigma_min, schedule.sigma_max
    torch.testing.assert_close(get_sigmas("karras", steps, schedule), kd.get_sigmas_karras(steps, lo, hi, 7.0, "cpu").double(), rtol=1e-6, atol=0)
    torch.testing.assert_close(get_sigmas("exponential", steps, schedule), kd.get_sigmas_exponential(steps, lo, hi, "cpu").double(), rtol=1e-6, atol=0)
    torch.testing.assert_close(get_sigmas("polyexponential", steps, schedule, rho=2.0), kd.get_sigmas_polyexponential(steps, lo, hi, 2.0, "cpu").double(), rtol=1e-6, atol=0)


def test_flow_shift_matches_diffusers_flow_match_euler():
    schedulers = load_diffusers_schedulers() or pytest.skip("diffusers not installed")
    ref = schedulers.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    ref.set_timesteps(12)
    ours_t = get_sigmas("flow_shift", 12, FlowSchedule(3.0), shift=3.0)
    ours_t = ours_t / (1 + ours_t)  # back to flow time; t = 1 is held at sigma = 4096 in the sigma frame
    torch.testing.assert_close(ours_t.float(), ref.sigmas, rtol=0, atol=3e-4)


def test_sgm_uniform_and_simple_follow_their_definitions():
    schedule = DiscreteSchedule.from_config()
    sgm = get_sigmas("sgm_uniform", 4, schedule)
    t = torch.linspace(999, 0, 5, dtype=torch.float64)[:-1]
    torch.testing.assert_close(sgm[:-1], schedule.sigma_at(t))
    simple = get_sigmas("simple", 4, schedule)
    torch.testing.assert_close(simple[:-1], schedule.sigmas[[999, 749, 499, 249]])


def test_zero_terminal_snr_reaches_pure_noise_and_keeps_the_first_step():
    betas = make_betas("scaled_linear", 1000, 0.00085, 0.012)
    rescaled = DiscreteSchedule.from_betas(rescale_zero_terminal_snr(betas))
    original = DiscreteSchedule.from_betas(betas)
    assert float(rescaled.alphas_cumprod[-1]) == pytest.approx(0.0, abs=1e-12)
    assert rescaled.sigma_max == pytest.approx(math.sqrt(2**24 - 1))  # diffusers' 2**-24 stand-in
    assert rescaled.sigma_min == pytest.approx(original.sigma_min, rel=1e-9)


@pytest.mark.parametrize(
    "typed,name",
    [("Karras", "karras"), ("sgm-uniform", "sgm_uniform"), ("SGM Uniform", "sgm_uniform"), ("uniform", "normal"), ("Exponential", "exponential"), ("ddim", "ddim_uniform")],
)
def test_scheduler_names_users_type_resolve(typed, name):
    assert resolve_spacing(typed) == name


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_step_counts_are_refused(bad):
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        get_sigmas("karras", bad, EDMSchedule())


def test_unknown_scheduler_is_named():
    with pytest.raises(ValueError, match="unknown scheduler 'karas'"):
        get_sigmas("karas", 10, EDMSchedule())


def test_too_many_steps_for_a_discrete_spacing_is_refused():
    with pytest.raises(ValueError, match="steps <= the 1000 training timesteps"):
        get_sigmas("leading", 1001, DiscreteSchedule.from_config())


def test_a1111_schedule_labels_read_back():
    assert schedule_label("sgm_uniform") == "SGM Uniform" and schedule_label("normal") == "Uniform"
    assert schedule_label("karras") == "Karras" and schedule_label("ddim_uniform") == "DDIM"
    for name in SPACINGS:
        assert resolve_spacing(schedule_label(name)) == name
