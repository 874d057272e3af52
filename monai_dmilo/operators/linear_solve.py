"""Per-sample linear algebra with a linear operator: solves from its forward and adjoint (no matrices
formed), and the dense SVD of small operators (:func:`dense_svd`, for DDRM).

:func:`conjugate_gradient` solves ``M x = b`` for a symmetric positive (semi-)definite ``M`` given as
a function, for every sample of a batch at once: the step sizes are per sample, so one sample's
solve never depends on another's. A fixed number of iterations, without convergence tests, keeps
the loop free of host-device synchronisations.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["conjugate_gradient", "real_part", "Spectral", "dense_svd"]


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


@dataclass
class Spectral:
    """A per-sample singular value decomposition ``A = U S V^T`` seen through what DDRM needs.

    Attributes:
        s: ``(B, n)`` singular values of each sample's operator, one per image element (0 in the
            null space), ``n = C * H * W``.
        ybar: ``(B, n)`` ``S^+ U^T y`` (0 where ``s = 0``): the measurement in the spectral basis.
        to_spectral: ``x (B, C, H, W) -> V^T x (B, n)``.
        from_spectral: ``xbar (B, n) -> V xbar (B, C, H, W)``.
    """

    s: torch.Tensor
    ybar: torch.Tensor
    to_spectral: Callable[[torch.Tensor], torch.Tensor]
    from_spectral: Callable[[torch.Tensor], torch.Tensor]


def _real_rows(v: torch.Tensor) -> torch.Tensor:
    """``(B, ...)`` measurement as ``(B, m)`` real rows (complex: real parts, then imaginary parts)."""
    flat = v.flatten(1)
    return torch.cat([flat.real, flat.imag], dim=1) if flat.is_complex() else flat


def dense_svd(operator: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor) -> Spectral:
    """:class:`Spectral` of a linear ``operator`` from its dense per-sample matrix (small images only).

    The image shape is that of ``operator.adjoint(y)``; the matrix has one column per image element,
    ``A(e_j)`` for the unit images ``e_j`` (the same for every sample of the batch, so per-sample
    operator parameters give per-sample matrices).
    """
    image = operator.adjoint(y)
    shape = tuple(image.shape[1:])
    n = int(torch.tensor(shape).prod())
    limit = getattr(operator, "dense_svd_max_size", 4096)
    if n > limit:
        raise ValueError(
            f"a dense SVD of {type(operator).__name__} on {shape} images ({n} elements) is above its "
            f"dense_svd_max_size ({limit}); DDRM needs an operator with a structured SVD (e.g. inpainting) here."
        )
    dtype = real_part(image).dtype
    batch = y.shape[0]
    columns = []
    for j in range(n):
        unit = torch.zeros(n, dtype=dtype, device=y.device)
        unit[j] = 1.0
        columns.append(_real_rows(operator(unit.view(1, *shape).expand(batch, *shape).contiguous())))
    matrix = torch.stack(columns, dim=2)                                   # (B, m, n)
    u, s, vh = torch.linalg.svd(matrix, full_matrices=True)                # s: (B, min(m, n))
    values = torch.zeros(batch, n, dtype=dtype, device=y.device)
    values[:, : s.shape[1]] = s
    projected = torch.zeros_like(values)
    uy = (u.transpose(1, 2) @ _real_rows(y).to(dtype).unsqueeze(2)).squeeze(2)   # (B, m)
    k = min(uy.shape[1], n)
    projected[:, :k] = uy[:, :k]
    positive = values > values.amax(1, keepdim=True) * torch.finfo(dtype).eps * max(matrix.shape[1:])
    values = torch.where(positive, values, torch.zeros_like(values))
    ybar = torch.where(positive, projected / torch.where(positive, values, torch.ones_like(values)),
                       torch.zeros_like(values))
    v = vh.transpose(1, 2)                                                 # (B, n, n): columns are V's
    return Spectral(
        s=values,
        ybar=ybar,
        to_spectral=lambda x: (vh @ x.reshape(batch, n, 1).to(dtype)).squeeze(2),
        from_spectral=lambda xbar: (v @ xbar.unsqueeze(2)).squeeze(2).view(batch, *shape),
    )
