"""The classical multi-coil references, on complex images, with their weights chosen without ground truth.

All solve for a complex image ``x (S, 1, H, W)`` from k-space ``y (S, C, H, W)`` (unsampled entries
zero) with the forward model ``A x = M F (S_c x)`` (coil maps ``S_c``, centred orthonormal FFT
``F``, sampling mask ``M``); ``||A|| <= 1`` for maps with ``sum_c |S_c|^2 = 1``.

* :func:`zero_filled_rss`: root-sum-of-squares of the zero-filled coil images.
* :func:`sense`: Tikhonov-regularised SENSE, ``(A^H A + lam I) x = A^H y`` by conjugate gradients
  from zero: the objective of ``bart pics -l2 -r lam``.
* :func:`cs_tv`: ``min_x 1/2 ||A x - y||^2 + lam s TV(x)``, TV the isotropic total variation
  ``sum_pixels sqrt(|dx|^2 + |dy|^2)`` with periodic forward differences (as BART's),
  ``s = max |A^H y|`` (so ``lam`` does not depend on the data's units), by the primal-dual
  algorithm of Chambolle and Pock (2011): the objective of ``bart pics -R T:3:0:lam*s``.
* :func:`fit_intensity`: the factor ``c = Re<A x, y> / ||A x||^2`` per slice that fits ``c x`` to
  the data best; regularisation shrinks intensities (Tikhonov towards zero most), and the workflow
  reports its references as ``c x`` so that they are in the data's units (PSNR after a
  least-squares intensity scale, and the comparison with BART, do not change).
* :func:`choose_weight`: the weights' GT-free rule, k-space cross-validation. The acquired samples
  are split at random (seeded) into ``folds`` parts; for each weight on the grid and each part the
  method reconstructs from the other parts and predicts the held-out samples; of the weights whose
  total prediction error (per slice) is within one standard error (over the folds) of the smallest,
  the largest is chosen (the "one-standard-error rule" of cross-validation: the most regularised
  result the data cannot tell from the best), and the method is rerun on all samples. Against the
  plain minimum it keeps SENSE above zero filling on every demo slice at 4x and 8x and gains
  0.7 dB with 3 calibration columns, for 0.03-0.26 dB on the demo files
  (``docs/benchmarks/kspace_bart.md``).
  It needs no noise level and sees the model's errors (imperfect coil maps) as well as the noise,
  which the discrepancy principle does not: with few calibration lines the maps are poor, no
  weight fits the data to the noise level, and the discrepancy principle would take the smallest.

``tests/test_kspace_bart.py`` checks SENSE and CS-TV against ``bart pics`` on the same data, maps and
weight; ``benchmarks/kspace_bart.py`` compares them on the demo files.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..operators.linear_solve import conjugate_gradient
from ..operators.mri import MRI, ifft2c

__all__ = ["zero_filled_rss", "sense", "cs_tv", "tv_scale", "fit_intensity", "choose_weight", "check_weight", "SENSE_WEIGHTS", "CS_TV_WEIGHTS"]

SENSE_WEIGHTS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
CS_TV_WEIGHTS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)


def check_weight(name: str, value) -> None:
    """A reference's weight must be ``"auto"`` or a non-negative number (one line naming it otherwise)."""
    if value != "auto" and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0):
        raise ValueError(f"{name} must be a non-negative number or 'auto' (k-space cross-validation), got {value!r}.")


def zero_filled_rss(kspace: torch.Tensor) -> torch.Tensor:
    """Root-sum-of-squares of the zero-filled coil images: ``(S, C, H, W) -> (S, H, W)``."""
    return ifft2c(kspace).abs().square().sum(1).sqrt()


def sense(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, *, num_iters: int = 30,
          tikhonov: float | torch.Tensor = 0.01) -> torch.Tensor:
    """SENSE: complex ``x (S, 1, H, W)`` from ``num_iters`` CG iterations on
    ``(A^H A + tikhonov I) x = A^H y`` from zero. ``tikhonov`` is a number or one per slice ``(S,)``;
    ``mask`` is any mask :class:`~monai_dmilo.operators.MRI` takes."""
    operator = MRI(mask, coil_maps=maps)
    weight = torch.as_tensor(tikhonov, dtype=kspace.real.dtype).reshape(-1, 1, 1, 1)

    def normal(xr: torch.Tensor) -> torch.Tensor:  # CG runs on the real view of the complex image
        x = torch.view_as_complex(xr.contiguous())
        return torch.view_as_real(operator.adjoint(operator(x)) + weight * x)

    b = torch.view_as_real(operator.adjoint(kspace))
    x = conjugate_gradient(normal, b, torch.zeros_like(b), num_iters=num_iters)
    return torch.view_as_complex(x.contiguous())


def _gradient(x: torch.Tensor) -> torch.Tensor:
    """Periodic forward differences ``(S, 2, H, W)`` of ``(S, 1, H, W)`` along rows and columns."""
    return torch.cat([x.roll(-1, -2) - x, x.roll(-1, -1) - x], 1)


