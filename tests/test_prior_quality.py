"""Sample-quality measures on tiny inputs with known answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_dmilo.priors import quality as pq
from monai_dmilo.metrics import mean_abs_gradient


def _smooth(n: int, size: int = 16) -> torch.Tensor:
    """``(n, 1, size, size)`` smooth blobs in [-1, 1]."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    radii = torch.linspace(0.3, 0.7, n).view(n, 1, 1, 1)
    return (torch.exp(-(xx**2 + yy**2) / radii**2) * 2 - 1).clamp(-1, 1)


def test_mean_abs_gradient_of_known_images():
    flat = -torch.ones(1, 1, 4, 4)
    assert mean_abs_gradient(flat).item() == 0.0
    stripes = torch.tensor([[-1.0, 1.0, -1.0, 1.0]]).repeat(4, 1)[None, None]   # vertical stripes
    # horizontal differences all 2, vertical all 0
    assert mean_abs_gradient(stripes).item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="N, C, H, W"):
        mean_abs_gradient(torch.zeros(4, 4))


def test_speckle_fraction_counts_speckled_and_not_smooth_images():
    reference = _smooth(20)
    speckled = reference[:4].clone()
    gen = torch.Generator().manual_seed(0)
    salt = torch.rand(speckled.shape, generator=gen) < 0.1
    speckled[salt] = 1.0
    samples = torch.cat([reference[5:11], speckled])                 # 6 smooth + 4 speckled
    fraction, threshold = pq.speckle_fraction(samples, reference)
    assert fraction == pytest.approx(0.4)
    assert threshold == pytest.approx(float(np.percentile(mean_abs_gradient(reference).numpy(), 99)))
    assert pq.speckle_fraction(reference, reference, percentile=100.0)[0] == 0.0


def test_frechet_distance_of_a_set_with_itself_is_zero_and_of_a_shift_is_its_square():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(2000, 8, generator=gen)
    assert pq.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shift = torch.zeros(8)
    shift[0] = 3.0
    assert pq.frechet_distance(a, a + shift) == pytest.approx(9.0, rel=1e-6)
    # two Gaussians with variances 1 and 4 in one dimension: (1 + 4 - 2 * 2) = 1 per dimension
    b = torch.randn(200_000, 1, generator=gen)
    assert pq.frechet_distance(b, 2 * torch.randn(200_000, 1, generator=gen)) == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError, match="features"):
        pq.frechet_distance(a, a[:, :4])


def test_classifier_features_and_training_learn_a_separable_task():
    gen = torch.Generator().manual_seed(0)
    images = _smooth(2, size=16).repeat(40, 1, 1, 1) + 0.05 * torch.randn(80, 1, 16, 16, generator=gen)
    labels = torch.tensor([0, 1]).repeat(40)
    model = pq.train_classifier(images, labels, epochs=8, batch_size=16)
    with torch.no_grad():
        assert (model(images).argmax(1) == labels).float().mean() == 1.0
    assert pq.classifier_features(model, images, batch_size=7).shape == (80, 64)


def test_heldout_eps_mse_of_a_perfect_and_a_zero_denoiser():
    """A network that returns the true noise has eps-MSE 0; one that returns 0 has the noise's energy ~1."""
    abar = torch.linspace(0.99, 0.01, 1000)
    images = torch.zeros(500, 1, 8, 8)                    # x = 0: the noisy input is sqrt(1 - abar) eps

    class Oracle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.dummy = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, t):
            return x / (1 - abar[t]).sqrt().view(-1, 1, 1, 1)

    class Zero(Oracle):
        def forward(self, x, t):
            return torch.zeros_like(x)

    assert pq.heldout_eps_mse(Oracle(), images, abar) == pytest.approx(0.0, abs=1e-10)
    assert pq.heldout_eps_mse(Zero(), images, abar) == pytest.approx(1.0, abs=0.02)
