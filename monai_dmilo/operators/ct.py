"""Parallel-beam CT projection (sparse-view Radon transform) with its exact back-projection.

Geometry. Pixel ``(r, c)`` has its centre at ``(r, c)``; the rotation centre is the image centre
``((H - 1) / 2, (W - 1) / 2)``. For the angle ``theta`` (degrees) and the detector offset ``s``
(pixels; ``num_detectors`` bins of width 1 centred on the rotation centre), the ray is

    column = c0 + s cos(theta) - t sin(theta),   row = r0 + s sin(theta) + t cos(theta)

sampled at unit steps ``t`` over the image diagonal; the projection is the sum of the bilinearly
interpolated image (zero outside it) over those samples. At ``theta = 0`` it is the column sums.

Conventions (``convention=``). ``"centred"`` (default) is the geometry above. ``"skimage"`` is that
of scikit-image's ``radon(image, theta, circle=False)`` and DeepInverse's ``Tomography``: the angle
runs the other way (``theta`` there is ``-theta`` here), the rotation centre is pixel
``(H // 2, W // 2)`` and there are ``ceil(sqrt(2) max(H, W))`` detectors at offsets
``k - D // 2``; for even sizes that is one detector fewer than ``"centred"`` (91 vs 92 at 64 x 64)
and a centre half a pixel off. scikit-image returns ``(detectors, angles)``; here the sinogram is
``(B, C, angles, detectors)`` in both conventions, so transpose its output to compare.

Bilinear sampling at fixed points is a sparse linear map ``P`` (four weights per sample). The
forward pass samples with ``grid_sample`` (``align_corners=True`` so normalised coordinates map
exactly onto pixel centres) and sums along each ray. The back-projection ``P^T`` is the
scatter-add of the same weights, computed by PyTorch's grid-sampler input-gradient kernel
(``aten.grid_sampler_2d_backward``) wrapped in an autograd function whose own backward is the
forward sampling, so both ``A`` and ``A*`` are differentiable. Angles are processed in chunks so
memory stays bounded.
"""

from __future__ import annotations

import math

from typing import Sequence

import torch
import torch.nn.functional as F

from . import views
from .base import LinearOperator, as_real_parameter, check_image

__all__ = ["CT"]

_CHUNK_ELEMENTS = 2**24  # samples (x batch x channels) per chunk of angles
CONVENTIONS = ("centred", "skimage")


