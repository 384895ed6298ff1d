"""Identities and round trips of the core math: frames, predictions, timestep <-> sigma maps."""

import math

import pytest
import torch

from unstatic.core import (
    PREDICTIONS,
    DiscreteSchedule,
    EDMSchedule,
    FlowSchedule,
    VPSDESchedule,
    add_noise,
    add_noise_flow,
    add_noise_vp,
    alpha_cumprod_from_sigma,
    flow_t_from_sigma,
    from_flow_frame,
    from_vp_frame,
    from_x0,
    sigma_from_alpha_cumprod,
    sigma_from_flow_t,
    to_flow_frame,
    to_vp_frame,
    to_x0,
)

F64 = torch.float64


def test_forward_processes_are_the_same_point_in_every_frame():
    gen = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(3, 5, generator=gen, dtype=F64), torch.randn(3, 5, generator=gen, dtype=F64)
    sigma = torch.tensor([0.1, 1.0, 7.0], dtype=F64)
    x = add_noise(x0, eps, sigma)
    alpha_bar = alpha_cumprod_from_sigma(sigma)
    torch.testing.assert_close(to_vp_frame(x, sigma), add_noise_vp(x0, eps, alpha_bar))
    t = flow_t_from_sigma(sigma)
    torch.testing.assert_close(to_flow_frame(x, sigma), add_noise_flow(x0, eps, t))
    torch.testing.assert_close(from_vp_frame(to_vp_frame(x, sigma), sigma), x)
    torch.testing.assert_close(from_flow_frame(to_flow_frame(x, sigma), sigma), x)
    torch.testing.assert_close(sigma_from_alpha_cumprod(alpha_bar), sigma)
    torch.testing.assert_close(sigma_from_flow_t(t), sigma)


@pytest.mark.parametrize("kind", PREDICTIONS)
def test_prediction_conversions_round_trip_and_agree_with_their_definitions(kind):
    gen = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(4, 6, generator=gen, dtype=F64), torch.randn(4, 6, generator=gen, dtype=F64)
    sigma = torch.tensor([0.05, 0.5, 2.0, 30.0], dtype=F64)[:, None]
    x = x0 + sigma * eps
    pred = from_x0(kind, x0, x, sigma)
    torch.testing.assert_close(to_x0(kind, pred, x, sigma), x0)
    # Each kind against its textbook definition.
    alpha, sigma_vp = 1 / (1 + sigma**2) ** 0.5, sigma / (1 + sigma**2) ** 0.5
    expected = {
        "x0": x0,
        "eps": eps,
        "v": alpha * eps - sigma_vp * x0,
        "flow": eps - x0,
        "score": -eps / sigma,
        "edm": (x0 - 0.25 / (sigma**2 + 0.25) * x) / (sigma * 0.5 / (sigma**2 + 0.25) ** 0.5),
    }[kind]
    torch.testing.assert_close(pred, expected)


def test_unknown_prediction_kind_is_named():
    with pytest.raises(ValueError, match="unknown prediction kind 'noise'"):
        to_x0("noise", torch.zeros(1), torch.zeros(1), 1.0)


@pytest.mark.parametrize(
    "schedule",
    [
        DiscreteSchedule.from_config(interpolation="log"),
        DiscreteSchedule.from_config(interpolation="linear"),
        EDMSchedule(),
        VPSDESchedule(),
        FlowSchedule(shift=3.0),
    ],
    ids=["discrete-log", "discrete-linear", "edm", "vpsde", "flow"],
)
def test_timestep_sigma_maps_are_inverse(schedule):
    sigmas = torch.tensor([schedule.sigma_min * 1.01, 0.3, 1.0, 5.0, min(schedule.sigma_max * 0.99, 60.0)], dtype=F64)
    torch.testing.assert_close(schedule.sigma_at(schedule.timestep_at(sigmas)), sigmas, rtol=1e-9, atol=0)
    table = schedule.sigmas
    assert bool((table[1:] > table[:-1]).all()), "table must ascend"


def test_discrete_schedule_hits_integer_timesteps_exactly():
    schedule = DiscreteSchedule.from_config()
    t = torch.arange(0, 1000, 37, dtype=F64)
    torch.testing.assert_close(schedule.timestep_at(schedule.sigmas[t.long()]), t, rtol=0, atol=1e-9)
    torch.testing.assert_close(schedule.sigma_at(t), schedule.sigmas[t.long()], rtol=1e-12, atol=0)


def test_vpsde_matches_edm_table_1():
    s = VPSDESchedule()
    t = 0.5
    expected = math.sqrt(math.exp(0.5 * 19.9 * t**2 + 0.1 * t) - 1)
    assert float(s.sigma_at(t * 999)) == pytest.approx(expected, rel=1e-12)
