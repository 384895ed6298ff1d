"""The adversarial part of LDM's autoencoder loss (Rombach et al. 2022, Appendix G, after Esser et al. 2021, "Taming
Transformers for High-Resolution Image Synthesis", Sec. 3.1): a patch discriminator judges overlapping patches of
real images and of reconstructions, and the autoencoder is also trained to fool it. It sharpens the textures that
an L1 + SSIM loss leaves blurred; it does nothing useful before the autoencoder reconstructs well, so it starts
after ``disc_start`` steps (50,001 for SD's VAE).

- **PatchGAN** (Isola et al. 2017, "Image-to-Image Translation with Conditional Adversarial Networks", Sec. 3.2.2):
  4x4 convolutions, ``layers`` of them strided, whose output is a map of logits, one per overlapping patch (70x70
  pixels for 3 layers). GroupNorm stands in for the BatchNorm of LDM's copy: it depends on each image alone, so
  ``torchrun`` ranks with half batches compute what one process with the whole batch does.
- **Hinge losses** (Lim & Ye 2017, "Geometric GAN"; Miyato et al. 2018, Eq. 16-17):
  ``L_D = 1/2 (E[relu(1 - D(x))] + E[relu(1 + D(x_hat))])`` and ``L_G = -E[D(x_hat)]``.
- **Adaptive weight** (Esser et al. 2021, Eq. 7): the autoencoder's loss gains ``lambda L_G`` with
  ``lambda = disc_weight ||grad_GL L_rec|| / (||grad_GL L_G|| + 1e-4)``, ``GL`` the decoder's last layer, so that
  the adversarial gradient there is ``disc_weight`` times the reconstruction's whatever the losses' scales.
- The discriminator has its own Adam (betas 0.5, 0.9, as in LDM) at the run's base learning rate, and takes one
  step after each of the autoencoder's, on the reconstructions that step made.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from unstatic.training.distributed import average_over_processes_

ADAPTIVE_WEIGHT_EPS = 1e-4  # Esser et al.'s delta in Eq. 7
ADAPTIVE_WEIGHT_MAX = 1e4  # LDM's clamp: early on, L_G's gradient at the last layer can be nearly zero


def minimum_side(layers: int) -> int:
    """The smallest image side a discriminator of ``layers`` strided convolutions accepts: ``layers`` halvings, then
    two unstrided 4x4 convolutions that each take one pixel off, leaving at least one patch."""
    return 3 * 2 ** layers


class PatchDiscriminator(nn.Module):
    """Logits ``[N, 1, h, w]``, one per patch of the ``[N, channels, H, W]`` images (``h ~ H / 2^layers - 2``)."""

    def __init__(self, channels: int, width: int = 64, layers: int = 3) -> None:
        super().__init__()
        modules: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        out = width
        for n in range(1, layers + 1):
            previous, out = out, width * min(2 ** n, 8)
            modules += [nn.Conv2d(previous, out, 4, 2 if n < layers else 1, 1, bias=False),
                        nn.GroupNorm(math.gcd(32, out), out), nn.LeakyReLU(0.2, inplace=True)]
        modules.append(nn.Conv2d(out, 1, 4, 1, 1))
        self.layers = nn.Sequential(*modules)
        for module in self.modules():  # DCGAN's initialisation, which PatchGAN and LDM keep
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.GroupNorm):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, images: Tensor) -> Tensor:
        return self.layers(images)


def discriminator_hinge_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """``L_D`` above: real patches pushed above +1, reconstructed ones below -1."""
    return 0.5 * (F.relu(1 - real_logits.float()).mean() + F.relu(1 + fake_logits.float()).mean())


def generator_hinge_loss(fake_logits: Tensor) -> Tensor:
    """``L_G`` above: the autoencoder raises the discriminator's logits on its reconstructions."""
    return -fake_logits.float().mean()


def adaptive_weight(reconstruction_loss: Tensor, generator_loss: Tensor, last_layer: Tensor) -> Tensor:
    """``||grad L_rec|| / (||grad L_G|| + 1e-4)`` at ``last_layer`` (Eq. 7), with both gradients averaged over the
    processes first, so that every rank uses the weight of the global batch. A constant (no gradient flows)."""
    (rec_grad,) = torch.autograd.grad(reconstruction_loss, last_layer, retain_graph=True)
    (gen_grad,) = torch.autograd.grad(generator_loss, last_layer, retain_graph=True)
    rec_grad, gen_grad = average_over_processes_(rec_grad.float()), average_over_processes_(gen_grad.float())
    return (rec_grad.norm() / (gen_grad.norm() + ADAPTIVE_WEIGHT_EPS)).clamp(0.0, ADAPTIVE_WEIGHT_MAX).detach()


@contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """The autoencoder's loss must not leave gradients on the discriminator (its step follows separately)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in zip(module.parameters(), flags):
            parameter.requires_grad_(flag)


class Adversary:
    """The discriminator of one run, its optimizer, and the reconstructions it has yet to learn from."""

    def __init__(self, channels: int, config, lr: float, device: torch.device) -> None:
        """``config``: the ``[autoencoder]`` section (``disc_weight``, ``disc_start``, ``disc_width``,
        ``disc_layers``)."""
        self.weight, self.start = config.disc_weight, config.disc_start
        self.discriminator = PatchDiscriminator(channels, config.disc_width, config.disc_layers).to(device)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=(0.5, 0.9))
        self._pending: list[tuple[Tensor, Tensor]] = []
        self._weights: list[float] = []

    def active(self, step: int) -> bool:
        """Whether the optimizer step numbered ``step`` (from 0) trains adversarially."""
        return step >= self.start

    def generator_term(self, images: Tensor, reconstructions: Tensor, reconstruction_loss: Tensor,
                       last_layer: Tensor, step: int) -> Tensor:
        """``lambda L_G`` for the autoencoder's loss (zero before ``disc_start``); keeps the batch for the
        discriminator's next step. Without autograd (evaluation) ``lambda`` is ``disc_weight`` alone."""
        if not self.active(step):
            return reconstruction_loss.new_zeros(())
        self._pending.append((images.detach(), reconstructions.detach()))
        with _frozen(self.discriminator):
            loss = generator_hinge_loss(self.discriminator(reconstructions))
        weight = self.weight
        if reconstruction_loss.requires_grad:
            weight = self.weight * adaptive_weight(reconstruction_loss, loss, last_layer)
        self._weights.append(float(weight))
        return weight * loss

    def step(self) -> dict[str, float]:
        """One optimizer step of the discriminator on the batches kept since the last one (its gradients averaged
        over processes); returns its loss and the mean adaptive weight, for the metrics log."""
        if not self._pending:
            return {}
        total = 0.0
        for images, reconstructions in self._pending:
            loss = discriminator_hinge_loss(self.discriminator(images), self.discriminator(reconstructions))
            (loss / len(self._pending)).backward()
            total += float(loss.detach()) / len(self._pending)
        for parameter in self.discriminator.parameters():
            if parameter.grad is not None:
                average_over_processes_(parameter.grad)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        metrics = {"disc_loss": total, "adversarial_weight": sum(self._weights) / len(self._weights)}
        self._pending.clear()
        self._weights.clear()
        return metrics

    def state(self) -> tuple[dict[str, Tensor], dict]:
        """What a checkpoint keeps: the discriminator's weights and its optimizer's state."""
        return self.discriminator.state_dict(), self.optimizer.state_dict()

    def restore(self, weights: dict[str, Tensor], optimizer_state: dict) -> None:
        self.discriminator.load_state_dict(weights)
        self.optimizer.load_state_dict(optimizer_state)
