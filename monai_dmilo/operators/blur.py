"""Blur: 2D convolution with a (shared or per-sample) kernel, reflect padding, same-size output.

``y[i] = sum_j k[j] * xp[i + c - j]`` with the kernel centre ``c = k // 2`` (per axis) and ``xp``
the image extended by reflection. The padding is an index gather (adjoint: fold back with
``index_add``) and the convolution runs through the FFT on the padded grid, where it has no
wrap-around, so the adjoint is exact: correlate with the kernel, then fold the border back.
The result is differentiable in the image and in the kernel (blind deblurring).
"""

from __future__ import annotations

from typing import Sequence

import torch

from . import views
from .base import LinearOperator, as_real_parameter, check_image, real_dtype_of
from .padding import pad_along, pad_indices, unpad_along

__all__ = ["Blur", "fft_size"]


def fft_size(n: int) -> int:
    """The smallest ``m >= n`` whose prime factors are 2, 3 and 5 (fast FFT lengths)."""
    m = max(int(n), 1)
    while True:
        rest = m
        for p in (2, 3, 5):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return m
        m += 1


class Blur(LinearOperator):
    """Convolution ``(B, C, H, W) -> (B, C, H, W)`` with reflect padding.

    Args:
        kernel: ``(k, k)`` shared by the batch, or ``(B, k, k)`` one kernel per sample (shared by
            the channels); odd or even ``k``, also rectangular ``(kh, kw)``. The kernel may require
            gradients. Kernels wider than the image reflect the image repeatedly.

    Example:
        >>> from monai_dmilo.operators.kernels import gaussian_kernel
        >>> Blur(kernel=gaussian_kernel(9, 2.0))(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 3, 32, 32])
    """

    batch_keys = ("kernel",)

    def view(self, y: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """The blurred image."""
        return views.image_view(y, shape)

    def __init__(self, kernel: torch.Tensor) -> None:
        super().__init__()
        self.kernel = as_real_parameter(kernel, name="kernel", ndim=(2, 3))

    def _setup(self, x: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Checks the kernel against ``x`` and returns (kernel (B|1, 1, kh, kw), row idx, col idx)."""
        kernel = self.kernel if self.kernel.ndim == 3 else self.kernel.unsqueeze(0)
        batch = x.shape[0]
        height, width = x.shape[-2:]
        kh, kw = kernel.shape[-2:]
        if kernel.shape[0] not in (1, batch):
            raise ValueError(
                f"kernel of shape {tuple(self.kernel.shape)} has {kernel.shape[0]} per-sample kernels but "
                f"{name} has batch size {batch}; expected (k, k) or ({batch}, k, k)."
            )
        if kh > height or kw > width:
            raise ValueError(
                f"the blur kernel is {kh}x{kw} but the {name} image is {height}x{width}; expected a kernel no "
                "larger than the image (choose a task preset made for this image size)."
            )
        rows = pad_indices(height, kh - 1 - kh // 2, kh // 2, "reflect", device=x.device)
        cols = pad_indices(width, kw - 1 - kw // 2, kw // 2, "reflect", device=x.device)
        return kernel.to(device=x.device, dtype=real_dtype_of(x)).unsqueeze(1), rows, cols

    @staticmethod
    def _kernel_spectrum(kernel: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return torch.fft.rfft2(kernel, s=size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``."""
        check_image(x)
        kernel, rows, cols = self._setup(x, "x")
        height, width = x.shape[-2:]
        kh, kw = kernel.shape[-2:]
        padded = pad_along(pad_along(x, -2, rows), -1, cols)
        # Linear convolution through a circular one on a grid at least as large as the padded
        # image: the cropped samples never wrap around.
        size = (fft_size(rows.numel()), fft_size(cols.numel()))
        if x.is_complex():
            spectrum = torch.fft.fft2(padded, s=size) * torch.fft.fft2(kernel.to(x.dtype), s=size)
            full = torch.fft.ifft2(spectrum)
        else:
            full = torch.fft.irfft2(torch.fft.rfft2(padded, s=size) * self._kernel_spectrum(kernel, size), s=size)
        return full[..., kh - 1 : kh - 1 + height, kw - 1 : kw - 1 + width]

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``: correlation with the kernel, border folded back."""
        check_image(y, name="y")
        kernel, rows, cols = self._setup(y, "y")
        height, width = y.shape[-2:]
        kh, kw = kernel.shape[-2:]
        size = (fft_size(rows.numel()), fft_size(cols.numel()))
        embedded = y.new_zeros(*y.shape[:-2], *size)
        embedded[..., kh - 1 : kh - 1 + height, kw - 1 : kw - 1 + width] = y
        if y.is_complex():
            spectrum = torch.fft.fft2(embedded) * torch.fft.fft2(kernel.to(y.dtype), s=size).conj()
            full = torch.fft.ifft2(spectrum)
        else:
            full = torch.fft.irfft2(torch.fft.rfft2(embedded) * self._kernel_spectrum(kernel, size).conj(), s=size)
        full = full[..., : rows.numel(), : cols.numel()]
        return unpad_along(unpad_along(full, -1, cols, width), -2, rows, height)
