"""Training the first stage of latent diffusion: a KL-regularised autoencoder (Kingma & Welling 2014; Rombach et al.
2022, "High-Resolution Image Synthesis with Latent Diffusion Models", Sec. 3.1 and Appendix G).

The loss of an image ``x`` with posterior ``q(z | x) = N(mu, sigma^2)`` and reconstruction ``x_hat = D(z)``,
``z ~ q`` (the reparameterisation trick), is

    l1 |x - x_hat| + l2 (x - x_hat)^2 + ssim_w (1 - SSIM(x, x_hat)) + kl_w KL(q || N(0, I)) / n

with the first two averaged over the ``n`` pixel values and the KL summed over the latent, so ``kl_w`` keeps LDM's
meaning (its reconstruction term is a sum over pixels beside ``1e-6 KL``). SSIM (Wang et al. 2004) stands in for
LDM's LPIPS perceptual loss, whose VGG weights cannot be had offline; it rewards edges and local contrast, which an
L1 loss alone blurs. LDM's patch discriminator is optional (``autoencoder.disc_weight``,
:mod:`unstatic.training.discriminator`).

The diffusion model then works on ``z * scaling_factor``, with the factor set from data to make the latents'
standard deviation 1 (LDM Sec. 4.3.2: "we rescale the latents by the component-wise standard deviation").
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from unstatic.core.image_quality import mean_finite, psnr, ssim
from unstatic.networks.vae import AutoencoderKL, DiagonalGaussian, VAEConfig


# Where a new autoencoder's posterior log-variance starts: std e^-3 = 0.05, so the first samples of the latent are
# not mostly unit noise around a small mean; the KL term then sets the variance it wants. (On the shapes world this
# made no measurable difference to the first hundreds of steps, which are slow for another reason: GroupNorm
# removes most of a flat region's absolute colour, and these scenes are mostly flat regions.)
INITIAL_LOGVAR = -6.0


def build_autoencoder(config, channels: int, resolution: int) -> AutoencoderKL:
    """An :class:`AutoencoderKL` of the ``[autoencoder]`` section's architecture for ``channels``-channel images,
    its posterior log-variance starting at :data:`INITIAL_LOGVAR`."""
    levels = len(config.block_out_channels)
    if config.block_out_channels[0] < 2 * config.norm_num_groups:
        # One channel per group makes the GroupNorm before the decoder's output conv an instance norm: it removes
        # each channel's mean over the image, and a flat region's colour is lost (measured: grey reconstructions
        # after 1,500 steps on the shapes world; with 4 channels per group the colours came within 200).
        warnings.warn(f"autoencoder.norm_num_groups = {config.norm_num_groups} leaves fewer than 2 channels per group at "
                      f"width {config.block_out_channels[0]}: the decoder will struggle to reproduce colours of flat "
                      "regions; Stable Diffusion's VAE has 4 per group", stacklevel=2)
    factor = 2 ** (levels - 1)
    if resolution % factor:
        raise ValueError(f"data.resolution {resolution} must be divisible by {factor}, the autoencoder's down-sampling "
                         f"factor (2^(len(autoencoder.block_out_channels) - 1))")
    vae = AutoencoderKL(VAEConfig(
        in_channels=channels, out_channels=channels, block_out_channels=tuple(config.block_out_channels),
        down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
        layers_per_block=config.layers_per_block, latent_channels=config.latent_channels,
        norm_num_groups=config.norm_num_groups, sample_size=resolution, scaling_factor=1.0,
        mid_block_add_attention=config.mid_block_add_attention,
    ))
    with torch.no_grad():  # the second half of quant_conv's output channels is the log-variance
        vae.quant_conv.bias[config.latent_channels:] = INITIAL_LOGVAR
    return vae


class Reconstruction(nn.Module):
    """The autoencoder as one forward pass (what DDP and ``torch.compile`` wrap): ``x`` and the posterior's
    standard-normal draw ``eps`` in, ``(x_hat, mean, logvar)`` out."""

    def __init__(self, vae: AutoencoderKL) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: Tensor, eps: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        posterior = self.vae.encode(x)
        z = posterior.mean + posterior.std * eps.to(posterior.mean.dtype)
        return self.vae.decode(z), posterior.mean, posterior.logvar


def autoencoder_loss(x: Tensor, reconstruction: Tensor, mean: Tensor, logvar: Tensor, config) -> Tensor:
    """The loss above for a batch (mean over images); ``config`` is the ``[autoencoder]`` section."""
    x, reconstruction = x.float(), reconstruction.float()
    error = reconstruction - x
    loss = config.l1_weight * error.abs().mean()
    if config.l2_weight:
        loss = loss + config.l2_weight * error.square().mean()
    if config.ssim_weight:
        loss = loss + config.ssim_weight * (1 - ssim(reconstruction, x)).mean()
    if config.kl_weight:
        kl = DiagonalGaussian(torch.cat([mean, logvar], dim=1).float()).kl()  # summed over the latent, per image
        loss = loss + config.kl_weight * (kl / x[0].numel()).mean()
    return loss


@torch.no_grad()
def latent_scale(vae: AutoencoderKL, dataset: Dataset, count: int, batch_size: int = 32) -> float:
    """``1 / std`` of the posterior means of the first ``count`` images (all latent values pooled)."""
    device = next(vae.parameters()).device
    total, total_sq, n = 0.0, 0.0, 0
    for start in range(0, min(count, len(dataset)), batch_size):
        images = torch.stack([dataset[i]["image"] for i in range(start, min(start + batch_size, count, len(dataset)))])
        z = vae.encode(images.to(device)).mean.double()
        total, total_sq, n = total + float(z.sum()), total_sq + float(z.square().sum()), n + z.numel()
    variance = total_sq / n - (total / n) ** 2
    if not variance > 0:
        raise ValueError("the autoencoder's latents have no variance on the data; it cannot be scaled")
    return 1 / math.sqrt(variance)


@torch.no_grad()
def reconstruct(vae: AutoencoderKL, images: Tensor, batch_size: int = 32) -> Tensor:
    """Posterior-mean reconstructions of ``images`` ``[N, C, H, W]`` in [-1, 1], clamped to that range."""
    device = next(vae.parameters()).device
    return torch.cat([vae(batch.to(device)).clamp(-1, 1).cpu() for batch in images.split(batch_size)])


def reconstruction_quality(images: Tensor, reconstructions: Tensor) -> dict[str, float]:
    """Mean PSNR (dB, images in [-1, 1]; exact reconstructions left out) and SSIM over the images."""
    return {"psnr": mean_finite(psnr(reconstructions, images)), "ssim": float(ssim(reconstructions, images).mean()),
            "images": len(images)}
