"""Sample-quality measures of a diffusion prior (evaluation code: never used by a solver).

* :func:`speckle_fraction`: the fraction of samples whose roughness (anisotropic TV, mean absolute
  horizontal + vertical difference, :func:`monai_dmilo.metrics.mean_abs_gradient`) exceeds a
  percentile of real held-out images' -- speckled samples are far rougher than any real image.
* :func:`frechet_distance` between two feature sets (Gaussian fits), and
  :class:`FeatureClassifier`, a small CNN trained here whose penultimate layer gives the features
  (a "classifier Fréchet distance": not FID, which needs Inception weights).
* :func:`heldout_eps_mse`: the denoising loss on held-out images.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from monai_dmilo.metrics import mean_abs_gradient

__all__ = [
    "speckle_fraction",
    "frechet_distance",
    "FeatureClassifier",
    "train_classifier",
    "classifier_features",
    "heldout_eps_mse",
]


def speckle_fraction(samples: torch.Tensor, reference: torch.Tensor, *, percentile: float = 99.0
                     ) -> tuple[float, float]:
    """Fraction of ``samples`` whose TV exceeds the ``percentile`` of ``reference`` images' TV.

    Args:
        samples, reference: ``(N, C, H, W)`` images on the same intensity scale ([-1, 1] here).
        percentile: of the reference TVs, in (0, 100].

    Returns:
        ``(fraction, threshold)``.
    """
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}.")
    threshold = float(np.percentile(mean_abs_gradient(reference.float()).cpu().numpy(), percentile))
    fraction = float((mean_abs_gradient(samples.float()) > threshold).float().mean())
    return fraction, threshold


def frechet_distance(features_a: torch.Tensor | np.ndarray, features_b: torch.Tensor | np.ndarray) -> float:
    """``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` of two ``(N, D)`` feature sets."""
    from scipy import linalg

    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be (N, D) arrays of one D, got {a.shape} and {b.shape}.")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = np.real(linalg.sqrtm(cov_a @ cov_b))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2.0 * root))


class FeatureClassifier(nn.Module):
    """A small CNN classifier of ``(B, C, H, W)`` images in [-1, 1].

    ``features`` gives the ``(B, width)`` penultimate layer before its ReLU (no dead, constant
    dimensions, so the feature covariance stays full rank).
    """

    def __init__(self, *, in_channels: int = 1, num_classes: int = 10, width: int = 64) -> None:
        super().__init__()

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.body = nn.Sequential(
            *block(in_channels, 32), nn.MaxPool2d(2), *block(32, 64), nn.MaxPool2d(2), *block(64, 128),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, width),
        )
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(width, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train_classifier(images: torch.Tensor, labels: torch.Tensor, *, epochs: int = 4, batch_size: int = 128,
                     lr: float = 1e-3, seed: int = 0) -> FeatureClassifier:
    """Train a :class:`FeatureClassifier` on ``(N, C, H, W)`` images and ``(N,)`` integer labels."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = FeatureClassifier(in_channels=images.shape[1], num_classes=int(labels.max()) + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=gen)
        for idx in order.split(batch_size):
            loss = nn.functional.cross_entropy(model(images[idx]), labels[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@torch.no_grad()
def classifier_features(model: FeatureClassifier, images: torch.Tensor, *, batch_size: int = 500) -> torch.Tensor:
    """Penultimate features ``(N, width)`` of ``(N, C, H, W)`` images."""
    return torch.cat([model.features(x) for x in images.split(batch_size)])


@torch.no_grad()
def heldout_eps_mse(network: nn.Module, images: torch.Tensor, alphas_cumprod: torch.Tensor, *, seed: int = 0,
                    batch_size: int = 250) -> float:
    """Mean ``||eps - network(sqrt(abar_t) x + sqrt(1 - abar_t) eps, t)||^2 / D`` over ``(N, C, H, W)`` images.

    ``t ~ U{0..T-1}`` and ``eps ~ N(0, I)`` are drawn from ``seed`` (the same draws for every prior).
    Only the first ``C`` output channels are read (learned-variance networks output ``2C``).
    """
    device = next(network.parameters()).device
    abar = alphas_cumprod.float().cpu()
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for x in images.split(batch_size):
        noise = torch.randn(x.shape, generator=gen)
        t = torch.randint(0, len(abar), (x.shape[0],), generator=gen)
        a = abar[t].view(-1, 1, 1, 1)
        noisy = (a.sqrt() * x + (1 - a).sqrt() * noise).to(device)
        pred = network(noisy, t.to(device))[:, : x.shape[1]].cpu()
        total += float(((pred - noise) ** 2).mean(dim=(1, 2, 3)).sum())
    return total / len(images)

