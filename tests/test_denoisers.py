"""Preconditioning wrappers: a network trained in any parameterisation becomes the same sigma-frame denoiser."""

import pytest
import torch

from unstatic.core import DiscreteSchedule, EDMSchedule, FlowSchedule, VPSDESchedule
from unstatic.core.predictions import edm_scalings
from unstatic.denoisers import GaussianMixture, NetworkFromDenoiser, Preconditioned

F64 = torch.float64
GMM = GaussianMixture(torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0), dtype=F64), torch.tensor([0.2, 0.4, 0.3]))

CASES = [
    ("eps", None, DiscreteSchedule.from_config()),
    ("v", None, DiscreteSchedule.from_config(interpolation="linear")),
    ("x0", None, VPSDESchedule()),
    ("edm", None, EDMSchedule()),
    ("flow", None, FlowSchedule(shift=3.0)),
    ("score", None, EDMSchedule()),
    ("eps", "none", EDMSchedule()),  # a VE model
]


@pytest.mark.parametrize("prediction,scaling,schedule", CASES, ids=[f"{p}-{type(s).__name__}-{c}" for p, c, s in CASES])
def test_a_network_made_from_a_denoiser_wraps_back_into_the_same_denoiser(prediction, scaling, schedule):
    network = NetworkFromDenoiser(GMM, schedule, prediction, input_scaling=scaling)
    denoiser = Preconditioned(network, schedule, prediction, input_scaling=scaling)
    gen = torch.Generator().manual_seed(1)
    sigma = torch.tensor([0.05, 0.7, 3.0, 12.0], dtype=F64)
    x = GMM.sample(4, gen) + sigma[:, None, None, None] * torch.randn(4, 2, 4, 4, generator=gen, dtype=F64)
    torch.testing.assert_close(denoiser(x, sigma), GMM(x, sigma), rtol=1e-7, atol=1e-9)


def test_eps_network_sees_the_vp_input_and_the_timestep():
    schedule = DiscreteSchedule.from_config()
    seen = {}

    def network(x_in, t, cond):
        seen.update(x_in=x_in, t=t, cond=cond)
        return torch.zeros_like(x_in)

    sigma = schedule.sigmas[[10, 500]].double()
    x = torch.ones(2, 3, dtype=F64)
    out = Preconditioned(network, schedule)(x, sigma, cond="c")
    torch.testing.assert_close(seen["x_in"], x / (1 + sigma[:, None] ** 2) ** 0.5)
    torch.testing.assert_close(seen["t"], torch.tensor([10.0, 500.0], dtype=F64), rtol=0, atol=1e-9)
    assert seen["cond"] == "c" and torch.equal(out, x), "eps = 0 means x0 = x"


def test_quantized_timesteps_are_integers():
    schedule = DiscreteSchedule.from_config()
    seen = {}
    Preconditioned(lambda x, t, c: seen.update(t=t) or x, schedule, quantize_timesteps=True)(
        torch.zeros(2, 1), torch.tensor([0.5, 3.3])
    )
    assert torch.equal(seen["t"], seen["t"].round())


def test_edm_preconditioning_is_karras_table_1():
    seen = {}

    def network(x_in, c_noise, cond):
        seen.update(x_in=x_in, c_noise=c_noise)
        return torch.ones_like(x_in)

    sigma = torch.tensor([0.3, 5.0], dtype=F64)
    x = torch.full((2, 4), 2.0, dtype=F64)
    out = Preconditioned(network, EDMSchedule(sigma_data=0.5), "edm")(x, sigma)
    c_skip, c_out, c_in = edm_scalings(sigma[:, None], 0.5)
    torch.testing.assert_close(seen["x_in"], c_in * x)
    torch.testing.assert_close(seen["c_noise"], sigma.log() / 4)
    torch.testing.assert_close(out, c_skip * x + c_out)


def test_unknown_parameterisations_are_named():
    with pytest.raises(ValueError, match="unknown prediction 'epsilon'"):
        Preconditioned(lambda *a: a[0], EDMSchedule(), "epsilon")
    with pytest.raises(ValueError, match="unknown input scaling 've'"):
        Preconditioned(lambda *a: a[0], EDMSchedule(), "eps", input_scaling="ve")


def test_gaussian_mixture_is_the_posterior_mean():
    """Monte-Carlo check of E[x0 | x] for one noisy point of a 1-D mixture."""
    gmm = GaussianMixture(torch.tensor([[-1.0], [2.0]], dtype=F64), torch.tensor([0.5, 0.3], dtype=F64), torch.tensor([0.4, 0.6]))
    x0 = gmm.sample(2_000_000, torch.Generator().manual_seed(0))
    sigma, x = 0.8, torch.tensor([[0.7]], dtype=F64)
    weights = torch.exp(-((x - x0) ** 2) / (2 * sigma**2))
    monte_carlo = (weights * x0).sum() / weights.sum()
    assert float(gmm(x, torch.tensor([sigma]))) == pytest.approx(float(monte_carlo), abs=3e-3)
