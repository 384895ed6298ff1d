"""Training loss: targets per parameterisation, weightings, the loss through Preconditioned, condition dropout."""

import pytest
import torch

from unstatic.core import DiscreteSchedule, EDMSchedule, FlowSchedule, VPSDESchedule
from unstatic.core.predictions import edm_scalings, from_x0, to_x0
from unstatic.denoisers import GaussianMixture, NetworkFromDenoiser, Preconditioned
from unstatic.training.losses import (
    WEIGHTINGS,
    diffusion_loss,
    drop_conditions,
    drop_mask,
    edm_weighting,
    get_weighting,
    min_snr_weighting,
    native_weight,
    none_weighting,
    training_target,
)
from unstatic.training.noise_levels import log_normal, logit_normal, uniform_continuous, uniform_discrete

F64 = torch.float64
GMM = GaussianMixture(
    torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0), dtype=F64), torch.tensor([0.2, 0.4, 0.3])
)
DISCRETE = DiscreteSchedule.from_config()

# (prediction, schedule, noise-level sampler): each kind trained the way it usually is
CASES = {
    "eps": ("eps", DISCRETE, uniform_discrete(DISCRETE)),
    "v": ("v", DiscreteSchedule.from_config(interpolation="linear"), uniform_discrete(DISCRETE)),
    "x0": ("x0", VPSDESchedule(), uniform_continuous(VPSDESchedule())),
    "edm": ("edm", EDMSchedule(), log_normal()),
    "flow": ("flow", FlowSchedule(shift=3.0), logit_normal(shift=3.0)),
    "score": ("score", EDMSchedule(), log_normal()),
}
KINDS = list(CASES)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(kind: str, n: int, seed: int = 0):
    """x0 from the mixture, unit noise and the kind's noise levels, all float64."""
    g = gen(seed)
    x0 = GMM.sample(n, g)
    noise = torch.randn(x0.shape, generator=g, dtype=F64)
    sigma = CASES[kind][2](n, g).double()
    return x0, noise, sigma


def per_sample(sigma, x):
    return sigma.reshape(-1, *([1] * (x.ndim - 1)))


