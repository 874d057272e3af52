"""Per-sample linear solves with a linear operator's forward and adjoint (no matrices formed).

:func:`conjugate_gradient` solves ``M x = b`` for a symmetric positive (semi-)definite ``M`` given as
a function, for every sample of a batch at once: the step sizes are per sample, so one sample's
solve never depends on another's. A fixed number of iterations, without convergence tests, keeps
the loop free of host-device synchronisations.
"""
from __future__ import annotations

from typing import Callable

import torch

__all__ = ["conjugate_gradient", "real_part"]


def real_part(x: torch.Tensor) -> torch.Tensor:
    """``x.real`` for complex ``x``, else ``x``."""
    return x.real if x.is_complex() else x


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample inner product ``(B, ...) x (B, ...) -> (B, 1, ..., 1)``."""
    return (a * b).flatten(1).sum(1).view(-1, *([1] * (a.ndim - 1)))


def conjugate_gradient(
    apply: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, x0: torch.Tensor, *, num_iters: int
) -> torch.Tensor:
    """``num_iters`` conjugate-gradient iterations on ``apply(x) = b`` from ``x0``, per sample.

    Args:
        apply: the symmetric positive semi-definite map ``x -> M x`` on real ``(B, ...)`` tensors.
        b, x0: real ``(B, ...)`` right-hand side and start.
        num_iters: iterations (exact after ``n`` of them in exact arithmetic for ``n`` unknowns).

    A sample stops moving once its residual is below ``100 eps`` of its first one (or is zero).
    """
    x = x0
    r = b - apply(x)
    p = r
    rr = _dot(r, r)
    tiny = torch.finfo(rr.dtype).tiny
    # converged once the residual is 100 machine epsilons of the first one: further steps would
    # divide rounding errors by rounding errors (and blow up in a singular system's null space)
    threshold = (rr * (100.0 * torch.finfo(rr.dtype).eps) ** 2).clamp_min(tiny)
    for _ in range(num_iters):
        mp = apply(p)
        pmp = _dot(p, mp)
        active = (rr > threshold) & (pmp > 0)
        alpha = torch.where(active, rr / pmp.clamp_min(tiny), torch.zeros_like(pmp))
        x = x + alpha * p
        r = r - alpha * mp
        rr_new = _dot(r, r)
        beta = torch.where(active, rr_new / rr.clamp_min(tiny), torch.zeros_like(rr))
        p = r + beta * p
        rr = torch.where(active, rr_new, rr)
    return x
