"""Classifier-free guidance as a denoiser wrapper."""

import pytest
import torch

from tests.references import load_diffusers_schedulers
from unstatic.core.predictions import from_x0
from unstatic.sampling import ClassifierFreeGuidance

F64 = torch.float64


class CondDenoiser:
    """A smooth conditional denoiser that counts its calls and batch sizes."""

    def __init__(self):
        self.batches = []

    def __call__(self, x, sigma, cond):
        self.batches.append(x.shape[0])
        s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        return torch.tanh(x / (1 + s**2) ** 0.5 + cond[:, None])


def _inputs(n=3):
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 6, generator=gen, dtype=F64) * 2, torch.tensor([0.5, 2.0, 9.0][:n], dtype=F64)


@pytest.mark.parametrize("scale", [0.0, 1.0, 3.0, 7.5, 30.0])
def test_identical_cond_and_uncond_give_the_unguided_result(scale):
    model = CondDenoiser()
    x, sigma = _inputs()
    cond = torch.tensor([0.1, -0.3, 0.7], dtype=F64)
    guided = ClassifierFreeGuidance(model, cond, cond.clone(), scale=scale)(x, sigma)
    assert torch.equal(guided, model(x, sigma, cond))


def test_guidance_is_one_batched_call_and_follows_the_formula():
    model = CondDenoiser()
    x, sigma = _inputs()
    cond, uncond = torch.tensor([0.1, -0.3, 0.7], dtype=F64), torch.zeros(3, dtype=F64)
    guided = ClassifierFreeGuidance(model, cond, uncond, scale=4.0)(x, sigma)
    assert model.batches == [6]
    expected = model(x, sigma, uncond) + 4.0 * (model(x, sigma, cond) - model(x, sigma, uncond))
    torch.testing.assert_close(guided, expected)


def test_scale_one_costs_a_single_unbatched_call():
    model = CondDenoiser()
    x, sigma = _inputs()
    ClassifierFreeGuidance(model, torch.ones(3, dtype=F64), torch.zeros(3, dtype=F64), scale=1.0)(x, sigma)
    assert model.batches == [3]


def test_guidance_is_off_outside_the_sigma_interval():
    model = CondDenoiser()
    x, sigma = _inputs()  # sigmas 0.5, 2, 9
    cond, uncond = torch.full((3,), 0.4, dtype=F64), torch.zeros(3, dtype=F64)
    cfg = ClassifierFreeGuidance(model, cond, uncond, scale=5.0, sigma_interval=(1.0, 5.0))
    out = cfg(x, sigma)
    full = ClassifierFreeGuidance(model, cond, uncond, scale=5.0)(x, sigma)
    plain = model(x, sigma, cond)
    torch.testing.assert_close(out[1], full[1])
    torch.testing.assert_close(out[[0, 2]], plain[[0, 2]])
    model.batches.clear()
    cfg(x[:1], sigma[:1] * 0 + 20.0)
    assert model.batches == [1], "entirely outside the interval: no unconditional call"


def test_rescale_matches_diffusers_in_eps_space():
    load_diffusers_schedulers() or pytest.skip("diffusers not installed")
    from diffusers.guiders.guider_utils import rescale_noise_cfg

    model = CondDenoiser()
    x, sigma = _inputs()
    cond, uncond = torch.tensor([0.3, -0.2, 0.5], dtype=F64), torch.zeros(3, dtype=F64)
    ours = ClassifierFreeGuidance(model, cond, uncond, scale=6.0, rescale=0.7, rescale_space="eps")(x, sigma)
    s = sigma[:, None]
    eps_c, eps_u = from_x0("eps", model(x, sigma, cond), x, s), from_x0("eps", model(x, sigma, uncond), x, s)
    eps_cfg = eps_u + 6.0 * (eps_c - eps_u)
    reference = x - s * rescale_noise_cfg(eps_cfg, eps_c, guidance_rescale=0.7)
    torch.testing.assert_close(ours, reference)


def test_bad_guidance_settings_are_refused():
    model = CondDenoiser()
    with pytest.raises(ValueError, match="rescale must lie in"):
        ClassifierFreeGuidance(model, None, None, rescale=1.5)
    with pytest.raises(ValueError, match="rescale_space"):
        ClassifierFreeGuidance(model, None, None, rescale_space="score")
    with pytest.raises(ValueError, match="low <= high"):
        ClassifierFreeGuidance(model, None, None, sigma_interval=(5.0, 1.0))
    x, sigma = _inputs()
    with pytest.raises(ValueError, match="binds its conditions"):
        ClassifierFreeGuidance(model, torch.zeros(3), torch.zeros(3))(x, sigma, torch.zeros(3))


def test_mapping_conditions_are_batched_key_by_key():
    seen = {}

    def model(x, sigma, cond):
        seen.update({k: v.shape for k, v in cond.items()})
        return x * 0 + cond["scale"][:, None]

    x, sigma = _inputs(2)
    cond = {"scale": torch.tensor([1.0, 2.0], dtype=F64), "tokens": torch.zeros(2, 4, 8)}
    uncond = {"scale": torch.tensor([0.0, 0.0], dtype=F64), "tokens": torch.ones(2, 4, 8)}
    out = ClassifierFreeGuidance(model, cond, uncond, scale=2.0)(x, sigma)
    assert seen == {"scale": (4,), "tokens": (4, 4, 8)}
    torch.testing.assert_close(out[:, 0], torch.tensor([2.0, 4.0], dtype=F64))
