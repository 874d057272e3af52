"""From measured multi-coil k-space to the real-valued inverse problem the magnitude priors solve.

Model (stated in the README): the complex image is ``m(r) exp(i phi(r))`` with a non-negative
magnitude ``m`` and a smooth phase ``phi`` that is estimated from the calibration region and held
fixed; the prior's image ``x`` in [-1, 1] is the magnitude scaled to [0, 1] by ``s`` (the
99.5th percentile of the SENSE magnitude over the object, as the priors' training data were
scaled): ``m = s (x + 1) / 2``. Then

    2 y / s = M F(S e^{i phi} (x + 1)) + 2 n / s = A'(x) + A'(1) + 2 n / s,   A' = M F S',  S' = S e^{i phi},

so the solvers get the linear ``mri`` operator ``A'`` (coil maps ``S'``, ``||A'|| <= 1`` like the
simulated ``mri`` task's, so its solver presets apply) and the measurement ``y' = 2 y / s - A'(1)``;
a reconstruction ``x`` gives back ``m = s (x + 1) / 2``.

Matrix size: k-space larger than the prior is cropped to the prior's size around its centre
(the low-frequency block: the whole field of view at a lower resolution), scaled by
``sqrt(H W / (h w))`` so that image intensities keep their units; the sampling mask is cropped
with it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..operators import kspace_mask
from ..operators.mri import MRI, fft2c, ifft2c
from .classical import (
    CS_TV_WEIGHTS, SENSE_WEIGHTS, check_weight, choose_weight, cs_tv, fit_intensity, sense, zero_filled_rss,
)
from .coils import calibration_phase, estimate_coil_maps
from .reader import describe_mask

__all__ = ["MagnitudeProblem", "crop_kspace", "crop_image_lowpass", "undersample", "zero_filled_rss", "sense",
           "cs_tv", "build_problem"]


def _centre_slices(full: int, size: int) -> slice:
    start = full // 2 - size // 2
    return slice(start, start + size)


def crop_kspace(kspace: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Centre ``size = (h, w)`` block of ``kspace`` ``(S, C, H, W)`` and of its ``mask``, intensity-preserving.

    Raises:
        ValueError: the k-space is smaller than ``size``.
    """
    height, width = kspace.shape[-2:]
    h, w = size
    if height < h or width < w:
        raise ValueError(f"k-space of {height}x{width} is smaller than the prior's {h}x{w}; use a prior of at most "
                         f"{height}x{width}.")
    rows, cols = _centre_slices(height, h), _centre_slices(width, w)
    cropped = kspace[..., rows, cols] * np.sqrt(h * w / (height * width))
    mask = mask[cols] if mask.ndim == 1 else mask[rows, cols]
    return np.ascontiguousarray(cropped, dtype=np.complex64), mask


