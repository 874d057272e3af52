"""Anti-aliased bicubic downsampling by an integer factor, MATLAB ``imresize`` style, exact adjoint.

For a factor ``s`` the output sample ``i`` (0-based) is centred on input coordinate
``u_i = i * s + (s - 1) / 2``. Its weights are the Keys cubic (``a = -0.5``) stretched by ``s``
(anti-aliasing): ``w(d) = cubic((d - (s - 1) / 2) / s) / s`` for the input offsets ``d = j - i s``,
normalised to sum to one; samples outside the image are mirrored with the edge repeated
(MATLAB's ``symmetric`` boundary). The map is separable, so it is stored as two small dense
matrices ``R_h (H/s, H)`` and ``R_w (W/s, W)``: ``A x = R_h x R_w^T`` and ``A* y = R_h^T y R_w``,
which makes the adjoint exact by construction.
"""

from __future__ import annotations

import math

from typing import Sequence

import torch

from . import views
from .base import LinearOperator, check_image, real_dtype_of

__all__ = ["SuperResolution", "cubic", "bicubic_antialias_weights", "downsampling_matrix"]


def cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys cubic convolution kernel with ``a = -0.5`` (MATLAB's ``cubic``), support ``[-2, 2]``."""
    ax = x.abs()
    ax2, ax3 = ax**2, ax**3
    near = 1.5 * ax3 - 2.5 * ax2 + 1.0
    far = -0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0
    return torch.where(ax <= 1, near, torch.where(ax < 2, far, torch.zeros_like(ax)))


def bicubic_antialias_weights(scale: int) -> tuple[torch.Tensor, int]:
    """The 1D weights (float64, sum 1) of downsampling by ``scale`` and the offset of the first tap.

    Output sample ``i`` is ``sum_k w[k] * x[i * scale + first + k]``.
    """
    centre = (scale - 1) / 2
    first = math.floor(centre - 2 * scale) + 1
    last = math.ceil(centre + 2 * scale) - 1
    offsets = torch.arange(first, last + 1, dtype=torch.float64)
    weights = cubic((offsets - centre) / scale) / scale
    return weights / weights.sum(), first


def downsampling_matrix(
    n: int, scale: int, *, dtype: torch.dtype = torch.float64, device: torch.device | None = None
) -> torch.Tensor:
    """The ``(n // scale, n)`` matrix of 1D anti-aliased bicubic downsampling (symmetric boundary)."""
    weights, first = bicubic_antialias_weights(scale)
    m = n // scale
    taps = weights.numel()
    cols = torch.arange(m).unsqueeze(1) * scale + first + torch.arange(taps).unsqueeze(0)  # (m, taps)
    cols = cols.remainder(2 * n)
    cols = torch.where(cols < n, cols, 2 * n - 1 - cols)
    rows = torch.arange(m).unsqueeze(1).expand(m, taps)
    matrix = torch.zeros(m, n, dtype=torch.float64)
    matrix.index_put_((rows.reshape(-1), cols.reshape(-1)), weights.repeat(m), accumulate=True)
    return matrix.to(device=device, dtype=dtype)


class SuperResolution(LinearOperator):
    """Anti-aliased bicubic downsampling ``(B, C, H, W) -> (B, C, H/s, W/s)``.

    Args:
        scale: the integer factor ``s >= 1``; ``H`` and ``W`` must be divisible by it.

    Example:
        >>> SuperResolution(scale=4)(torch.rand(1, 3, 64, 64)).shape
        torch.Size([1, 3, 16, 16])
    """


    def view(self, y: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """The low-resolution image at full size (nearest neighbour)."""
        return views.image_view(y, shape)

    def __init__(self, scale: int) -> None:
        super().__init__()
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise ValueError(f"scale must be an integer >= 1, got {scale!r}.")
        self.scale = scale
        self._matrix_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _matrices(self, height: int, width: int, ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The row and column matrices for ``ref``'s size, device and dtype; built once, then cached
        (building them on the CPU and copying to a GPU at every call would make the host wait)."""
        key = (height, width, ref.device, ref.dtype)
        if key not in self._matrix_cache:
            dtype = real_dtype_of(ref)
            rows = downsampling_matrix(height, self.scale, dtype=dtype, device=ref.device)
            cols = rows if width == height else downsampling_matrix(width, self.scale, dtype=dtype, device=ref.device)
            if ref.is_complex():
                rows, cols = rows.to(ref.dtype), cols.to(ref.dtype)
            self._matrix_cache[key] = (rows, cols)
        return self._matrix_cache[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, C, H / scale, W / scale)``."""
        check_image(x)
        height, width = x.shape[-2:]
        if height % self.scale or width % self.scale:
            raise ValueError(
                f"x of shape {tuple(x.shape)} cannot be downsampled by scale={self.scale}: "
                f"H and W must be divisible by {self.scale}."
            )
        rows, cols = self._matrices(height, width, x)
        return rows @ x @ cols.transpose(0, 1)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w) -> (B, C, h * scale, w * scale)``."""
        check_image(y, name="y")
        height, width = y.shape[-2] * self.scale, y.shape[-1] * self.scale
        rows, cols = self._matrices(height, width, y)
        return rows.transpose(0, 1) @ y @ cols
