"""Base classes of the forward operators ``A``.

An operator is a batched, differentiable ``nn.Module`` whose parameters (mask, kernel, ...)
are fixed at construction; calling it never changes it. Device and dtype follow the input.
"""
from __future__ import annotations

import torch
from torch import nn


class ForwardOperator(nn.Module):
    """A forward model ``y = A(x)`` on images ``x`` of shape ``(B, C, H, W)``.

    Subclasses implement :meth:`forward`. ``linear`` tells solvers whether :meth:`adjoint` exists.
    """

    linear: bool = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class LinearOperator(ForwardOperator):
    """A linear forward model with an exact adjoint ``A^*``."""

    linear = True

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Apply ``A^*`` to a measurement ``y``; returns an image-shaped tensor."""
        raise NotImplementedError