def crop_image_lowpass(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Magnitude images ``(S, H, W)`` brought to ``size`` the way :func:`crop_kspace` brings k-space:
    the centre block of their 2D FFT, ``|inverse FFT|``; for references on the reconstruction grid."""
    t = torch.from_numpy(np.asarray(images, dtype=np.float32)).to(torch.complex64)[:, None]
    k = fft2c(t).numpy()
    cropped, _ = crop_kspace(k, np.ones(k.shape[-1], bool), size)
    return ifft2c(torch.from_numpy(cropped)).abs()[:, 0].numpy()


def undersample(kspace: np.ndarray, acceleration: float, center_fraction: float, *, pattern: str = "equispaced",
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Retrospective Cartesian undersampling of fully sampled ``kspace`` ``(S, C, H, W)`` along its
    columns (MONAI's k-space masks): ``(kspace with unsampled columns zeroed, mask (W,))``."""
    height, width = kspace.shape[-2:]
    mask = kspace_mask((height, width), acceleration, center_fraction, pattern=pattern, seed=seed)[0, 0].numpy() > 0
    return kspace * mask, mask


@dataclass
class MagnitudeProblem:
    """The real-valued problem of one file's slices on the prior's grid (see the module docstring).

    Attributes:
        y: ``(S, C, h, w)`` complex, the measurement ``y'`` the solvers see.
        operator: the ``mri`` operator ``A'`` (coil maps ``S' = S exp(i phi)``, the cropped mask).
        scale: ``s``, the magnitude that ``x = 1`` stands for.
        zero_filled, sense, cs_tv: the classical references' magnitudes ``(S, h, w)`` in the data's
            units (:mod:`.classical`, scaled by :func:`~.classical.fit_intensity`; ``cs_tv`` None
            unless asked for).
        weights: the references' weights per slice (``sense_tikhonov``, ``cs_tv_lam``), as chosen.
        acceleration, central: of the mask on the prior's grid.
    """

    y: torch.Tensor
    operator: MRI
    scale: float
    zero_filled: torch.Tensor
    sense: torch.Tensor
    acceleration: float
    central: int
    cs_tv: torch.Tensor | None = None
    weights: dict | None = None

    def magnitude(self, x: torch.Tensor) -> torch.Tensor:
        """Prior-scale images ``(S, 1, h, w)`` in [-1, 1] -> magnitudes ``(S, h, w)`` in the data's units."""
        return self.scale * (x[:, 0].clamp(-1, 1) + 1) / 2


def _object_percentile(magnitude: torch.Tensor, q: float = 99.5, floor: float = 0.1) -> float:
    values = magnitude.flatten()
    values = values[values > floor * values.max()]
    return float(torch.quantile(values.double(), q / 100))


def build_problem(kspace: np.ndarray, mask: np.ndarray, size: tuple[int, int], *, coil_maps: str = "lowres",
                  maps: np.ndarray | None = None, use_phase: bool = True, intensity_scale: float | None = None,
                  sense_iters: int = 30, sense_tikhonov: float | str = "auto",
                  cs_tv_lam: float | str | None = None, seed: int = 0) -> MagnitudeProblem:
    """Crop ``kspace`` ``(S, C, H, W)`` (unsampled entries zero) to ``size``, estimate the maps with the
    ``coil_maps`` method (or crop the given ``maps`` ``(S, C, H, W)``; the method is then unused) and
    the phase, compute the classical references and form the solvers' problem.

    ``sense_tikhonov`` / ``cs_tv_lam``: a weight, or ``"auto"`` for the k-space cross-validation rule
    per slice (:func:`~.classical.choose_weight`, folds seeded by ``seed``); ``cs_tv_lam=None``
    skips CS-TV."""
    k, m = crop_kspace(kspace, mask, size)
    k = torch.from_numpy(k)
    if maps is not None:
        mk, _ = crop_kspace(fft2c(torch.from_numpy(np.asarray(maps, np.complex64))).numpy(), mask, size)
        s_maps = ifft2c(torch.from_numpy(mk))
        s_maps = s_maps / s_maps.abs().square().sum(1, keepdim=True).sqrt().clamp_min(1e-12)
    else:
        s_maps = estimate_coil_maps(k, m, coil_maps)
    phase = calibration_phase(k, s_maps, m) if use_phase else torch.ones_like(s_maps[:, :1])
    mask_t = torch.from_numpy(m.astype(np.float32))
    weights = {"sense_tikhonov": _weight(sense_tikhonov, "sense_tikhonov", sense, k, s_maps, mask_t, SENSE_WEIGHTS,
                                         "tikhonov", seed, num_iters=sense_iters)}
    x_sense = fit_intensity(sense(k, s_maps, mask_t, num_iters=sense_iters, tikhonov=weights["sense_tikhonov"]),
                            k, s_maps, mask_t)
    x_tv = None
    if cs_tv_lam is not None:
        weights["cs_tv_lam"] = _weight(cs_tv_lam, "cs_tv_lam", cs_tv, k, s_maps, mask_t, CS_TV_WEIGHTS, "lam", seed,
                                       num_iters=200)
        x_tv = fit_intensity(cs_tv(k, s_maps, mask_t, lam=weights["cs_tv_lam"]), k, s_maps, mask_t).abs()[:, 0]
    scale = float(intensity_scale) if intensity_scale is not None else _object_percentile(x_sense.abs())
    if not scale > 0:
        raise ValueError(f"intensity_scale must be positive, got {scale!r} (is the k-space all zeros?).")
    operator = MRI(mask_t, coil_maps=s_maps * phase)
    ones = torch.ones(k.shape[0], 1, *size)
    y = 2 * k / scale - operator(ones)
    acceleration, central = describe_mask(m)
    return MagnitudeProblem(
        y=y, operator=operator, scale=scale, zero_filled=zero_filled_rss(k), sense=x_sense.abs()[:, 0],
        acceleration=acceleration, central=central, cs_tv=x_tv, weights={k: v.tolist() for k, v in weights.items()},
    )


def _weight(value, name, method, kspace, maps, mask, grid, keyword, seed, **kwargs) -> torch.Tensor:
    """``value`` per slice ``(S,)``: the number given, or the cross-validated choice for ``"auto"``."""
    check_weight(name, value)
    if value == "auto":
        return choose_weight(method, kspace, maps, mask, grid, keyword=keyword, seed=seed, **kwargs)
    return torch.full((kspace.shape[0],), float(value))
