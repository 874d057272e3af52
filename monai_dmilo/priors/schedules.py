"""Discrete noise schedules ``abar_t`` (``t = 0 .. T - 1``) of a diffusion prior.

The names are diffusers' ``beta_schedule`` values, so a ``scheduler_config.json`` maps onto them:

* ``linear``: ``beta_t`` evenly spaced from ``beta_start`` to ``beta_end`` (DDPM; the shipped priors
  and the paper's ADM checkpoints);
* ``scaled_linear``: ``sqrt(beta_t)`` evenly spaced from ``sqrt(beta_start)`` to ``sqrt(beta_end)``
  (latent diffusion, e.g. MONAI's ``brats_mri_axial_slices_generative_diffusion``);
* ``squaredcos_cap_v2``: the cosine schedule (Nichol & Dhariwal, 2021):
  ``abar(s) = cos^2((s + 0.008) / 1.008 * pi / 2)``, ``beta_t = min(1 - abar((t + 1) / T) / abar(t / T), 0.999)``;

or an explicit ``alphas_cumprod`` sequence. ``abar_t = prod_{s <= t} (1 - beta_s)``, float64.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

__all__ = ["BETA_SCHEDULES", "make_alphas_cumprod", "linear_alphas_cumprod"]


def _linear(num_train_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)


def _scaled_linear(num_train_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2


def _squaredcos_cap_v2(num_train_timesteps: int, beta_start: float, beta_end: float) -> torch.Tensor:
    def abar(s: float) -> float:
        return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2

    n = num_train_timesteps
    return torch.tensor([min(1 - abar((t + 1) / n) / abar(t / n), 0.999) for t in range(n)], dtype=torch.float64)


#: ``beta_schedule`` name -> ``betas(num_train_timesteps, beta_start, beta_end)`` ``(T,)`` float64
BETA_SCHEDULES: dict[str, Callable[[int, float, float], torch.Tensor]] = {
    "linear": _linear,
    "scaled_linear": _scaled_linear,
    "squaredcos_cap_v2": _squaredcos_cap_v2,
}


def make_alphas_cumprod(
    beta_schedule: str = "linear",
    num_train_timesteps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    alphas_cumprod: Sequence[float] | torch.Tensor | None = None,
) -> torch.Tensor:
    """``abar_t`` ``(T,)`` float64 of a named schedule, or ``alphas_cumprod`` checked and converted.

    Raises:
        ValueError: an unknown ``beta_schedule``, or an ``alphas_cumprod`` that is not decreasing in (0, 1)
            or whose length is not ``num_train_timesteps``.
    """
    if alphas_cumprod is not None:
        abar = torch.as_tensor(alphas_cumprod, dtype=torch.float64).flatten()
        if len(abar) != num_train_timesteps:
            raise ValueError(f"alphas_cumprod must have num_train_timesteps = {num_train_timesteps} values, got {len(abar)}.")
        if not (bool(((abar > 0) & (abar < 1)).all()) and bool((abar[1:] < abar[:-1]).all())):
            raise ValueError("alphas_cumprod must be strictly decreasing values in (0, 1).")
        return abar
    if beta_schedule not in BETA_SCHEDULES:
        raise ValueError(f"beta_schedule must be one of {sorted(BETA_SCHEDULES)}, got {beta_schedule!r}.")
    return torch.cumprod(1.0 - BETA_SCHEDULES[beta_schedule](num_train_timesteps, beta_start, beta_end), dim=0)


def linear_alphas_cumprod(
    num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> torch.Tensor:
    """``abar_t`` of the DDPM linear beta schedule, float64, shape ``(T,)``."""
    return make_alphas_cumprod("linear", num_train_timesteps, beta_start, beta_end)
