"""Image-quality measures, one implementation each, used by the evaluation handlers, the k-space
workflow, the prior-quality checks, the TV solver and the benchmarks.

* :func:`psnr` and :func:`ssim` are MONAI's ``PSNRMetric`` / ``SSIMMetric`` per image. The caller
  states the intensity range of its images (``data_range``); where they depart from MONAI's
  defaults it is said here and at the call:

  - the handlers and the k-space workflow use MONAI's defaults (SSIM: an 11 x 11 Gaussian window,
    sigma 1.5) on images whose range starts at 0 (``[0, 1]`` for [-1, 1] priors, ``[0, peak]``
    for magnitudes), as skimage and the fastMRI evaluation do;
  - the quality benchmark keeps the 7 x 7 window on [-1, 1] images (``data_range=2``,
    ``win_size=7``) that its cached tables were measured with (the luminance term of SSIM is not
    shift-invariant, so these numbers differ from the handlers' in the second or third decimal);
    a change there means rerunning every cell.

* :func:`total_variation`: the isotropic TV ``sum sqrt(dx^2 + dy^2 + delta^2)`` (forward
  differences, zero past the last row and column), the TV solver's regulariser.
* :func:`mean_abs_gradient`: the anisotropic ``mean |dx| + mean |dy|`` used to flag speckled
  prior samples (its scale does not depend on the image size).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim", "total_variation", "mean_abs_gradient"]


def _check_pair(x: torch.Tensor, reference: torch.Tensor) -> None:
    if x.ndim < 3 or x.shape[-3:] != reference.shape[-3:]:
        raise ValueError(f"x and reference must end in the same (C, H, W), got {tuple(x.shape)} and "
                         f"{tuple(reference.shape)}.")


def psnr(x: torch.Tensor, reference: torch.Tensor, *, data_range: float) -> torch.Tensor:
    """Per-image PSNR in dB: ``10 log10(data_range^2 / mean((x - reference)^2))``.

    Args:
        x: ``(..., B, C, H, W)`` (e.g. a trace of iterates ``(T, B, C, H, W)``) or ``(B, C, H, W)``.
        reference: ``(B, C, H, W)``, broadcast over ``x``'s leading dimensions.
        data_range: the images' intensity range (MONAI's ``max_val``): 1 for [0, 1], 2 for [-1, 1].

    Returns:
        ``x.shape[:-3]``.
    """
    from monai.metrics import PSNRMetric

    _check_pair(x, reference)
    lead = x.shape[:-3]
    ref = reference.expand_as(x).reshape(-1, *x.shape[-3:])
    values = PSNRMetric(max_val=float(data_range), reduction="none")(x.reshape(-1, *x.shape[-3:]), ref)
    return values.reshape(lead)


def ssim(x: torch.Tensor, reference: torch.Tensor, *, data_range: float, win_size: int = 11) -> torch.Tensor:
    """Per-image SSIM ``(B,)`` of ``(B, C, H, W)`` images (MONAI's ``SSIMMetric``, Gaussian window).

    Args:
        x, reference: ``(B, C, H, W)``.
        data_range: the images' intensity range (see the module docstring for who uses which).
        win_size: the Gaussian window's size (MONAI's default 11).
    """
    from monai.metrics import SSIMMetric

    _check_pair(x, reference)
    return SSIMMetric(spatial_dims=2, data_range=float(data_range), win_size=int(win_size),
                      reduction="none")(x, reference).reshape(-1)


def total_variation(x: torch.Tensor, delta: float = 0.0) -> torch.Tensor:
    """Smoothed isotropic TV ``(B,)`` of ``(B, C, H, W)`` images: the sum over pixels of
    ``sqrt(dx^2 + dy^2 + delta^2)``, forward differences (zero past the last row / column)."""
    dx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1, 0, 0))
    dy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    return (dx.square() + dy.square() + delta**2).sqrt().flatten(1).sum(1)


def mean_abs_gradient(images: torch.Tensor) -> torch.Tensor:
    """Anisotropic roughness ``(N,)`` of ``(N, C, H, W)`` images: mean ``|dx|`` + mean ``|dy|``."""
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}.")
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).mean(1)
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).mean(1)
    return dx + dy
