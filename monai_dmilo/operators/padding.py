"""Boundary extension as an explicit index gather, so that its adjoint (a scatter-add) is exact.

``pad_indices(n, before, after, mode)`` gives the source index of every sample of the extended
signal; padding is ``x.index_select(dim, idx)`` and its adjoint folds the border back with
``index_add``. Modes: ``"reflect"`` (mirror without repeating the edge, like ``F.pad``) and
``"symmetric"`` (mirror repeating the edge, like MATLAB ``imresize``).
"""

from __future__ import annotations

import torch

__all__ = ["pad_indices", "pad_along", "unpad_along"]


def pad_indices(n: int, before: int, after: int, mode: str, *, device: torch.device | None = None) -> torch.Tensor:
    """Source indices ``(before + n + after,)`` of a signal of length ``n`` extended at both ends.

    Raises:
        ValueError: unknown ``mode``, or ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"cannot pad a signal of length {n}; expected at least 1 sample.")
    pos = torch.arange(-before, n + after, device=device)
    if mode == "symmetric":
        period = 2 * n
        pos = pos.remainder(period)
        return torch.where(pos < n, pos, period - 1 - pos)
    if mode == "reflect":
        if n == 1:
            return torch.zeros_like(pos)
        period = 2 * n - 2
        pos = pos.remainder(period)
        return torch.where(pos < n, pos, period - pos)
    raise ValueError(f"mode must be 'reflect' or 'symmetric', got {mode!r}.")


def pad_along(x: torch.Tensor, dim: int, idx: torch.Tensor) -> torch.Tensor:
    """Extends ``x`` along ``dim`` with the indices of :func:`pad_indices` (a differentiable gather)."""
    return x.index_select(dim, idx)


def unpad_along(y: torch.Tensor, dim: int, idx: torch.Tensor, n: int) -> torch.Tensor:
    """Adjoint of :func:`pad_along`: sums every extended sample back onto its source (length ``n``)."""
    shape = list(y.shape)
    shape[dim] = n
    return y.new_zeros(shape).index_add(dim, idx, y)
