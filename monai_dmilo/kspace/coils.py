"""Coil sensitivities and the image phase from the fully sampled centre of multi-coil k-space.

* ``lowres`` (default): the coil images of the calibration region (the fully sampled central
  columns, and as many central rows), Hann-windowed and zero-filled, divided by their
  root-sum-of-squares: ``S_c = I_c / sqrt(sum_c |I_c|^2)``. Smooth, ``sum_c |S_c|^2 = 1`` where
  there is signal; the object's low-resolution phase ends up in the maps.
* ``jsense``: the ``lowres`` maps refined with all acquired samples, not only the calibration
  region (JSENSE, Ying and Sheng 2007, with the maps' k-space support as the smoothness model):
  ``rounds`` times, a strongly regularised SENSE image ``x`` (Tikhonov 0.3) is formed with the
  current maps, then each coil's map is refitted by least squares,
  ``min_g ||M F(x F^-1(P g_c)) - y_c||^2 + 1e-3 ||g_c||^2`` with ``P`` a centred ``support x
  support`` k-space box (at least 5, at least the calibration width), and the maps are normalised
  to ``sum_c |S_c|^2 = 1``. With 3 calibration columns on a 32 x 32 grid (4x) SENSE with these
  maps gains about 6 dB over SENSE with ``lowres`` maps (``docs/benchmarks/kspace_bart.md``).
* ``espirit``: ESPIRiT (Uecker et al. 2014) through ``sigpy.mri.app.EspiritCalib`` (an extra:
  ``pip install sigpy``); maps are zero outside the object's support.

The phase of the image left after coil combination, ``angle(sum_c conj(S_c) I_c)`` of the
calibration images, is smooth (low resolution) and is held fixed during reconstruction.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from ..operators.linear_solve import conjugate_gradient
from ..operators.mri import fft2c, ifft2c
from .reader import describe_mask

logger = logging.getLogger(__name__)

__all__ = ["COIL_MAP_METHODS", "refine_maps", "calibration_width", "calibration_images", "estimate_coil_maps", "calibration_phase"]


def calibration_width(mask: np.ndarray) -> int:
    """Number of fully sampled central columns of a column mask ``(W,)`` or ``(H, W)``.

    Raises:
        ValueError: fewer than 2, too few to estimate coil sensitivities from.
    """
    _, central = describe_mask(np.asarray(mask))
    if central < 2:
        raise ValueError(
            f"the sampling mask has {central} fully sampled central column(s); coil sensitivities need at "
            "least 2 (a calibration region): acquire more central lines (center_fraction)."
        )
    return central


def calibration_images(kspace: torch.Tensor, width: int) -> torch.Tensor:
    """Coil images ``(S, C, H, W)`` of the central ``width x width`` k-space, Hann-windowed, zero-filled."""
    height, cols = kspace.shape[-2:]
    size = min(width, height)
    window = torch.zeros(height, cols, dtype=torch.float64)
    r0, c0 = height // 2 - size // 2, cols // 2 - width // 2
    hann_r = torch.hann_window(size + 2, periodic=False, dtype=torch.float64)[1:-1]
    hann_c = torch.hann_window(width + 2, periodic=False, dtype=torch.float64)[1:-1]
    window[r0:r0 + size, c0:c0 + width] = hann_r[:, None] * hann_c[None, :]
    return ifft2c(kspace * window.to(kspace.real.dtype))


def _lowres_maps(kspace: torch.Tensor, width: int) -> torch.Tensor:
    return _normalised(calibration_images(kspace, width))


def _normalised(maps: torch.Tensor) -> torch.Tensor:
    rss = maps.abs().square().sum(1, keepdim=True).sqrt()
    return maps / rss.clamp_min(1e-6 * rss.flatten(1).amax(1).view(-1, 1, 1, 1))


def refine_maps(kspace: torch.Tensor, mask: np.ndarray, maps: torch.Tensor, *, rounds: int = 3,
                support: int = 5, tikhonov: float = 0.3, map_weight: float = 1e-3, num_iters: int = 30) -> torch.Tensor:
    """JSENSE refinement of ``maps`` ``(S, C, H, W)`` with all of ``kspace`` ``(S, C, H, W)`` (see the
    module docstring): ``(S, C, H, W)``, ``sum_c |S_c|^2 = 1``."""
    from .classical import sense

    height, width = kspace.shape[-2:]
    box = torch.zeros(height, width)
    rows, cols = min(support, height), min(support, width)
    box[height // 2 - rows // 2:height // 2 - rows // 2 + rows, width // 2 - cols // 2:width // 2 - cols // 2 + cols] = 1
    box = box.to(kspace.real.dtype)
    m = torch.as_tensor(np.asarray(mask), dtype=kspace.real.dtype)
    m = m.reshape(1, 1, 1, -1) if m.ndim == 1 else m
    y = kspace * m
    for _ in range(rounds):
        x = sense(kspace, maps, m, tikhonov=tikhonov)

        def forward(g: torch.Tensor) -> torch.Tensor:
            return m * fft2c(x * ifft2c(box * g))

        def normal(gr: torch.Tensor) -> torch.Tensor:
            g = torch.view_as_complex(gr.contiguous())
            return torch.view_as_real(box * fft2c(x.conj() * ifft2c(m * forward(g))) + map_weight * g)

        b = torch.view_as_real(box * fft2c(x.conj() * ifft2c(y)))
        start = torch.view_as_real(box * fft2c(maps))
        g = torch.view_as_complex(conjugate_gradient(normal, b, start, num_iters=num_iters).contiguous())
        maps = _normalised(ifft2c(box * g))
    return maps


def _jsense_maps(kspace: torch.Tensor, width: int, mask: np.ndarray) -> torch.Tensor:
    return refine_maps(kspace, mask, _lowres_maps(kspace, width), support=max(5, width))


def _espirit_maps(kspace: torch.Tensor, width: int) -> torch.Tensor:
    try:
        from sigpy.mri.app import EspiritCalib
    except ImportError:
        raise ImportError("coil_maps='espirit' needs sigpy: pip install sigpy (or use coil_maps='lowres').") from None
    maps = [
        EspiritCalib(k.numpy(), calib_width=int(width), show_pbar=False).run()
        for k in kspace.to(torch.complex64)
    ]
    maps = torch.from_numpy(np.stack(maps)).to(kspace.dtype)
    energy = maps.abs().square().sum(1)
    signal = calibration_images(kspace, width).abs().square().sum(1).sqrt()
    on_object = signal > 0.1 * signal.flatten(1).amax(1).view(-1, 1, 1)
    uncovered = float(((energy < 0.5) & on_object).sum() / on_object.sum().clamp_min(1))
    if uncovered > 0.1:
        logger.warning("ESPIRiT maps are zero on %.0f %% of the object: the calibration region (%d lines) is too "
                       "small for it; coil_maps='lowres' is more robust here", 100 * uncovered, width)
    return maps


COIL_MAP_METHODS = {"lowres": _lowres_maps, "jsense": _jsense_maps, "espirit": _espirit_maps}
NEEDS_MASK = {"jsense"}


def estimate_coil_maps(kspace: torch.Tensor, mask: np.ndarray, method: str = "lowres") -> torch.Tensor:
    """Sensitivities ``(S, C, H, W)`` complex of k-space ``(S, C, H, W)`` (centred) from its
    calibration region (the fully sampled central columns of ``mask``)."""
    if method not in COIL_MAP_METHODS:
        raise ValueError(f"coil_maps must be one of {sorted(COIL_MAP_METHODS)} (or 'file'), got {method!r}.")
    width = calibration_width(mask)
    if method in NEEDS_MASK:
        return COIL_MAP_METHODS[method](kspace, width, mask)
    return COIL_MAP_METHODS[method](kspace, width)


def calibration_phase(kspace: torch.Tensor, maps: torch.Tensor, mask: np.ndarray) -> torch.Tensor:
    """``exp(i phi)`` ``(S, 1, H, W)``: the phase of the coil-combined calibration image."""
    combined = (calibration_images(kspace, calibration_width(mask)) * maps.conj()).sum(1, keepdim=True)
    return torch.polar(torch.ones_like(combined.real), combined.angle())

