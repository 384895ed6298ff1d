"""Inpainting against closed-form truth: Gaussian data with correlated pixels (see tests/editing/exact.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.editing.exact import ExactInpaintingNet, ExactNet, Gaussian, correlated, exact_model
from unstatic.core.spacings import karras
from unstatic.imaging import from_pil
from unstatic.pipelines.inpaint import inpaint
from unstatic.sampling.inpaint import KnownRegionDenoiser, blend_known
from unstatic.sampling.registry import SAMPLERS
from unstatic.sampling.resample import sample_resampled

pytestmark = pytest.mark.usefixtures("single_thread")

UNKNOWN = torch.tensor([False, True, True, False])  # pixels 1 and 2 are repainted; 0 and 3 are known
KNOWN_VALUES = torch.tensor([1.0, -0.5], dtype=torch.float64)


def _fill(data: Gaussian, sampler: str, steps: int, n: int, jumps: int = 1, jump_length: int = 1, seed: int = 0):
    """Inpaint n vectors with the any-model wrapper around the exact joint denoiser; returns the outputs."""
    image = torch.zeros(4, dtype=torch.float64)
    image[~UNKNOWN] = KNOWN_VALUES
    mask = UNKNOWN.to(torch.float64)[None]
    sigmas = karras(steps, 0.002, 80.0)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, dtype=torch.float64, generator=g) * sigmas[0]
    denoiser = KnownRegionDenoiser(data.denoiser, image[None], mask)
    out = sample_resampled(SAMPLERS[sampler].fn, denoiser, x, sigmas, jumps=jumps, jump_length=jump_length, noise=g)
    return out, image, mask


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "heun", "dpmpp_2m", "dpmpp_2m_sde", "unipc", "lms"])
def test_known_region_is_kept_by_every_sampler(sampler):
    out, image, mask = _fill(correlated(), sampler, steps=8, n=64)
    # The wrapper alone keeps it (every step moves x toward an estimate that agrees there) ...
    assert torch.allclose(out[:, ~UNKNOWN], image[~UNKNOWN].expand(64, -1), atol=1e-9)
    # ... the final blend makes it exact, and leaves the repainted pixels alone.
    blended = blend_known(out, image[None], mask)
    assert torch.equal(blended[:, ~UNKNOWN], image[~UNKNOWN].expand(64, -1))
    assert torch.equal(blended[:, UNKNOWN], out[:, UNKNOWN])


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_2m_sde"])
def test_independent_pixels_are_filled_exactly_as_unconditional_sampling(sampler):
    """With no correlation between the regions, keeping the known region must not disturb the unknown one:
    given the same noise, the fill equals plain sampling of the same pixels (the exact marginal = conditional)."""
    data = correlated(rho=0.0)
    out, _, _ = _fill(data, sampler, steps=12, n=256, seed=3)
    sigmas = karras(12, 0.002, 80.0)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(256, 4, dtype=torch.float64, generator=g) * sigmas[0]
    plain = SAMPLERS[sampler].fn(data.denoiser, x, sigmas, noise=g)
    assert torch.allclose(out[:, UNKNOWN], plain[:, UNKNOWN], rtol=0, atol=1e-10)


def test_replacement_conditions_the_fill_and_repaint_resampling_brings_it_closer():
    """Re-imposing the known region conditions the fill on a *noisy* view of the known pixels, so with
    correlated pixels the fill lands between the unconditional and the true conditional distribution (an
    approximation, not an exact sampler); RePaint's resampling moves its mean much closer to the truth."""
    data = correlated()
    mean, _ = data.conditional(UNKNOWN, KNOWN_VALUES)
    plain = _fill(data, "euler_ancestral", steps=50, n=3000)[0][:, UNKNOWN].mean(0)
    resampled = _fill(data, "euler_ancestral", steps=50, n=3000, jumps=10, jump_length=1)[0][:, UNKNOWN].mean(0)
    error_plain, error_resampled = (plain - mean).norm(), (resampled - mean).norm()
    assert error_plain < 0.8 * (data.mu[UNKNOWN] - mean).norm()  # conditioned: closer than the marginal mean
    assert error_resampled < 0.5 * error_plain, (error_plain, error_resampled)


