"""Cartesian MRI: ``y = M ⊙ F(S x)`` with the centred orthonormal 2D FFT ``F``.

Domain and adjoint. The operator is complex-linear on complex images ``(B, 1, H, W)``
(``(B, C, H, W)`` single-coil); a real ``x`` is cast to complex first. :meth:`MRI.adjoint`
returns the complex adjoint ``A^H y = sum_c conj(S_c) F^H (M ⊙ y_c)`` always, also for real
inputs: an algorithm working on real images (the real-linear map ``R^n -> C^m``) uses its real
part, ``A.adjoint(y).real``, which is then exactly the adjoint for ``<u, v> = Re(sum conj(u) v)``
and equals autograd's vector-Jacobian product.
"""

from __future__ import annotations

import math

from typing import Sequence

import torch

from . import views
from .base import LinearOperator, as_real_parameter, check_image, check_tensor, complex_dtype_of, real_dtype_of

__all__ = ["MRI", "fft2c", "ifft2c", "simulate_coil_maps"]


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal 2D FFT over the last two dimensions."""
    dims = (-2, -1)
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=dims), norm="ortho"), dim=dims)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Centred orthonormal inverse 2D FFT (the adjoint and inverse of :func:`fft2c`)."""
    dims = (-2, -1)
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=dims), norm="ortho"), dim=dims)


def simulate_coil_maps(
    spatial_size: tuple[int, int], num_coils: int = 8, *, width: float = 0.6, dtype: torch.dtype = torch.complex64
) -> torch.Tensor:
    """Smooth synthetic coil sensitivities ``(num_coils, H, W)`` normalised to ``sum_c |S_c|^2 = 1``.

    Coils sit evenly on a circle around the image; each has a Gaussian magnitude fall-off (``width``
    relative to the image size) and a linear phase, so ``S^H S = I`` and the images stay recoverable.
    """
    if isinstance(num_coils, bool) or not isinstance(num_coils, int) or num_coils < 1:
        raise ValueError(f"num_coils must be a positive integer, got {num_coils!r}.")
    height, width_px = spatial_size
    rows = torch.linspace(-1, 1, height, dtype=torch.float64)[:, None]
    cols = torch.linspace(-1, 1, width_px, dtype=torch.float64)[None, :]
    maps = []
    for c in range(num_coils):
        angle = 2 * math.pi * c / num_coils
        cy, cx = 1.2 * math.sin(angle), 1.2 * math.cos(angle)
        magnitude = torch.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / (2 * width**2))
        phase = angle + 0.5 * (rows * math.cos(angle) - cols * math.sin(angle))
        maps.append(torch.polar(magnitude, phase))
    stacked = torch.stack(maps)
    stacked = stacked / stacked.abs().square().sum(0, keepdim=True).sqrt()
    return stacked.to(dtype)


class MRI(LinearOperator):
    """Undersampled Cartesian k-space, single- or multi-coil.

    Args:
        mask: real sampling mask broadcastable to the k-space ``(B, coils, H, W)``: ``(W,)`` (columns),
            ``(H, W)``, channel-first ``(1|coils, H|1, W)`` shared by the batch (as
            :func:`~monai_dmilo.operators.kspace_mask` returns), or ``(B|1, 1|coils, H|1, W)``.
        coil_maps: complex sensitivities ``(B|1, coils, H, W)``, or None for single-coil, where every
            channel of ``x`` is imaged on its own (``coils = C``).

    Shapes:
        ``x (B, 1, H, W)`` real or complex (``(B, C, H, W)`` without coil maps) ``->
        y (B, coils, H, W)`` complex64 (complex128 for float64/complex128 inputs).
    """

    batch_keys = ("mask", "coil_maps")
    optional_batch_keys = ("coil_maps",)

    def view(self, y: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """The zero-filled image ``Re A^* y``, min-max scaled."""
        return views.zero_filled_view(y, self)

    def __init__(self, mask: torch.Tensor, coil_maps: torch.Tensor | None = None) -> None:
        super().__init__()
        self.mask = as_real_parameter(mask, name="mask", ndim=(1, 2, 3, 4))
        if coil_maps is not None:
            check_tensor(coil_maps, name="coil_maps", ndim=4)
        self.coil_maps = coil_maps

    def _mask(self, batch: int, coils: int, height: int, width: int, ref: torch.Tensor, name: str) -> torch.Tensor:
        mask = self.mask
        if self.mask.ndim == 1:
            mask = self.mask.reshape(1, 1, 1, -1)
        elif self.mask.ndim < 4:  # (H, W) or channel-first (C, H, W): one mask for the whole batch
            mask = self.mask.reshape(1, *(1,) * (3 - self.mask.ndim), *self.mask.shape)
        ok = (
            mask.shape[0] in (1, batch)
            and mask.shape[1] in (1, coils)
            and mask.shape[2] in (1, height)
            and mask.shape[3] == width
        )
        if not ok:
            raise ValueError(
                f"mask of shape {tuple(self.mask.shape)} does not match the k-space of {name} "
                f"(B, coils, H, W) = {(batch, coils, height, width)}; expected (W,), (H, W), "
                f"({coils} or 1, {height} or 1, {width}) or ({batch} or 1, {coils} or 1, {height} or 1, {width})."
            )
        return mask.to(device=ref.device, dtype=real_dtype_of(ref))

    def _coil_maps(self, batch: int, height: int, width: int, ref: torch.Tensor, name: str) -> torch.Tensor | None:
        if self.coil_maps is None:
            return None
        maps = self.coil_maps
        if maps.shape[0] not in (1, batch) or maps.shape[-2:] != (height, width):
            raise ValueError(
                f"coil_maps of shape {tuple(maps.shape)} do not match {name} with batch {batch} and "
                f"image size {(height, width)}; expected ({batch} or 1, coils, {height}, {width})."
            )
        return maps.to(device=ref.device, dtype=complex_dtype_of(ref))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, coils, H, W)`` complex."""
        check_image(x)
        batch, channels, height, width = x.shape
        image = x.to(complex_dtype_of(x))
        maps = self._coil_maps(batch, height, width, x, "x")
        if maps is not None:
            if channels != 1:
                raise ValueError(
                    f"x of shape {tuple(x.shape)} has {channels} channels; "
                    "with coil_maps the image must have 1 channel."
                )
            image = image * maps
        kspace = fft2c(image)
        return kspace * self._mask(batch, kspace.shape[1], height, width, x, "x")

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``(B, coils, H, W) -> (B, 1, H, W)`` complex (``(B, C, H, W)`` single-coil)."""
        check_image(y, name="y")
        batch, coils, height, width = y.shape
        kspace = y.to(complex_dtype_of(y)) * self._mask(batch, coils, height, width, y, "y")
        image = ifft2c(kspace)
        maps = self._coil_maps(batch, height, width, y, "y")
        if maps is None:
            return image
        if maps.shape[1] != coils:
            raise ValueError(f"y of shape {tuple(y.shape)} has {coils} coils but coil_maps have {maps.shape[1]}.")
        return (image * maps.conj()).sum(dim=1, keepdim=True)

    def keep_measured(self, y: torch.Tensor) -> torch.Tensor:
        """``y`` with the k-space entries outside the mask set to zero."""
        check_image(y, name="y")
        batch, coils, height, width = y.shape
        return y * (self._mask(batch, coils, height, width, y, "y") != 0)
