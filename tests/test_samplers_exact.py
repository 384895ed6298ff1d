"""Samplers against exact answers: Gaussian-mixture data has a closed-form posterior mean, so the output
distribution and the convergence order can be checked against the truth, not another implementation."""

import math

import pytest
import torch

from unstatic.core import EDMSchedule, get_sigmas
from unstatic.denoisers import GaussianMixture
from unstatic.sampling import SAMPLERS, generators_from_seeds, randn_per_sample

F64 = torch.float64


def _mixture() -> GaussianMixture:
    # Two well-separated 2-D components with unequal weights and spreads.
    means = torch.tensor([[-1.5, 0.0], [1.0, 0.5]], dtype=F64)
    return GaussianMixture(means, torch.tensor([0.25, 0.5], dtype=F64), torch.tensor([0.3, 0.7], dtype=F64))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_output_distribution_matches_the_data(name):
    """Means, variances and mixture weights of 3000 samples are within sampling error of the truth."""
    gmm, n = _mixture(), 3000
    steps = 8 if name == "lcm" else 40
    sigmas = get_sigmas("karras", steps, EDMSchedule(0.002, 80.0))
    gen = torch.Generator().manual_seed(123)
    x = torch.randn(n, 2, generator=gen, dtype=F64) * sigmas[0]
    def consistency(x, sigma, cond=None):
        # LCM needs a consistency function, not a posterior mean: for this data the exact one is the ODE
        # flow map to sigma = 0 (Song et al. 2023, Eq. 3).
        return gmm.ode_solution(x, float(sigma[0]), steps=100)

    out = SAMPLERS[name].fn(consistency if name == "lcm" else gmm, x, sigmas, noise=gen)
    data = gmm.sample(200_000, torch.Generator().manual_seed(7))
    # Standard errors of the mean and of the variance at n = 3000; 5 of them is a 1-in-a-million miss.
    se_mean = data.std(0) / math.sqrt(n)
    torch.testing.assert_close(out.mean(0), data.mean(0), rtol=0, atol=float(5 * se_mean.max()))
    var_rel_se = math.sqrt(2 / n) * 2  # heavier tails of a mixture roughly double the Gaussian value
    torch.testing.assert_close(out.var(0) / data.var(0), torch.ones(2, dtype=F64), rtol=0, atol=5 * var_rel_se)
    weights = torch.bincount(gmm.component_of(out), minlength=2).double() / n
    torch.testing.assert_close(weights, gmm.weights_normalised, rtol=0, atol=5 * math.sqrt(0.21 / n))


# name, options, expected order: theory, with the measured warm-up limit where it binds.
ORDERS = [
    ("euler", {}, 1),
    ("ddim", {}, 1),
    ("heun", {}, 2),
    ("dpm_2", {}, 2),
    ("dpmpp_2m", {}, 2),
    ("lms", {}, 4),  # Adams-Bashforth 4 in sigma
    ("unipc", {"order": 1, "lower_order_final": False}, 2),  # UniC raises the order by one
    ("unipc", {"order": 2, "lower_order_final": False}, 3),
]


@pytest.mark.parametrize("name,options,order", ORDERS, ids=[f"{n}-{o}" for n, o, _ in ORDERS])
def test_convergence_order_against_an_accurate_ode_solution(name, options, order):
    """Error against RK4 with 2000 steps (itself ~1e-10 accurate) falls like steps^-order."""
    torch.manual_seed(0)
    gmm = GaussianMixture(torch.randn(3, 8, dtype=F64) * 0.6, torch.tensor([0.3, 0.5, 0.4], dtype=F64))
    x = torch.randn(4, 8, dtype=F64) * 10.0
    # Stop at sigma_min so the fixed final jump to 0 does not mask the order of the steps before it.
    reference = gmm.ode_solution(x, 10.0, 0.1, steps=2000)
    errors = []
    for steps in (16, 32, 64):
        sigmas = get_sigmas("karras", steps, EDMSchedule(0.1, 10.0))[:-1]
        out = SAMPLERS[name].fn(gmm, x, sigmas, **options)
        errors.append(float((out - reference).pow(2).mean().sqrt()))
    measured = math.log2(errors[-2] / errors[-1])
    assert order - 0.35 < measured < order + 0.6, f"{name}: errors {errors}, order {measured:.2f}"


def test_extrapolated_final_step_removes_the_last_step_error():
    """On the exact trajectory the usual last step leaves O(sigma_min^2); the extrapolation is far smaller."""
    torch.manual_seed(1)
    gmm = GaussianMixture(torch.randn(4, 16, dtype=F64) * 0.5, torch.full((4,), 0.3, dtype=F64))
    x = torch.randn(8, 16, dtype=F64) * 14.6
    sigmas = get_sigmas("karras", 50, EDMSchedule(0.0292, 14.6))
    truth = gmm.ode_solution(x, 14.6)
    errors = {
        mode: float((SAMPLERS["dpm_2"].fn(gmm, x, sigmas, final_step=mode) - truth).pow(2).mean().sqrt())
        for mode in ("plain", "extrapolate")
    }
    assert errors["extrapolate"] < 0.5 * errors["plain"], errors


@pytest.mark.parametrize("name", sorted(n for n, info in SAMPLERS.items() if info.stochastic))
def test_stochastic_samplers_are_batch_invariant(name):
    """Image i of a batch equals the same seed run alone (per-sample generators)."""
    gmm = _mixture()
    sigmas = get_sigmas("karras", 6, EDMSchedule(0.002, 80.0))
    seeds = [11, 22, 33]
    x = randn_per_sample((3, 2), generators_from_seeds(seeds)).double() * sigmas[0]
    batch = SAMPLERS[name].fn(gmm, x, sigmas, noise=generators_from_seeds(seeds))
    for i, seed in enumerate(seeds):
        alone = SAMPLERS[name].fn(gmm, x[i : i + 1], sigmas, noise=generators_from_seeds([seed]))
        torch.testing.assert_close(batch[i : i + 1], alone, rtol=0, atol=1e-12)
    again = SAMPLERS[name].fn(gmm, x, sigmas, noise=generators_from_seeds(seeds))
    assert torch.equal(batch, again)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_are_shape_agnostic(name):
    gmm = GaussianMixture(torch.randn(2, 2, 3, 4, 4, dtype=F64), torch.tensor([0.3, 0.4], dtype=F64))
    sigmas = get_sigmas("karras", 4, EDMSchedule(0.01, 10.0))
    x = torch.randn(3, 2, 3, 4, 4, dtype=F64) * 10
    out = SAMPLERS[name].fn(gmm, x, sigmas, noise=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_do_not_modify_their_input(name):
    gmm = _mixture()
    sigmas = get_sigmas("karras", 4, EDMSchedule(0.01, 10.0))
    x = torch.randn(5, 2, dtype=F64) * 10
    before = x.clone()
    SAMPLERS[name].fn(gmm, x, sigmas, noise=torch.Generator().manual_seed(0), **({"s_churn": 1.0} if name in ("euler", "heun", "dpm_2") else {}))
    assert torch.equal(x, before)
