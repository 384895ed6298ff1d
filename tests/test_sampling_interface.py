"""The sampler interface: names, callbacks and interruption, noise sources, and clear errors for bad input."""

import math

import pytest
import torch

from unstatic.core import EDMSchedule, get_sigmas
from unstatic.denoisers import GaussianMixture
from unstatic.sampling import SAMPLERS, NonFiniteError, get_sampler, make_noise_source, resolve_sampler, sample

F64 = torch.float64
GMM = GaussianMixture(torch.tensor([[-1.0, 0.0], [1.0, 1.0]], dtype=F64), torch.tensor([0.3, 0.3], dtype=F64))
SIGMAS = get_sigmas("karras", 6, EDMSchedule(0.01, 20.0))


@pytest.mark.parametrize(
    "typed,expected",
    [
        ("DPM++ 2M", ("dpmpp_2m", None)),
        ("dpmpp_2m", ("dpmpp_2m", None)),
        ("k_dpmpp_2m", ("dpmpp_2m", None)),
        ("DPM++ 2M Karras", ("dpmpp_2m", "karras")),
        ("DPM++ 2M SDE Exponential", ("dpmpp_2m_sde", "exponential")),
        ("Euler a", ("euler_ancestral", None)),
        ("k_euler_a", ("euler_ancestral", None)),
        ("euler_ancestral", ("euler_ancestral", None)),
        ("DPM2 a Karras", ("dpm_2_ancestral", "karras")),
        ("DPM++ 2S a", ("dpmpp_2s_ancestral", None)),
        ("LMS Karras", ("lms", "karras")),
        ("uni_pc", ("unipc", None)),
        ("UniPC", ("unipc", None)),
        ("DDIM", ("ddim", None)),
        ("Euler SGM Uniform", ("euler", "sgm_uniform")),
    ],
)
def test_names_users_type_resolve(typed, expected):
    assert resolve_sampler(typed) == expected


def test_unknown_sampler_is_named_with_the_choices():
    with pytest.raises(ValueError, match=r"unknown sampler 'DPM\+\+ 9M'.*DPM\+\+ 2M"):
        resolve_sampler("DPM++ 9M")


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_callback_sees_every_step_and_can_stop(name):
    seen = []
    x = torch.randn(2, 2, dtype=F64) * SIGMAS[0]
    sample(name, GMM, x, SIGMAS, callback=lambda info: seen.append((info.step, info.sigma, info.sigma_next)), noise=0)
    assert [s[0] for s in seen] == list(range(6))
    assert [s[2] for s in seen] == SIGMAS[1:].tolist()

    def stop_after_two(info):
        return info.step == 1

    last = {}
    out = sample(name, GMM, x, SIGMAS, callback=lambda info: last.update(d=info.denoised) or stop_after_two(info), noise=0)
    assert torch.equal(out, last["d"]), "a stopped sampler returns the latest clean estimate"


@pytest.mark.parametrize(
    "sigmas,message",
    [
        (torch.tensor([1.0, 2.0, 0.0]), "strictly decrease: sigmas\\[0\\] = 1.0 is followed by sigmas\\[1\\] = 2.0"),
        (torch.tensor([2.0, 1.0, 1.0, 0.0]), "strictly decrease"),
        (torch.tensor([5.0]), "at least 2 noise levels"),
        (torch.tensor([]), "at least 2 noise levels"),
        (torch.tensor([3.0, float("nan"), 0.0]), "must be finite"),
        (torch.tensor([[3.0, 0.0]]), "1-D"),
        (torch.tensor([3.0, -1.0]), "non-negative"),
    ],
)
@pytest.mark.parametrize("name", ["euler", "dpmpp_2m_sde", "unipc"])
def test_bad_sigmas_are_refused_with_the_reason(name, sigmas, message):
    with pytest.raises(ValueError, match=message):
        sample(name, GMM, torch.zeros(1, 2, dtype=F64), sigmas)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_nan_input_is_refused(name):
    x = torch.tensor([[float("nan"), 0.0]], dtype=F64)
    with pytest.raises(NonFiniteError, match="x contains NaN"):
        sample(name, GMM, x, SIGMAS)


def test_a_denoiser_that_returns_nan_is_reported_not_returned():
    with pytest.raises(NonFiniteError, match="'heun' produced NaN"):
        sample("heun", lambda x, s, c=None: x * float("nan"), torch.ones(1, 2), SIGMAS)


def test_bad_options_are_refused():
    x = torch.zeros(1, 2, dtype=F64)
    with pytest.raises(ValueError, match="final_step"):
        sample("euler", GMM, x, SIGMAS, final_step="exact")
    with pytest.raises(ValueError, match="order must be 1, 2 or 3"):
        sample("unipc", GMM, x, SIGMAS, order=5)
    with pytest.raises(ValueError, match="solver_type"):
        sample("dpmpp_2m_sde", GMM, x, SIGMAS, solver_type="rk4")
    with pytest.raises(TypeError, match="unexpected keyword"):
        sample("euler", GMM, x, SIGMAS, eta=0.5)


def test_noise_sources():
    like = torch.zeros(3, 4)
    predrawn = torch.randn(2, 3, 4)
    source = make_noise_source(predrawn, like)
    assert torch.equal(source(), predrawn[0]) and torch.equal(source(), predrawn[1])
    with pytest.raises(ValueError, match="more than the 2 pre-drawn"):
        source()
    with pytest.raises(ValueError, match="got 2 generators for a batch of 3"):
        make_noise_source([torch.Generator(), torch.Generator()], like)
    with pytest.raises(ValueError, match="pre-drawn noise has shape"):
        make_noise_source(torch.zeros(2, 5), like)
    torch.manual_seed(5)
    a = make_noise_source(None, like)()
    torch.manual_seed(5)
    assert torch.equal(a, make_noise_source(None, like)()), "torch.manual_seed reproduces default noise"
    assert make_noise_source(0, like.double())().dtype == F64


def test_noise_does_not_depend_on_the_dtype_of_x():
    a = make_noise_source([torch.Generator().manual_seed(3)], torch.zeros(1, 8))()
    b = make_noise_source([torch.Generator().manual_seed(3)], torch.zeros(1, 8, dtype=torch.bfloat16))()
    torch.testing.assert_close(a.to(torch.bfloat16), b)


def test_samplers_accept_sigmas_that_stop_short_of_zero():
    x = torch.randn(2, 2, dtype=F64) * SIGMAS[0]
    partial = sample("dpmpp_2m", GMM, x, SIGMAS[:-2])
    assert torch.isfinite(partial).all()


def test_get_sampler_returns_the_function():
    assert get_sampler("Heun") is SAMPLERS["heun"].fn
    assert all(info.calls_per_step in (1, 2) for info in SAMPLERS.values())
    assert math.isfinite(float(sample("ddpm", GMM, torch.zeros(1, 2, dtype=F64) + 5, SIGMAS, noise=1).sum()))
