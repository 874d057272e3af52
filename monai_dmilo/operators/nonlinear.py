"""Nonlinear forward models: oversampled Fourier phase retrieval and any user ``nn.Module``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import ForwardOperator, check_image
from .mri import fft2c

__all__ = ["PhaseRetrieval", "ModuleOperator"]


class PhaseRetrieval(ForwardOperator):
    """Fourier magnitudes of the zero-padded image: ``y = |F(pad(x))|``.

    ``pad`` centres ``x`` in a grid of ``round(oversampling * H) x round(oversampling * W)`` zeros
    and ``F`` is the centred orthonormal 2D FFT. Nonlinear (no adjoint). ``abs`` has a zero
    (sub)gradient where a Fourier coefficient vanishes.

    Args:
        oversampling: padding factor ``>= 1`` (2 is the usual choice).

    Shapes:
        ``(B, C, H, W) -> (B, C, round(oversampling H), round(oversampling W))``, real.
    """

    def __init__(self, oversampling: float = 2.0) -> None:
        super().__init__()
        if (
            isinstance(oversampling, bool)
            or not isinstance(oversampling, (int, float))
            or not (math.isfinite(oversampling) and oversampling >= 1)
        ):
            raise ValueError(f"oversampling must be a finite number >= 1, got {oversampling!r}.")
        self.oversampling = float(oversampling)

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """The size of the oversampled Fourier grid."""
        return round(self.oversampling * height), round(self.oversampling * width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, C, H', W')``."""
        check_image(x)
        height, width = x.shape[-2:]
        ph, pw = self.padded_size(height, width)
        top, left = (ph - height) // 2, (pw - width) // 2
        padded = F.pad(x, (left, pw - width - left, top, ph - height - top))
        return fft2c(padded).abs()


class ModuleOperator(ForwardOperator):
    """Any ``nn.Module`` used as the forward model ``A`` (e.g. a learned nonlinear blur).

    The module is frozen for the operator's purpose only in the sense that solvers never optimise
    it; call ``module.requires_grad_(False)`` yourself to avoid accumulating its gradients.

    Args:
        module: maps ``(B, C, H, W)`` images to measurements.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}.")
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> module(x)``."""
        check_image(x)
        return self.module(x)
