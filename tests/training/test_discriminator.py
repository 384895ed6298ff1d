"""The autoencoder's patch discriminator: its shapes, the hinge losses, Esser et al.'s adaptive weight, and the
adversary's start, its frozen role in the autoencoder's loss and its own optimizer step."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from unstatic.training.discriminator import (
    ADAPTIVE_WEIGHT_EPS,
    Adversary,
    PatchDiscriminator,
    adaptive_weight,
    discriminator_hinge_loss,
    generator_hinge_loss,
    minimum_side,
)


def settings(**overrides):
    return SimpleNamespace(**{"disc_weight": 0.5, "disc_start": 2, "disc_width": 8, "disc_layers": 2, **overrides})


@pytest.mark.parametrize("layers, side, patches", [(1, 6, 1), (2, 16, 2), (3, 64, 6), (3, 256, 30)])
def test_one_logit_per_patch(layers, side, patches):
    discriminator = PatchDiscriminator(3, width=8, layers=layers)
    assert discriminator(torch.randn(2, 3, side, side)).shape == (2, 1, patches, patches)


def test_minimum_side_is_the_smallest_that_works():
    for layers in (1, 2, 3):
        side = minimum_side(layers)
        discriminator = PatchDiscriminator(1, width=4, layers=layers)
        assert discriminator(torch.randn(1, 1, side, side)).shape[-1] == 1
        with pytest.raises((RuntimeError, ValueError)):  # no patch left (or a 1x1 map to normalise)
            discriminator(torch.randn(1, 1, side - 2 ** layers, side - 2 ** layers))


def test_hinge_losses():
    confident = discriminator_hinge_loss(torch.full((2, 1, 3, 3), 2.0), torch.full((2, 1, 3, 3), -2.0))
    assert float(confident) == 0.0  # both sides past the margin
    assert float(discriminator_hinge_loss(torch.zeros(4), torch.zeros(4))) == 1.0
    assert float(discriminator_hinge_loss(torch.tensor([0.5]), torch.tensor([3.0]))) == pytest.approx(0.5 * (0.5 + 4.0))
    assert float(generator_hinge_loss(torch.tensor([1.0, 3.0]))) == -2.0


def test_adaptive_weight_is_the_ratio_of_gradient_norms_at_the_last_layer():
    w = torch.randn(3, requires_grad=True)
    a, b = torch.tensor([3.0, 0.0, 4.0]), torch.tensor([0.0, 0.5, 0.0])
    weight = adaptive_weight((w * a).sum(), (w * b).sum(), w)
    assert float(weight) == pytest.approx(5.0 / (0.5 + ADAPTIVE_WEIGHT_EPS))
    assert not weight.requires_grad and w.grad is None  # a constant; nothing accumulated
    assert float(adaptive_weight((w * a).sum(), (w * 0).sum(), w)) == pytest.approx(1e4)  # clamped


def test_adversary_starts_late_and_trains_only_its_own_network():
    torch.manual_seed(0)
    adversary = Adversary(1, settings(), lr=1e-3, device=torch.device("cpu"))
    images = torch.rand(4, 1, 16, 16) * 2 - 1
    last_layer = torch.ones(1, requires_grad=True)
    reconstructions = (images.flip(-1) * last_layer).requires_grad_(True)
    reconstruction_loss = (reconstructions - images).abs().mean()

    before = adversary.generator_term(images, reconstructions, reconstruction_loss, last_layer, step=1)
    assert float(before) == 0.0 and adversary.step() == {}  # not started: nothing kept, no step

    term = adversary.generator_term(images, reconstructions, reconstruction_loss, last_layer, step=2)
    term.backward(retain_graph=True)
    assert last_layer.grad is not None and float(last_layer.grad.abs()) > 0  # the autoencoder learns from it
    assert all(p.grad is None for p in adversary.discriminator.parameters())  # the discriminator does not
    assert all(p.requires_grad for p in adversary.discriminator.parameters())

    first = adversary.step()
    assert set(first) == {"disc_loss", "adversarial_weight"} and first["adversarial_weight"] > 0
    for _ in range(30):  # on a fixed batch the discriminator learns to tell the two apart
        adversary.generator_term(images, reconstructions, reconstruction_loss, last_layer, step=3)
        last = adversary.step()
    assert last["disc_loss"] < 0.5 * first["disc_loss"]


def test_without_autograd_the_weight_is_the_configured_one():
    adversary = Adversary(1, settings(disc_start=0), lr=1e-3, device=torch.device("cpu"))
    images = torch.zeros(2, 1, 16, 16)
    with torch.no_grad():
        logits = adversary.discriminator(images)
        term = adversary.generator_term(images, images, torch.tensor(0.0), torch.zeros(1), step=0)
    assert float(term) == pytest.approx(0.5 * float(generator_hinge_loss(logits)))
