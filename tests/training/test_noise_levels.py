"""Training noise: noise-level samplers (uniform discrete, log-normal, logit-normal) and offset noise."""

import math

import pytest
import torch

from unstatic.core import DiscreteSchedule, EDMSchedule, FlowSchedule, VPSDESchedule
from unstatic.core.continuous import shift_flow_t
from unstatic.core.frames import INFINITE_NOISE_SIGMA, flow_t_from_sigma
from unstatic.denoisers import Preconditioned
from unstatic.training.noise_levels import (
    NOISE_LEVELS,
    get_noise_levels,
    log_normal,
    logit_normal,
    sample_noise,
    uniform_continuous,
    uniform_discrete,
)

N = 20_000
SD = DiscreteSchedule.from_config()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_log_normal_log_sigma_has_the_requested_mean_and_std():
    sigma = log_normal(p_mean=-1.2, p_std=1.2)(N, gen())
    log_sigma = sigma.double().log()
    # standard errors: 1.2 / sqrt(N) = 0.0085 for the mean, about 0.006 for the std
    assert abs(log_sigma.mean().item() + 1.2) < 0.04
    assert abs(log_sigma.std().item() - 1.2) < 0.03


def test_log_normal_follows_its_parameters():
    sigma = log_normal(p_mean=0.5, p_std=0.3)(N, gen())
    assert abs(sigma.double().log().mean().item() - 0.5) < 0.01
    assert abs(sigma.double().log().std().item() - 0.3) < 0.01


@pytest.mark.parametrize("mean", [0.0, 0.5, -1.0])
def test_logit_normal_median_flow_time_is_sigmoid_of_the_mean(mean):
    t = flow_t_from_sigma(logit_normal(mean=mean, std=1.0)(N, gen()).double())
    expected = 1 / (1 + math.exp(-mean))
    assert abs(t.median().item() - expected) < 0.01
    # the logit of t is normal with the requested spread
    assert abs(torch.logit(t).std().item() - 1.0) < 0.03


def test_logit_normal_shift_moves_time_towards_noise_by_sd3s_formula():
    plain = flow_t_from_sigma(logit_normal(mean=0.0)(N, gen()).double())
    shifted = flow_t_from_sigma(logit_normal(mean=0.0, shift=3.0)(N, gen()).double())
    assert shifted.median() > plain.median() + 0.1
    # same draws, so each shifted time is SD3's shift applied to the unshifted one
    torch.testing.assert_close(shifted, shift_flow_t(plain, 3.0), rtol=1e-6, atol=1e-6)


def test_logit_normal_keeps_sigma_finite_and_positive_even_in_the_tails():
    sigma = logit_normal(mean=0.0, std=20.0)(N, gen()).double()
    assert torch.isfinite(sigma).all() and (sigma > 0).all()
    assert sigma.max() == INFINITE_NOISE_SIGMA and sigma.min() == pytest.approx(1 / INFINITE_NOISE_SIGMA, rel=1e-6)
    t = flow_t_from_sigma(sigma)
    assert (t < 1).all() and (t > 0).all()


@pytest.mark.parametrize("zero_snr", [False, True])
def test_uniform_discrete_covers_every_timestep_and_the_timestep_maps_back(zero_snr):
    schedule = DiscreteSchedule.from_config(rescale_betas_zero_snr=zero_snr)
    sigma = uniform_discrete(schedule)(N, gen())
    assert sigma.dtype == torch.float32
    t = Preconditioned(lambda *a: a[0], schedule).timestep(sigma)
    assert set(t.round().long().tolist()) == set(range(1000)), "20000 draws miss one of 1000 steps w.p. ~2e-6"
    assert (t - t.round()).abs().max() < 1e-3, "float32 sigma lands next to its integer timestep"
    quantized = Preconditioned(lambda *a: a[0], schedule, quantize_timesteps=True).timestep(sigma)
    assert torch.equal(quantized, t.round())
    # uniform: each timestep about N / T = 20 times
    counts = torch.bincount(t.round().long(), minlength=1000).float()
    assert abs(counts[:500].sum().item() / N - 0.5) < 0.02


def test_uniform_continuous_is_uniform_in_the_schedules_own_time():
    schedule = VPSDESchedule()
    sigma = uniform_continuous(schedule)(N, gen())
    t = schedule.timestep_at(sigma.double()) / (schedule.M - 1)
    assert t.min() >= schedule.eps_t - 1e-6 and t.max() <= 1 + 1e-6
    assert abs(t.mean().item() - 0.5) < 0.01
    flow_t = flow_t_from_sigma(uniform_continuous(FlowSchedule())(N, gen()).double())
    assert abs(flow_t.mean().item() - 0.5) < 0.01 and (flow_t < 1).all()