def _gradient_adjoint(p: torch.Tensor) -> torch.Tensor:
    """Adjoint of :func:`_gradient`: ``(S, 2, H, W) -> (S, 1, H, W)`` (minus the divergence)."""
    return (p[:, :1].roll(1, -2) - p[:, :1]) + (p[:, 1:].roll(1, -1) - p[:, 1:])


def tv_scale(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``max |A^H y|`` per slice ``(S,)``: the unit of :func:`cs_tv`'s ``lam``."""
    return MRI(mask, coil_maps=maps).adjoint(kspace).abs().flatten(1).amax(1).clamp_min(1e-12)


def cs_tv(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, *, lam: float | torch.Tensor = 1e-3,
          num_iters: int = 300) -> torch.Tensor:
    """CS-TV (see the module docstring): complex ``x (S, 1, H, W)`` after ``num_iters`` primal-dual
    iterations from zero; ``lam`` (relative to ``max |A^H y|``) a number or one per slice ``(S,)``."""
    operator = MRI(mask, coil_maps=maps)
    y = kspace
    back = operator.adjoint(y)
    scale = back.abs().flatten(1).amax(1).clamp_min(1e-12)  # tv_scale, from the adjoint computed here
    weight = (torch.as_tensor(lam, dtype=y.real.dtype) * scale).reshape(-1, 1, 1, 1)
    tau = sigma = 1.0 / 3.0  # tau sigma ||K||^2 < 1 with ||A|| <= 1, ||grad||^2 <= 8
    x = torch.zeros_like(back)
    x_bar = x.clone()
    dual_data = torch.zeros_like(y)
    dual_tv = torch.zeros_like(_gradient(x))
    for _ in range(num_iters):
        dual_data = (dual_data + sigma * (operator(x_bar) - y)) / (1 + sigma)
        q = dual_tv + sigma * _gradient(x_bar)
        size = q.abs().square().sum(1, keepdim=True).sqrt()
        dual_tv = q / (size / weight).clamp_min(1.0)  # projection onto |q| <= weight, pixel by pixel
        x_new = x - tau * (operator.adjoint(dual_data) + _gradient_adjoint(dual_tv))
        x_bar = 2 * x_new - x
        x = x_new
    return x


def fit_intensity(x: torch.Tensor, kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``c x`` with ``c = Re<A x, y> / ||A x||^2`` per slice (see the module docstring); ``x (S, 1, H, W)``."""
    predicted = MRI(mask, coil_maps=maps)(x)
    num = (predicted.conj() * kspace).real.flatten(1).sum(1)
    den = predicted.abs().square().flatten(1).sum(1).clamp_min(1e-30)
    return x * (num / den).clamp_min(0).reshape(-1, 1, 1, 1).to(x.real.dtype)


def choose_weight(
    method: Callable[..., torch.Tensor], kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor,
    weights: Sequence[float], *, keyword: str, folds: int = 5, seed: int = 0, one_standard_error: bool = True,
    **kwargs,
) -> torch.Tensor:
    """The weight ``(S,)`` per slice of ``weights`` chosen by k-space cross-validation of
    ``method(kspace, maps, mask, **{keyword: weight}, **kwargs)`` (see the module docstring;
    ``one_standard_error=False``: the weight with the smallest error).

    Args:
        mask: the acquired locations, broadcastable to ``(H, W)`` (a column mask ``(W,)`` or ``(H, W)``).
    """
    height, width = kspace.shape[-2:]
    acquired = torch.broadcast_to(mask.reshape(-1, width) if mask.ndim == 1 else mask, (height, width)) > 0
    rng = torch.Generator().manual_seed(int(seed))
    fold_of = torch.randint(0, folds, (height, width), generator=rng)
    errors = torch.zeros(len(weights), folds, kspace.shape[0], dtype=torch.float64)
    for j in range(folds):
        train = (acquired & (fold_of != j)).to(kspace.real.dtype)
        test = (acquired & (fold_of == j)).to(kspace.real.dtype)
        for i, weight in enumerate(weights):
            x = method(kspace * train, maps, train, **{keyword: weight}, **kwargs)
            predicted = MRI(test, coil_maps=maps)(x)
            errors[i, j] = (predicted - kspace * test).abs().square().flatten(1).sum(1).double()
    total = errors.sum(1)  # (weights, S)
    best = total.argmin(0)
    if one_standard_error:  # the largest weight whose total error is within one standard error of the best
        standard_error = errors.std(1) * folds ** 0.5  # of the total over the folds
        limit = total.gather(0, best[None])[0] + standard_error.gather(0, best[None])[0]
        for i in sorted(range(len(weights)), key=lambda i: float(weights[i])):
            best = torch.where(total[i] <= limit, torch.full_like(best, i), best)
    return torch.tensor([float(weights[b]) for b in best], dtype=kspace.real.dtype)
