"""Measurement noise, applied once when a measurement is simulated (solvers only ever call ``A``).

Every model draws its noise on the CPU from ``torch.Generator().manual_seed(seed_b)`` for each
sample ``b`` and moves it to the measurement's device, so a sample gets the same noise alone or in
a batch and on any device. Registered names: ``gaussian`` (``sigma``), ``poisson`` (``scale``),
``none``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from monai_dmilo.seeds import per_sample_seeds
from .base import check_tensor

__all__ = ["GaussianNoise", "PoissonNoise", "NoNoise", "NOISE_MODELS", "build_noise"]


class _Noise(nn.Module):
    def forward(self, y: torch.Tensor, *, seed: int | Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Noisy ``y`` (same shape and dtype); ``seed``: one int ``s`` (samples ``s, s + 1, ...``) or one
        int per sample (dim 0), see :mod:`monai_dmilo.seeds`."""
        check_tensor(y, name="y")
        if y.ndim == 0:
            raise ValueError("y must have a batch dimension, got a scalar.")
        seeds = per_sample_seeds(seed, y.shape[0])
        return torch.stack([self._apply(y[b], torch.Generator().manual_seed(s)) for b, s in enumerate(seeds)])

    def _apply(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class NoNoise(_Noise):
    """No noise: returns ``y`` unchanged."""

    def _apply(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return y


class GaussianNoise(_Noise):
    """Additive white Gaussian noise ``y + sigma * n``.

    ``sigma`` is in the units of ``y``: for images on the ``[-1, 1]`` scale the paper uses 0.01.
    For complex ``y`` the real and imaginary parts each get independent ``N(0, sigma^2)`` noise
    (matching the data-fit ``view_as_real(r).square()``).

    Args:
        sigma: standard deviation, ``>= 0``.
    """

    def __init__(self, sigma: float = 0.01) -> None:
        super().__init__()
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma >= 0:
            raise ValueError(f"sigma must be a number >= 0, got {sigma!r}.")
        self.sigma = float(sigma)

    def _apply(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if y.is_complex():
            real = torch.randn(*y.shape, 2, generator=generator, dtype=y.real.dtype)
            noise = torch.view_as_complex(real)
        else:
            noise = torch.randn(y.shape, generator=generator, dtype=y.dtype)
        return y + self.sigma * noise.to(y.device)


class PoissonNoise(_Noise):
    """Shot noise ``Poisson(scale * y) / scale`` (mean ``y``, variance ``y / scale``).

    ``scale`` is the photon count of a measurement value of 1: larger means less noise. ``y`` must
    be real and non-negative (map images to ``[0, 1]`` first; a ``[-1, 1]`` image is rejected).

    Args:
        scale: counts per unit intensity, ``> 0``.
    """

    def __init__(self, scale: float = 100.0) -> None:
        super().__init__()
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ValueError(f"scale must be a number > 0, got {scale!r}.")
        self.scale = float(scale)

    def _apply(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if y.is_complex():
            raise TypeError(f"Poisson noise needs a real measurement, got dtype {y.dtype}.")
        low = float(y.min())
        if low < 0:
            raise ValueError(f"Poisson noise needs y >= 0, got a minimum of {low:.4g}; map the data to [0, 1] first.")
        counts = torch.poisson((self.scale * y).detach().cpu(), generator=generator)
        return (counts / self.scale).to(device=y.device, dtype=y.dtype)


NOISE_MODELS: dict[str, Callable[..., _Noise]] = {
    "gaussian": GaussianNoise,
    "poisson": PoissonNoise,
    "none": NoNoise,
}


def build_noise(name: str | None, **params) -> _Noise:
    """Builds a noise model by name (``gaussian``, ``poisson``, ``none``/None)."""
    from monai.utils import look_up_option

    if name is None:
        return NoNoise()
    return look_up_option(name, NOISE_MODELS)(**params)
