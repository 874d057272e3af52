"""The one PSNR / SSIM / TV implementation (monai_dmilo.metrics) against known values."""
from __future__ import annotations

import math

import pytest
import torch

from monai_dmilo.metrics import mean_abs_gradient, psnr, ssim, total_variation


def test_psnr_of_a_known_error_and_over_leading_dimensions():
    reference = torch.zeros(2, 1, 8, 8)
    x = torch.full((2, 1, 8, 8), 0.1)
    x[1] = 0.2
    expected = torch.tensor([10 * math.log10(4 / 0.01), 10 * math.log10(4 / 0.04)])
    torch.testing.assert_close(psnr(x, reference, data_range=2.0), expected, rtol=1e-5, atol=1e-5)
    trace = torch.stack([x, x / 2])  # (T, B, C, H, W)
    assert psnr(trace, reference, data_range=2.0).shape == (2, 2)
    # the same images on [0, 1] with data range 1 give the same PSNR (the handlers' convention)
    torch.testing.assert_close(psnr((x + 1) / 2, (reference + 1) / 2, data_range=1.0), expected, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="same \\(C, H, W\\)"):
        psnr(x, torch.zeros(2, 1, 4, 4), data_range=1.0)


def test_ssim_is_one_for_identical_images_and_lower_for_noisy_ones():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 1, 32, 32, generator=g)
    noisy = (image + 0.2 * torch.randn(image.shape, generator=g)).clamp(0, 1)
    torch.testing.assert_close(ssim(image, image, data_range=1.0), torch.ones(2))
    assert (ssim(noisy, image, data_range=1.0) < 0.9).all()
    assert ssim(noisy, image, data_range=1.0, win_size=7).shape == (2,)


def test_total_variation_and_mean_abs_gradient_of_known_images():
    flat = torch.zeros(1, 1, 4, 4)
    step = torch.zeros(1, 1, 4, 4)
    step[..., 2:] = 1.0  # a vertical edge of length 4
    assert total_variation(flat).item() == 0.0
    assert total_variation(step).item() == pytest.approx(4.0)
    assert total_variation(flat, 1e-3).item() == pytest.approx(16e-3)
    # anisotropic means: 4 unit jumps among the 12 horizontal differences, none vertical
    assert mean_abs_gradient(step).item() == pytest.approx(4 / 12)