SAMPLERS = {
    "uniform_discrete": uniform_discrete(SD),
    "uniform_discrete_zero_snr": uniform_discrete(DiscreteSchedule.from_config(rescale_betas_zero_snr=True)),
    "log_normal": log_normal(),
    "logit_normal": logit_normal(shift=3.0),
    "uniform_continuous_vp": uniform_continuous(VPSDESchedule()),
    "uniform_continuous_flow": uniform_continuous(FlowSchedule(shift=3.0)),
    "uniform_continuous_edm": uniform_continuous(EDMSchedule()),
}


@pytest.mark.parametrize("name", SAMPLERS)
def test_samplers_give_finite_positive_float32_and_repeat_for_a_seed(name):
    draw = SAMPLERS[name]
    sigma = draw(1000, gen(3))
    assert sigma.shape == (1000,) and sigma.dtype == torch.float32 and sigma.device.type == "cpu"
    assert torch.isfinite(sigma).all() and (sigma > 0).all()
    assert torch.equal(sigma, draw(1000, gen(3)))
    assert not torch.equal(sigma, draw(1000, gen(4)))


def test_registry_builds_every_sampler_and_names_bad_input():
    assert set(NOISE_LEVELS) >= {"uniform_discrete", "log_normal", "logit_normal"}
    built = get_noise_levels("log_normal", schedule=SD, p_mean=0.0, p_std=0.5)
    torch.testing.assert_close(built(100, gen()), log_normal(0.0, 0.5)(100, gen()))
    torch.testing.assert_close(get_noise_levels("uniform_discrete", SD)(100, gen()), uniform_discrete(SD)(100, gen()))
    with pytest.raises(ValueError, match="unknown noise-level sampler 'lognormal'"):
        get_noise_levels("lognormal")
    with pytest.raises(ValueError, match=r"no option\(s\) \['mean'\]"):
        get_noise_levels("log_normal", mean=0.0)
    for bad in (None, EDMSchedule(), FlowSchedule()):
        with pytest.raises(ValueError, match="uniform_discrete needs a DiscreteSchedule"):
            get_noise_levels("uniform_discrete", bad)
    with pytest.raises(ValueError, match="p_std must be positive"):
        log_normal(p_std=0.0)
    with pytest.raises(ValueError, match="shift must be positive"):
        logit_normal(shift=-1.0)
    with pytest.raises(ValueError, match="non-negative"):
        log_normal()(-1, gen())


def test_noise_without_offset_is_plain_randn_and_fixes_the_draw_order():
    g = gen(5)
    noise = sample_noise((4, 3, 8, 8), g, offset_noise=0.0)
    reference = gen(5)
    torch.testing.assert_close(noise, torch.randn(4, 3, 8, 8, generator=reference), rtol=0, atol=0)
    # the offset is drawn next even at zero strength, so later draws do not depend on the strength
    offset = torch.randn(4, 3, 1, 1, generator=reference)
    next_draw = torch.rand(5, generator=g)
    assert torch.equal(next_draw, torch.rand(5, generator=reference))
    # with strength 0.3 the same main noise gets 0.3 * that offset added
    with_offset = sample_noise((4, 3, 8, 8), gen(5), offset_noise=0.3)
    torch.testing.assert_close(with_offset, noise + 0.3 * offset)
    g_offset = gen(5)
    sample_noise((4, 3, 8, 8), g_offset, offset_noise=0.3)
    assert torch.equal(torch.rand(5, generator=g_offset), next_draw)


def test_offset_noise_adds_the_expected_per_channel_variance():
    strength, hw = 0.5, 8 * 8
    noise = sample_noise((2000, 3, 8, 8), gen(6), offset_noise=strength)
    channel_means = noise.double().mean((2, 3))
    # a channel's spatial mean has variance 1/HW from the white noise plus strength^2 from the offset
    expected = 1 / hw + strength**2
    assert abs(channel_means.var().item() / expected - 1) < 0.05
    plain = sample_noise((2000, 3, 8, 8), gen(6)).double().mean((2, 3))
    assert abs(plain.var().item() * hw - 1) < 0.05
    # pixels stay unit-variance up to the offset's share
    assert abs(noise.double().var().item() - (1 + strength**2)) < 0.02


def test_offset_noise_needs_a_channel_axis():
    with pytest.raises(ValueError, match="channel axis"):
        sample_noise((8,), gen(), offset_noise=0.1)
    assert sample_noise((8,), gen()).shape == (8,)