class _SampleTranspose(torch.autograd.Function):
    """``P^T v`` for the bilinear sampling ``P x = grid_sample(x, grid)``: the exact scatter-add."""

    @staticmethod
    def forward(ctx, values: torch.Tensor, grid: torch.Tensor, height: int, width: int) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(grid)
        batch, channels = values.shape[:2]
        like = values.new_zeros(batch, channels, height, width)  # only its shape/dtype/device are used
        image, _ = torch.ops.aten.grid_sampler_2d_backward(values, like, grid, 0, 0, True, [True, False])
        return image

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (grid,) = ctx.saved_tensors
        sampled = F.grid_sample(grad, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        return sampled, None, None, None


class CT(LinearOperator):
    """Parallel-beam projection ``(B, C, H, W) -> (B, C, num_angles, num_detectors)``.

    Args:
        angles: projection angles in degrees, ``(A,)`` shared by the batch or ``(B, A)`` per sample.
        num_detectors: detector bins (unit spacing); default: the smallest count ``>= sqrt(H^2 + W^2)``
            with the parity of ``W``, so every ray through the image is measured and at angle 0 each
            detector sees exactly one pixel column.
        image_size: ``(H, W)`` of the image domain, used by :meth:`adjoint`; default: the square
            image whose default detector count matches the sinogram.
        convention: ``"centred"`` or ``"skimage"`` (angle direction, rotation centre and detector
            count of scikit-image's ``radon(..., circle=False)``; see the module docstring).

    Example:
        >>> CT(angles=torch.linspace(0, 180, 6)[:-1])(torch.rand(1, 1, 32, 32)).shape
        torch.Size([1, 1, 5, 46])
    """

    batch_keys = ("angles",)
    optional_batch_keys = ("angles",)

    def view(self, y: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """The sinogram, resized to the image and min-max scaled."""
        return views.sinogram_view(y, shape)

    def __init__(
        self,
        angles: torch.Tensor,
        *,
        num_detectors: int | None = None,
        image_size: tuple[int, int] | None = None,
        convention: str = "centred",
    ) -> None:
        super().__init__()
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {list(CONVENTIONS)}, got {convention!r}.")
        self.convention = convention
        if not isinstance(angles, torch.Tensor):
            angles = torch.as_tensor(angles, dtype=torch.float64)
        self.angles = as_real_parameter(angles, name="angles", ndim=(1, 2))
        if self.angles.shape[-1] == 0:
            raise ValueError("angles must hold at least one angle, got an empty tensor.")
        if num_detectors is not None and (
            isinstance(num_detectors, bool) or not isinstance(num_detectors, int) or num_detectors < 1
        ):
            raise ValueError(f"num_detectors must be a positive integer or None, got {num_detectors!r}.")
        if image_size is not None and (
            len(tuple(image_size)) != 2 or not all(isinstance(s, int) and s > 0 for s in image_size)
        ):
            raise ValueError(f"image_size must be two positive ints (H, W) or None, got {image_size!r}.")
        self.num_detectors = num_detectors
        self.image_size = tuple(image_size) if image_size is not None else None

    def detectors(self, height: int, width: int) -> int:
        """Number of detector bins for an ``H x W`` image."""
        if self.num_detectors is not None:
            return self.num_detectors
        if self.convention == "skimage":
            return math.ceil(math.sqrt(2) * max(height, width))
        count = math.ceil(math.hypot(height, width) - 1e-9)
        return count + ((count - width) % 2)

    def _num_samples(self, height: int, width: int) -> int:
        """Samples per ray (unit steps)."""
        if self.convention == "skimage":
            return math.ceil(math.sqrt(2) * max(height, width))
        return math.ceil(math.hypot(height, width))

    def _angles(self, batch: int, name: str, device: torch.device) -> torch.Tensor:
        """Angles in radians, float64, ``(1 or B, A)``."""
        angles = self.angles if self.angles.ndim == 2 else self.angles.unsqueeze(0)
        if angles.shape[0] not in (1, batch):
            raise ValueError(
                f"angles of shape {tuple(self.angles.shape)} do not match {name} with batch size {batch}; "
                f"expected (A,) or ({batch}, A)."
            )
        return torch.deg2rad(angles.detach().to(device=device, dtype=torch.float64))

    def _grid(self, theta: torch.Tensor, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
        """Normalised sampling grid ``(1|B, a * D, T, 2)`` of the rays at angles ``theta (1|B, a)``."""
        device = theta.device
        num_det = self.detectors(height, width)
        num_t = self._num_samples(height, width)
        if self.convention == "skimage":
            theta = -theta
            det_centre, t_centre, centre_r, centre_c = num_det // 2, num_t // 2, height // 2, width // 2
        else:
            det_centre, t_centre, centre_r, centre_c = (num_det - 1) / 2, (num_t - 1) / 2, (height - 1) / 2, (width - 1) / 2
        cos, sin = torch.cos(theta)[..., None, None], torch.sin(theta)[..., None, None]
        s = torch.arange(num_det, device=device, dtype=torch.float64).view(-1, 1) - det_centre
        t = torch.arange(num_t, device=device, dtype=torch.float64).view(1, -1) - t_centre
        col = centre_c + s * cos - t * sin
        row = centre_r + s * sin + t * cos
        # align_corners=True: -1 and 1 are the centres of the first and last pixels.
        gx = col * (2 / (width - 1)) - 1 if width > 1 else col * 0
        gy = row * (2 / (height - 1)) - 1 if height > 1 else row * 0
        grid = torch.stack((gx, gy), dim=-1)  # (1|B, a, D, T, 2)
        return grid.reshape(theta.shape[0], -1, num_t, 2).to(dtype)

    def _chunks(self, num_angles: int, height: int, width: int, columns: int) -> list[slice]:
        per_angle = self.detectors(height, width) * self._num_samples(height, width) * max(columns, 1)
        step = max(1, _CHUNK_ELEMENTS // per_angle)
        return [slice(i, i + step) for i in range(0, num_angles, step)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, C, A, num_detectors)``."""
        check_image(x)
        if x.is_complex():
            raise TypeError(f"x must be real for the ct operator, got dtype {x.dtype}.")
        batch, channels, height, width = x.shape
        num_det = self.detectors(height, width)
        theta = self._angles(batch, "x", x.device)
        parts = []
        for chunk in self._chunks(theta.shape[1], height, width, batch * channels):
            grid = self._grid(theta[:, chunk], height, width, x.dtype).expand(batch, -1, -1, -1)
            sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            parts.append(sampled.sum(-1).reshape(batch, channels, -1, num_det))
        return torch.cat(parts, dim=2)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Back-projection ``(B, C, A, D) -> (B, C, H, W)`` onto images of size ``image_size``."""
        check_image(y, name="y")
        size = self.image_size or self._guess_size(y.shape[-1])
        return self.backproject(y, image_size=size)

    def _guess_size(self, num_det: int) -> tuple[int, int]:
        if self.num_detectors is None:
            side = int(num_det / math.sqrt(2))
            for candidate in range(max(side - 2, 1), side + 3):
                if self.detectors(candidate, candidate) == num_det:
                    return candidate, candidate
        raise ValueError(
            f"cannot infer the image size from a sinogram with {num_det} detectors; build the operator "
            f"with image_size=(H, W) or call backproject(y, image_size=(H, W))."
        )

    def backproject(self, y: torch.Tensor, *, image_size: tuple[int, int]) -> torch.Tensor:
        """The exact adjoint ``P^T y`` for images of size ``image_size = (H, W)``.

        Args:
            y: sinogram ``(B, C, A, D)``.
            image_size: ``(H, W)`` of the image domain.

        Returns:
            ``(B, C, H, W)``.
        """
        check_image(y, name="y")
        if y.is_complex():
            raise TypeError(f"y must be real for the ct operator, got dtype {y.dtype}.")
        height, width = image_size
        batch, channels, num_angles, num_det = y.shape
        if num_angles != self.angles.shape[-1] or num_det != self.detectors(height, width):
            raise ValueError(
                f"y of shape {tuple(y.shape)} does not match this operator: expected "
                f"(B, C, {self.angles.shape[-1]}, {self.detectors(height, width)}) for {height}x{width} images."
            )
        theta = self._angles(batch, "y", y.device)
        num_t = self._num_samples(height, width)
        image = None
        for chunk in self._chunks(num_angles, height, width, batch * channels):
            grid = self._grid(theta[:, chunk], height, width, y.dtype).expand(batch, -1, -1, -1).contiguous()
            values = y[:, :, chunk].reshape(batch, channels, -1, 1).expand(-1, -1, -1, num_t).contiguous()
            part = _SampleTranspose.apply(values, grid, height, width)
            image = part if image is None else image + part
        return image
