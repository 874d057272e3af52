"""Per-sample reductions, per-sample noise and the DDIM noise scale, shared by every solver.

The maths: docs/algorithms.md, section 2.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["per_sample_mean_square", "per_sample_sum_square", "per_sample_norm", "to_device_without_wait",
           "draw_noise", "ddim_sigma", "ddim_update"]


def _real_view(r: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(r) if r.is_complex() else r


def per_sample_mean_square(r: torch.Tensor) -> torch.Tensor:
    """``mean(r^2)`` over each sample's elements: ``(B, ...) -> (B,)``; complex ``r`` via real/imag."""
    return _real_view(r).square().flatten(1).mean(1)


def per_sample_sum_square(r: torch.Tensor) -> torch.Tensor:
    """``||r||^2`` of each sample: ``(B, ...) -> (B,)``; complex ``r`` via real/imag."""
    return _real_view(r).square().flatten(1).sum(1)


def per_sample_norm(r: torch.Tensor) -> torch.Tensor:
    """``||r||_2`` of each sample: ``(B, ...) -> (B,)`` (its gradient at ``r = 0`` is 0)."""
    return torch.linalg.vector_norm(_real_view(r).flatten(1), dim=1)


def to_device_without_wait(t: torch.Tensor, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``t`` (a CPU tensor) on ``device`` in ``dtype``; to CUDA through pinned memory, without blocking.

    A copy from pageable memory makes the host wait for the GPU (a sync); from pinned memory with
    ``non_blocking`` it is queued behind the GPU's work instead.
    """
    if device.type == "cuda":
        t = t.pin_memory()
    return t.to(device=device, dtype=dtype, non_blocking=True)


def draw_noise(rngs: Sequence[torch.Generator], shape: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """Fresh noise ``(B, *shape)``: sample ``b``'s from its own CPU stream ``rngs[b]`` (so batched and
    single solves agree), moved to ``like``'s device and dtype without making the host wait."""
    noise = torch.stack([torch.randn(tuple(shape), generator=g, dtype=torch.float32) for g in rngs])
    return to_device_without_wait(noise, like.device, like.dtype)


def ddim_sigma(eta: float, a_t: float, a_prev: float) -> float:
    """The DDIM noise scale of a step ``abar_t -> abar_prev`` with stochasticity ``eta``."""
    return eta * math.sqrt((1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev))


def ddim_update(x0: torch.Tensor, eps: torch.Tensor, a_prev: float, sigma: float,
                rngs: Sequence[torch.Generator]) -> torch.Tensor:
    """The DDIM step to ``abar_prev`` from the clean prediction ``x0`` and noise estimate ``eps``
    ``(B, C, H, W)``: ``sqrt(abar_prev) x0 + sqrt(1 - abar_prev - sigma^2) eps + sigma e``, ``e`` fresh
    per-sample noise (drawn only when ``sigma > 0``)."""
    z_prev = math.sqrt(a_prev) * x0 + math.sqrt(max(1.0 - a_prev - sigma**2, 0.0)) * eps
    if sigma > 0:
        z_prev = z_prev + sigma * draw_noise(rngs, x0.shape[1:], x0)
    return z_prev