@pytest.mark.slow
def test_repaint_resampling_approaches_the_true_conditional():
    """With many jumps and steps, replacement plus resampling converges toward the closed-form conditional
    (measured: 50 steps x 1 jump -> mean error 0.58; 50 x 40 -> 0.05; 200 x 40 -> 0.04, variances within 7%)."""
    data = correlated()
    mean, cov = data.conditional(UNKNOWN, KNOWN_VALUES)
    errors = []
    for steps, jumps in ((50, 1), (50, 10), (50, 40), (200, 40)):
        fill = _fill(data, "euler_ancestral", steps=steps, n=4000, jumps=jumps, jump_length=1)[0][:, UNKNOWN]
        errors.append(float((fill.mean(0) - mean).norm()))
    assert errors == sorted(errors, reverse=True), errors  # each setting closer than the one before
    assert errors[-1] < 0.06, errors
    assert ((fill.var(0) / cov.diagonal() - 1).abs() < 0.12).all(), (fill.var(0), cov.diagonal())


@pytest.mark.parametrize("sampler", ["unipc", "dpmpp_2m"])
def test_inpainting_model_fills_from_the_true_conditional(sampler):
    """End to end through ``inpaint()``: an ideal inpainting network (mask and masked image as extra channels)
    makes the repainted pixels follow the closed-form conditional N(m, C), mean and covariance."""
    data = correlated(scale=0.15)  # well inside [-1, 1], so clamping and 8-bit rounding do not matter
    image = torch.tensor([[[0.15, 0.0], [0.0, -0.2]]])  # [1, 2, 2]; flattened pixels 1 and 2 are repainted
    mask = UNKNOWN.float().reshape(1, 2, 2)
    network = ExactInpaintingNet(data, channels=1)
    n = 2000
    results = inpaint(exact_model(network, side=2), image, mask, "", num_images=n, mask_blur=0, seed=0,
                      num_inference_steps=40, sampler=sampler, guidance_scale=1.0)
    out = torch.stack([from_pil(r.image).double().reshape(-1) for r in results])
    assert network.calls > 0
    assert torch.equal(out[:, ~UNKNOWN].float(), from_pil(results[0].image).reshape(-1)[~UNKNOWN].expand(n, -1))
    mean, cov = data.conditional(UNKNOWN, image.reshape(-1)[~UNKNOWN])
    fill = out[:, UNKNOWN]
    assert ((fill.mean(0) - mean).abs() < 4 * cov.diagonal().sqrt() / n**0.5 + 1 / 255).all(), (fill.mean(0), mean)
    assert torch.allclose(torch.cov(fill.T), cov, rtol=0.12, atol=2e-4), (torch.cov(fill.T), cov)


def test_any_model_path_through_the_pipeline_keeps_the_marginal_for_independent_pixels():
    """The same end-to-end check for an ordinary (non-inpainting) model: with independent pixels the exact
    answer is the marginal, which the known-region wrapper must leave intact."""
    data = correlated(scale=0.15, rho=0.0)
    image = torch.tensor([[[0.15, 0.0], [0.0, -0.2]]])
    mask = UNKNOWN.float().reshape(1, 2, 2)
    n = 2000
    results = inpaint(exact_model(ExactNet(data, channels=1), side=2), image, mask, "", num_images=n, mask_blur=0,
                      seed=0, num_inference_steps=40, sampler="unipc", guidance_scale=1.0)
    out = torch.stack([from_pil(r.image).double().reshape(-1) for r in results])
    assert np.array_equal(out[:, ~UNKNOWN].numpy(), np.broadcast_to(out[0, ~UNKNOWN].numpy(), (n, 2)))
    sd = data.cov.diagonal()[UNKNOWN].sqrt()
    assert ((out[:, UNKNOWN].mean(0) - data.mu[UNKNOWN]).abs() < 4 * sd / n**0.5 + 1 / 255).all()
    assert ((out[:, UNKNOWN].var(0) / sd**2 - 1).abs() < 0.1).all(), out[:, UNKNOWN].var(0) / sd**2
