"""How a measurement ``y`` is shown in a panel: images ``(B, C', H, W)`` in [0, 1].

Each operator's :meth:`~.base.ForwardOperator.view` picks one of these; ``shape`` is the image's
``(C, H, W)``.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F

__all__ = ["to_unit", "minmax", "image_view", "zero_filled_view", "sinogram_view"]


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clipped."""
    return ((x.detach().float() + 1.0) / 2.0).clamp(0.0, 1.0)


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Each sample scaled to [0, 1] by its own minimum and maximum."""
    x = x.detach().float()
    dims = tuple(range(1, x.ndim))
    lo = x.amin(dim=dims, keepdim=True)
    hi = x.amax(dim=dims, keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-12)


def _resize_to(x: torch.Tensor, size: Sequence[int], mode: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    return F.interpolate(x, size=tuple(size), mode=mode, **kwargs)


def image_view(y: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``y`` that lives in image space (a masked or blurred image, a low-resolution image shown at
    full size by nearest neighbour), on the [-1, 1] scale."""
    return to_unit(_resize_to(y.real if y.is_complex() else y, shape[-2:], "nearest"))


def zero_filled_view(y: torch.Tensor, operator: Any) -> torch.Tensor:
    """The real part of ``A^* y``, min-max scaled (MRI: the zero-filled image).

    The images are real and in [-1, 1] with a dark background at -1; a magnitude would fold that
    background to bright, the real part keeps the image's contrast (plus its aliasing).
    """
    x = operator.adjoint(y)
    return minmax(x.real if x.is_complex() else x)


def sinogram_view(y: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """A measurement that is not an image (a CT sinogram, ``|y|``): resized to the image's size
    and min-max scaled."""
    y = y.abs() if y.is_complex() else y
    if y.ndim == 3:
        y = y.unsqueeze(1)
    return minmax(_resize_to(y.float(), shape[-2:], "bilinear"))
