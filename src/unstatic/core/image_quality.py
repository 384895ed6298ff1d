"""Full-reference image quality: PSNR and SSIM, for measuring how well an autoencoder reconstructs its input.

- PSNR: ``10 log10(peak^2 / MSE)`` per image, with ``peak`` the data range (2 for images in [-1, 1]).
- SSIM (Wang, Bovik, Sheikh & Simoncelli 2004, "Image Quality Assessment: From Error Visibility to Structural
  Similarity", Eq. 13): local means, variances and covariance under an 11x11 Gaussian window of std 1.5,
  ``((2 mu_x mu_y + C1)(2 s_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))`` with ``C1 = (0.01 L)^2``,
  ``C2 = (0.03 L)^2``, averaged over the valid (unpadded) positions and the channels. These are the paper's
  constants, as scikit-image uses them with ``gaussian_weights=True, use_sample_covariance=False``.

Both take ``[B, C, H, W]`` tensors and return one value per image; they are differentiable, so SSIM also
serves as a training loss (``1 - ssim``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def psnr(x: Tensor, y: Tensor, data_range: float = 2.0) -> Tensor:
    """Peak signal-to-noise ratio in dB per image ``[B]`` (infinite where the images are equal)."""
    _check_pair(x, y)
    mse = (x.float() - y.float()).square().mean(dim=(1, 2, 3))
    return 10 * torch.log10(data_range**2 / mse)


def _gaussian_window(size: int, sigma: float, device: torch.device) -> Tensor:
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    weights = torch.exp(-coords.square() / (2 * sigma**2))
    return weights / weights.sum()


def _blur(x: Tensor, window: Tensor) -> Tensor:
    """Separable Gaussian filter per channel, valid positions only (no padding): ``[B, C, H-10, W-10]``."""
    c = x.shape[1]
    horizontal = window.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    vertical = window.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    return F.conv2d(F.conv2d(x, horizontal, groups=c), vertical, groups=c)


def ssim(x: Tensor, y: Tensor, data_range: float = 2.0) -> Tensor:
    """Mean structural similarity per image ``[B]`` (1 for identical images; Wang et al. 2004, Eq. 13)."""
    _check_pair(x, y)
    if min(x.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(x.shape[-2:])}")
    x, y = x.float(), y.float()
    window = _gaussian_window(SSIM_WINDOW, SSIM_SIGMA, x.device)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    # one filter call for the five local moments: [B, 5C, H, W]
    moments = _blur(torch.cat([x, y, x * x, y * y, x * y], dim=1), window)
    mu_x, mu_y, xx, yy, xy = moments.chunk(5, dim=1)
    var_x, var_y, cov = xx - mu_x.square(), yy - mu_y.square(), xy - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denominator = (mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2)
    return (numerator / denominator).mean(dim=(1, 2, 3))


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.ndim != 4 or x.shape != y.shape:
        raise ValueError(f"expected two [B, C, H, W] tensors of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")


def mean_finite(values: Tensor) -> float:
    """Mean of per-image values, with infinite PSNRs (exact reconstructions) left out; NaN if none is finite."""
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if finite.numel() else math.nan
