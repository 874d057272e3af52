"""Blur kernel and mask generators."""

from __future__ import annotations

import pytest
import torch

from monai_dmilo.operators import box_mask, gaussian_kernel, kspace_mask, motion_kernel, random_pixel_mask


@pytest.mark.parametrize("size, std", [(9, 1.5), (8, 2.0), (64, 3.0)])
def test_gaussian_kernel_sums_to_one_and_is_symmetric(size, std):
    k = gaussian_kernel(size, std, dtype=torch.float64)
    assert k.shape == (size, size)
    torch.testing.assert_close(k.sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(k, k.T)
    torch.testing.assert_close(k, k.flip(0))
    torch.testing.assert_close(k, k.flip(1))
    centre = k[(size - 1) // 2, (size - 1) // 2]
    assert centre == k.max()


def test_gaussian_kernel_has_the_requested_spread():
    k = gaussian_kernel(41, 3.0, dtype=torch.float64)
    grid = torch.arange(41, dtype=torch.float64) - 20
    variance = (k.sum(0) * grid**2).sum()
    assert abs(variance.sqrt().item() - 3.0) < 1e-3


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), "3"])
def test_gaussian_kernel_rejects_bad_std(bad):
    with pytest.raises(ValueError, match="std"):
        gaussian_kernel(5, bad)


@pytest.mark.parametrize("size, intensity", [(15, 0.5), (16, 1.0), (32, 0.0)])
def test_motion_kernels_are_nonnegative_and_normalised(size, intensity):
    k = motion_kernel(size, intensity, seed=3)
    assert k.shape == (size, size)
    assert (k >= 0).all()
    torch.testing.assert_close(k.sum(), torch.tensor(1.0))
    assert (k > 0).sum() > 1  # a path, not a single pixel


def test_motion_kernels_repeat_for_a_seed_and_differ_across_seeds():
    a = motion_kernel(21, 0.5, seed=7)
    torch.testing.assert_close(a, motion_kernel(21, 0.5, seed=7))
    torch.testing.assert_close(a, motion_kernel(21, 0.5, seed=torch.Generator().manual_seed(7)))
    others = [motion_kernel(21, 0.5, seed=s) for s in range(8, 12)]
    assert all((a - other).abs().max() > 1e-3 for other in others)


def test_zero_intensity_motion_is_a_straight_line():
    k = motion_kernel(31, 0.0, seed=1, dtype=torch.float64)
    rows, cols = torch.nonzero(k > 1e-3 * k.max(), as_tuple=True)
    points = torch.stack((rows, cols), 1).double()
    points = points - points.mean(0)
    # the second singular value of a line's support is small compared to its length
    singular = torch.linalg.svdvals(points)
    assert singular[1] < 0.1 * singular[0]


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_motion_kernel_rejects_bad_intensity(bad):
    with pytest.raises(ValueError, match="intensity"):
        motion_kernel(9, bad)


@pytest.mark.parametrize("fraction", [0.0, 0.3, 0.7, 1.0])
def test_random_pixel_mask_hides_the_requested_fraction(fraction):
    mask = random_pixel_mask((20, 30), fraction, seed=0)
    assert mask.shape == (1, 20, 30)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert (mask == 0).sum().item() == round(fraction * 600)


def test_random_pixel_masks_are_seeded():
    a = random_pixel_mask((16, 16), 0.7, seed=1)
    torch.testing.assert_close(a, random_pixel_mask((16, 16), 0.7, seed=1))
    assert not torch.equal(a, random_pixel_mask((16, 16), 0.7, seed=2))


def test_box_mask_hides_one_box():
    mask = box_mask((16, 20), (4, 6), seed=0)
    hidden = torch.nonzero(mask[0] == 0)
    assert hidden.shape[0] == 24
    assert hidden[:, 0].max() - hidden[:, 0].min() == 3 and hidden[:, 1].max() - hidden[:, 1].min() == 5
    centred = box_mask((16, 16), hidden_fraction=0.25, random_position=False)
    assert (centred == 0).sum() == 64 and centred[0, 4:12, 4:12].sum() == 0
    with pytest.raises(ValueError, match="box_size"):
        box_mask((8, 8), (9, 2))


@pytest.mark.parametrize("pattern", ["random", "equispaced"])
@pytest.mark.parametrize("acceleration, center_fraction", [(4, 0.08), (8, 0.04)])
def test_kspace_masks_keep_the_centre_and_about_one_over_acceleration(pattern, acceleration, center_fraction):
    width = 256
    fractions = []
    for seed in range(5):
        mask = kspace_mask((8, width), acceleration, center_fraction, pattern=pattern, seed=seed)
        assert mask.shape == (1, 8, width)
        assert torch.equal(mask[0, 0], mask[0, -1])  # column mask
        num_low = round(width * center_fraction)
        start = (width - num_low + 1) // 2
        assert mask[0, 0, start : start + num_low].all()
        fractions.append(mask[0, 0].mean().item())
    mean = sum(fractions) / len(fractions)
    assert abs(mean - 1 / acceleration) < 0.35 / acceleration


def test_kspace_masks_are_seeded():
    a = kspace_mask((8, 64), 4, 0.08, seed=3)
    torch.testing.assert_close(a, kspace_mask((8, 64), 4, 0.08, seed=3))
    assert not torch.equal(a, kspace_mask((8, 64), 4, 0.08, seed=4))


def test_kspace_mask_errors():
    with pytest.raises(ValueError, match="acceleration"):
        kspace_mask((8, 64), 1, 0.08)
    with pytest.raises(ValueError, match="center_fraction"):
        kspace_mask((8, 64), 4, 0.5)
    with pytest.raises(ValueError, match="pattern"):
        kspace_mask((8, 64), 4, 0.08, pattern="radial")
