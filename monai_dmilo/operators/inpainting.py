"""Inpainting: ``y = m * x`` with a (binary or soft) mask ``m``."""

from __future__ import annotations

from typing import Sequence

import torch

from . import views
from .base import LinearOperator, _per_sample, as_real_parameter, check_image, real_dtype_of
from .linear_solve import Spectral

__all__ = ["Inpainting", "broadcast_mask"]


def broadcast_mask(mask: torch.Tensor, x: torch.Tensor, *, name: str = "mask", x_name: str = "x") -> torch.Tensor:
    """Checks that a mask ``(B|1, C|1, H, W)`` or ``(H, W)`` fits ``x (B, C, H, W)``; returns it 4D.

    The mask is moved to ``x``'s device and cast to ``x``'s real dtype.

    Raises:
        ValueError: the mask's shape does not broadcast against ``x``.
    """
    m = mask if mask.ndim == 4 else mask.reshape(1, 1, *mask.shape)
    batch, channels, height, width = x.shape
    ok = m.shape[-2:] == (height, width) and m.shape[0] in (1, batch) and m.shape[1] in (1, channels)
    if not ok:
        raise ValueError(
            f"{name} of shape {tuple(mask.shape)} does not match {x_name} of shape {tuple(x.shape)}; "
            f"expected (H, W) = {(height, width)} or ({batch} or 1, {channels} or 1, {height}, {width})."
        )
    return m.to(device=x.device, dtype=real_dtype_of(x))


class Inpainting(LinearOperator):
    """Pixel masking ``y = m ⊙ x``; self-adjoint (``A* = A``).

    Args:
        mask: ``(B, 1, H, W)`` (one mask shared by the channels), ``(B, C, H, W)``, or ``(H, W)``
            shared by the batch. 1 marks an observed pixel, 0 a hidden one.

    Example:
        >>> op = Inpainting(mask=torch.ones(1, 1, 8, 8))
        >>> op(torch.zeros(2, 3, 8, 8)).shape
        torch.Size([2, 3, 8, 8])
    """

    batch_keys = ("mask",)

    def view(self, y: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """The observed pixels (hidden ones at 0: mid grey)."""
        return views.image_view(y, shape)

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        mask = as_real_parameter(mask, name="mask", ndim=(2, 4))
        self.mask = mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``."""
        check_image(x)
        return x * broadcast_mask(self.mask, x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``; the same masking."""
        check_image(y, name="y")
        return y * broadcast_mask(self.mask, y, x_name="y")

    def proximal(self, z: torch.Tensor, y: torch.Tensor, rho: torch.Tensor | float) -> torch.Tensor:
        """Closed form of ``argmin_x ||m x - y||^2 + rho ||x - z||^2``: ``(m y + rho z) / (m^2 + rho)``."""
        m = broadcast_mask(self.mask, z, x_name="z")
        rho = _per_sample(rho, z)
        return (m * y + rho * z) / (m.square() + rho)

    def pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor:
        """``y / m`` where ``m != 0``, 0 elsewhere."""
        m = broadcast_mask(self.mask, y, x_name="y")
        return torch.where(m != 0, y / torch.where(m != 0, m, torch.ones_like(m)), torch.zeros_like(y))

    def svd(self, y: torch.Tensor) -> Spectral:
        """The structured SVD of a mask: ``V = I`` (pixels), singular values ``|m|``, ``ybar = y / m``."""
        m = broadcast_mask(self.mask, y, x_name="y").expand_as(y)
        shape = tuple(y.shape[1:])
        s = m.abs().flatten(1)
        ybar = self.pseudo_inverse(y).flatten(1)
        return Spectral(s=s, ybar=ybar, to_spectral=lambda x: x.flatten(1),
                        from_spectral=lambda xbar: xbar.view(-1, *shape))

    def keep_measured(self, y: torch.Tensor) -> torch.Tensor:
        """``y`` with the hidden pixels (mask 0) set to zero."""
        check_image(y, name="y")
        return y * (broadcast_mask(self.mask, y, x_name="y") != 0)