@pytest.mark.parametrize("kind", KINDS)
def test_target_is_the_prediction_that_recovers_x0(kind):
    x0, noise, sigma = batch(kind, 64)
    s = per_sample(sigma, x0)
    x = x0 + s * noise
    target = training_target(kind, x0, noise, s)
    torch.testing.assert_close(to_x0(kind, target, x, s), x0, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(target, from_x0(kind, x0, x, s), rtol=1e-7, atol=1e-9)


def test_targets_of_the_common_kinds_are_the_textbook_ones():
    x0, noise, sigma = batch("edm", 16)
    s = per_sample(sigma, x0)
    assert torch.equal(training_target("eps", x0, noise, s), noise)
    torch.testing.assert_close(training_target("flow", x0, noise, s), noise - x0)
    # v = alpha eps - sigma_vp x0 with alpha = 1 / sqrt(1 + sigma^2), sigma_vp = sigma alpha (Salimans & Ho 2022)
    alpha = 1 / (1 + s**2).sqrt()
    torch.testing.assert_close(training_target("v", x0, noise, s), alpha * noise - s * alpha * x0)
    # EDM: F_target = (x0 - c_skip x) / c_out (Karras et al. 2022, Eq. 8)
    c_skip, c_out, _ = edm_scalings(s, 0.5)
    torch.testing.assert_close(training_target("edm", x0, noise, s), (x0 - c_skip * (x0 + s * noise)) / c_out)


def oracle(kind: str, denoiser) -> Preconditioned:
    """``denoiser`` presented as a raw network of ``kind`` and wrapped back, as training would wrap a network."""
    _, schedule, _ = CASES[kind]
    return Preconditioned(NetworkFromDenoiser(denoiser, schedule, kind), schedule, kind)


@pytest.mark.parametrize("kind", KINDS)
def test_a_network_that_outputs_the_target_has_zero_loss(kind):
    x0, noise, sigma = batch(kind, 64)
    perfect = oracle(kind, lambda x, sigma, cond: x0)  # knows the true clean sample
    loss, per = diffusion_loss(perfect, x0, noise, sigma)
    scale = training_target(kind, x0, noise, per_sample(sigma, x0)).square().mean()
    assert per.shape == (64,) and loss / scale < 1e-18
    wrong = oracle(kind, lambda x, sigma, cond: x0 + 0.01)
    assert diffusion_loss(wrong, x0, noise, sigma)[0] / scale > 1e-8


def x0_space_weight(name: str, sigma, sigma_data: float = 0.5, gamma: float = 5.0):
    """The weightings on |x0_hat - x0|^2 as the papers write them."""
    if name == "min_snr":
        return torch.minimum(sigma**-2, torch.full_like(sigma, gamma))
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


@pytest.mark.parametrize("name", ["min_snr", "edm"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_weighting_means_the_same_x0_loss_for_every_parameterisation(kind, name):
    x0, noise, sigma = batch(kind, 64)
    _, schedule, _ = CASES[kind]
    raw = torch.randn(x0.shape, generator=gen(9), dtype=F64)
    denoiser = Preconditioned(lambda x_in, t, cond: raw, schedule, kind)
    _, native = diffusion_loss(denoiser, x0, noise, sigma, weighting=get_weighting(name))
    # the same random network read as a denoiser, scored on its x0 estimate
    x = x0 + per_sample(sigma, x0) * noise
    x0_error = (denoiser(x, sigma) - x0).square().flatten(1).mean(1)
    torch.testing.assert_close(native, x0_space_weight(name, sigma) * x0_error, rtol=1e-7, atol=0)


def test_min_snr_matches_the_papers_closed_forms():
    t = torch.tensor([0, 10, 100, 300, 500, 800, 999])
    alpha_bar = DISCRETE.alphas_cumprod[t]
    snr = alpha_bar / (1 - alpha_bar)  # SNR = alpha^2 / sigma^2 in the VP frame (Hang et al. 2023, Sec. 3)
    sigma = DISCRETE.sigma_at(t)
    gamma = 5.0
    clipped = snr.clamp(max=gamma)
    weight = min_snr_weighting(gamma)
    torch.testing.assert_close(weight(sigma, "eps", 0.5), clipped / snr)
    torch.testing.assert_close(weight(sigma, "v", 0.5), clipped / (snr + 1))
    torch.testing.assert_close(weight(sigma, "x0", 0.5), clipped)
    assert (weight(sigma, "eps", 0.5)[:3] < 1).all() and weight(sigma, "eps", 0.5)[-1] == 1, "clipped only at high SNR"


def test_edm_weighting_is_one_for_edm_prediction_and_lambda_for_x0():
    sigma = log_normal()(1000, gen()).double()
    torch.testing.assert_close(edm_weighting()(sigma, "edm", 0.5), torch.ones_like(sigma))
    torch.testing.assert_close(edm_weighting()(sigma, "edm", 1.3), torch.ones_like(sigma))
    torch.testing.assert_close(edm_weighting()(sigma, "x0", 0.5), (sigma**2 + 0.25) / (0.5 * sigma) ** 2)
    # an explicit sigma_data overrides the denoiser's
    torch.testing.assert_close(edm_weighting(1.0)(sigma, "x0", 0.5), (sigma**2 + 1) / sigma**2)
    assert torch.equal(none_weighting(sigma, "v"), torch.ones_like(sigma))
    torch.testing.assert_close(native_weight(torch.ones_like(sigma), sigma, "eps"), sigma**2)


@pytest.mark.parametrize("weighting", ["none", "min_snr"])
@pytest.mark.parametrize("kind", KINDS)
def test_the_exact_posterior_mean_beats_a_perturbed_network(kind, weighting):
    """Bayes optimality: E[x0 | x] minimises the expected loss of every parameterisation and weighting."""
    x0, noise, sigma = batch(kind, 1024, seed=1)
    weight = get_weighting(weighting)
    best = oracle(kind, GMM)
    worse = oracle(kind, lambda x, s, cond: GMM(x, s) + 0.1)
    loss_best, _ = diffusion_loss(best, x0, noise, sigma, weighting=weight)
    loss_worse, _ = diffusion_loss(worse, x0, noise, sigma, weighting=weight)
    # E[loss_worse - loss_best] = E[w |raw_worse - raw_best|^2]: the cross term vanishes at the optimum
    x = x0 + per_sample(sigma, x0) * noise
    gap = best.raw(x, sigma) - worse.raw(x, sigma)
    expected_excess = (weight(sigma, kind, 0.5) * gap.square().flatten(1).mean(1)).mean()
    excess = loss_worse - loss_best
    assert excess > 0.5 * expected_excess > 0
    assert abs(excess / expected_excess - 1) < 0.3


def test_training_calls_the_network_exactly_as_sampling_does():
    seen = []

    def network(x_in, t, cond):
        seen.append((x_in.clone(), t.clone(), cond))
        return 0.5 * x_in

    denoiser = Preconditioned(network, DISCRETE, "v", quantize_timesteps=True)
    g = gen(2)
    x0, noise = torch.randn(8, 2, 4, 4, generator=g), torch.randn(8, 2, 4, 4, generator=g)
    sigma = uniform_discrete(DISCRETE)(8, g)
    diffusion_loss(denoiser, x0, noise, sigma, cond="c")
    denoiser(x0 + per_sample(sigma, x0) * noise, sigma, "c")
    (x_train, t_train, c_train), (x_sample, t_sample, c_sample) = seen
    assert torch.equal(x_train, x_sample) and torch.equal(t_train, t_sample) and c_train == c_sample == "c"
    assert torch.equal(t_train, t_train.round()), "discrete training feeds integer timesteps"


def test_the_loss_squares_errors_in_float32_under_bf16_and_draws_nothing():
    x0, noise, sigma = (t.float() for t in batch("eps", 256))
    layer = torch.nn.Conv2d(2, 2, 1)
    denoiser = Preconditioned(lambda x_in, t, cond: layer(x_in), DISCRETE, "eps")
    state = torch.get_rng_state()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert denoiser.raw(x0, sigma).dtype == torch.bfloat16
        loss, per = diffusion_loss(denoiser, x0, noise, sigma, weighting=min_snr_weighting())
    assert torch.equal(torch.get_rng_state(), state), "the loss draws no random numbers"
    assert loss.dtype == per.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        raw = denoiser.raw(x0 + per_sample(sigma, x0) * noise, sigma).double()
    reference = min_snr_weighting()(sigma.double(), "eps", 0.5) * (raw - noise.double()).square().flatten(1).mean(1)
    torch.testing.assert_close(per.double(), reference, rtol=1e-5, atol=0)
    torch.testing.assert_close(loss, per.mean())
    loss.backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


def test_loss_and_weighting_errors_name_the_bad_value():
    denoiser = oracle("eps", GMM)
    x0, noise, sigma = batch("eps", 4)
    with pytest.raises(ValueError, match="noise shape"):
        diffusion_loss(denoiser, x0, noise[:, :1], sigma)
    with pytest.raises(ValueError, match=r"sigma must have shape \[B\] = \[4\]"):
        diffusion_loss(denoiser, x0, noise, sigma[:2])
    assert set(WEIGHTINGS) == {"none", "min_snr", "edm"}
    with pytest.raises(ValueError, match="unknown loss weighting 'snr'"):
        get_weighting("snr")
    with pytest.raises(ValueError, match=r"no option\(s\) \['gama'\]"):
        get_weighting("min_snr", gama=5.0)
    with pytest.raises(ValueError, match="gamma must be positive"):
        get_weighting("min_snr", gamma=0.0)
    with pytest.raises(ValueError, match="unknown prediction 'epsilon'"):
        min_snr_weighting()(sigma, "epsilon", 0.5)
    built = get_weighting("min_snr", gamma=1.0)
    torch.testing.assert_close(built(sigma, "eps", 0.5), min_snr_weighting(1.0)(sigma, "eps", 0.5))


# ---- condition dropout (classifier-free guidance training) ----

B, L, D, NUM_CLASSES = 6, 3, 4, 10


def conditions():
    g = gen(4)
    return {
        "class_labels": torch.randint(0, NUM_CLASSES, (B,), generator=g),
        "context": torch.randn(B, L, D, generator=g),
        "added": {"text_embeds": torch.randn(B, 5, generator=g), "time_ids": torch.randn(B, 6, generator=g)},
        "kept": torch.randn(B, 2, generator=g),
    }


NULL = {
    "class_labels": torch.tensor(NUM_CLASSES),  # the index reserved for "no class"
    "context": torch.zeros(1, L, D),
    "added": {"text_embeds": torch.zeros(5), "time_ids": torch.full((1, 6), -1.0)},
}


def test_drop_conditions_replaces_exactly_the_masked_rows():
    cond = conditions()
    mask = torch.tensor([True, False, False, True, False, True])
    dropped = drop_conditions(cond, mask, NULL)
    assert dropped["class_labels"].dtype == torch.long
    assert (dropped["class_labels"][mask] == NUM_CLASSES).all()
    assert torch.equal(dropped["class_labels"][~mask], cond["class_labels"][~mask])
    assert (dropped["context"][mask] == 0).all() and torch.equal(dropped["context"][~mask], cond["context"][~mask])
    added, original = dropped["added"], cond["added"]
    assert (added["text_embeds"][mask] == 0).all() and (added["time_ids"][mask] == -1).all()
    assert torch.equal(added["time_ids"][~mask], original["time_ids"][~mask])
    assert dropped["kept"] is cond["kept"], "keys without a null value are left alone"
    assert (cond["context"][mask] != 0).any(), "the input is not modified"
    untouched = drop_conditions(cond, torch.zeros(B, dtype=torch.bool), NULL)
    assert torch.equal(untouched["context"], cond["context"])
    # the condition keeps its dtype whatever the null value's (a bf16 text encoder, a float32 null context)
    half = drop_conditions({"context": cond["context"].bfloat16()}, mask, {"context": NULL["context"]})
    assert half["context"].dtype == torch.bfloat16


def test_gradients_still_reach_the_kept_rows():
    context = torch.randn(B, L, D, requires_grad=True)
    mask = torch.tensor([True, False] * 3)
    drop_conditions({"context": context}, mask, {"context": NULL["context"]})["context"].sum().backward()
    assert (context.grad[~mask] == 1).all() and (context.grad[mask] == 0).all()


@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 1.0])
def test_drop_mask_drops_a_fraction_p(p):
    mask = drop_mask(20_000, p, gen(7))
    assert mask.dtype == torch.bool and mask.shape == (20_000,)
    assert abs(mask.float().mean().item() - p) < 0.01  # standard error <= 0.0036
    assert torch.equal(mask, drop_mask(20_000, p, gen(7)))


def test_condition_dropout_errors_name_the_problem():
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"p must lie in \[0, 1\]"):
            drop_mask(4, bad, gen())
    cond, mask = conditions(), torch.zeros(B, dtype=torch.bool)
    with pytest.raises(ValueError, match="null value for 'context' has shape"):
        drop_conditions(cond, mask, {"context": torch.zeros(1, L + 1, D)})
    with pytest.raises(ValueError, match=r"key\(s\) \['class_label'\]"):
        drop_conditions(cond, mask, {"class_label": torch.tensor(0)})
    with pytest.raises(ValueError, match=r"key\(s\) \['added.pooled'\]"):
        drop_conditions(cond, mask, {"added": {"pooled": torch.zeros(3)}})
    with pytest.raises(ValueError, match="1-D bool"):
        drop_conditions(cond, mask.long(), NULL)
    with pytest.raises(ValueError, match="batch 6 but the mask has 2"):
        drop_conditions(cond, mask[:2], NULL)
