"""PSNR and SSIM (core/image_quality.py) against independent NumPy/SciPy computations of the same definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unstatic.core.image_quality import mean_finite, psnr, ssim

scipy_ndimage = pytest.importorskip("scipy.ndimage")


def reference_ssim(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """Wang et al. 2004, Eq. 13, as scikit-image computes it with gaussian_weights=True (11 taps, std 1.5),
    population covariances, the 5-pixel border cropped; mean over channels."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for a, b in zip(x.astype(np.float64), y.astype(np.float64)):
        def blur(image):
            return scipy_ndimage.gaussian_filter(image, sigma=1.5, truncate=3.5)[5:-5, 5:-5]
        mu_a, mu_b = blur(a), blur(b)
        var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
        s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
        values.append(s.mean())
    return float(np.mean(values))


def images(seed: int, shape=(2, 3, 24, 20)) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_ssim_matches_the_definition():
    x = images(0)
    y = (x + 0.3 * images(1)).clamp(-1, 1)
    got = ssim(x, y)
    expected = [reference_ssim(a.numpy(), b.numpy(), 2.0) for a, b in zip(x, y)]
    assert got.shape == (2,)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_ssim_of_identical_images_is_one_and_falls_with_noise():
    x = images(2)
    torch.testing.assert_close(ssim(x, x), torch.ones(2))
    mild, strong = (x + 0.05 * images(3)).clamp(-1, 1), (x + 0.5 * images(3)).clamp(-1, 1)
    assert (ssim(x, mild) > ssim(x, strong)).all() and (ssim(x, strong) < 0.9).all()


def test_ssim_is_differentiable():
    x = images(4).requires_grad_(True)
    (1 - ssim(x, images(5))).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_psnr_of_a_known_error():
    x = images(6)
    y = x + 0.1  # MSE 0.01, peak 2: 10 log10(4 / 0.01) = 26.02 dB
    torch.testing.assert_close(psnr(x, y), torch.full((2,), 10 * math.log10(400)))
    assert math.isinf(float(psnr(x, x)[0])) and mean_finite(torch.tensor([float("inf"), 20.0, 30.0])) == 25.0


@pytest.mark.parametrize("shape", [(3, 16, 16), (1, 3, 8, 8)])
def test_bad_shapes_are_named(shape):
    x = torch.zeros(shape)
    with pytest.raises(ValueError, match="SSIM needs images of at least 11x11|two \\[B, C, H, W\\]"):
        ssim(x, x)
