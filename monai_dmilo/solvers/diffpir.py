"""DiffPIR (Zhu et al., CVPR Workshops 2023, "Denoising Diffusion Models for Plug-and-Play Image Restoration").

Sampling over ``num_steps`` uniform timesteps of the prior; at each step ``t -> t_prev``:

    x0     = denoise(x_t)                                   (the prior's clipped x0 prediction)
    x0_hat = argmin_x ||y - A x||^2 + rho_t ||x - x0||^2,   rho_t = lam * sigma_n^2 / sigmabar_t^2
    eps    = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t)
    x_prev = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) (sqrt(1 - zeta) eps + sqrt(zeta) noise)

with ``sigmabar_t = sqrt((1 - abar_t) / abar_t)`` the noise level of ``x_t / sqrt(abar_t)`` and
``sigma_n`` the measurement noise (in image units, [-1, 1] here). The data step is the
operator's ``proximal`` (closed form for inpainting, conjugate gradient on the normal equations
for the other linear operators): DiffPIR needs a linear operator with an adjoint and refuses others.
Paper settings: 100 steps, ``zeta`` around 1 for inpainting and lower for deblurring / SR,
``lam`` of order 1-10; tune both on a validation split.

One network forward per step, no backward (NFE = ``num_steps``, ``nfe_backward`` = 0). The fresh
noise is drawn per sample on CPU from the sample's seed stream (after ``z_0``), so batched and
single solves agree. History: ``x0_hat`` and its data fit at each step, then the final
``clip(x_0)``.

The maths: docs/algorithms.md, section 11.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .base import Operator, Prior, Rngs, Tensor, register
from .numerics import draw_noise
from .stepwise import SamplingSolver
from monai_dmilo.checks import check_positive

__all__ = ["DiffPIR"]


@register("diffpir")
class DiffPIR(SamplingSolver):
    """Plug-and-play diffusion sampling with a proximal data step (see module docstring).

    Args:
        lam: the paper's lambda, weight of the prior against the data in ``rho_t``.
        zeta: share of fresh noise in each step (0: deterministic DDIM-like, 1: all fresh).
        sigma_n: the measurement noise standard deviation (image units; > 0).
        num_steps: uniform timesteps on the prior's network (the paper uses 100).
        report_every: progress bar / callback interval in steps.
        selection, selection_params, progress, callback: see :class:`~.base.Solver`.
    """

    tuning_knob = "lam"
    requires = "proximal"

    def __init__(
        self,
        *,
        lam: float = 7.0,
        zeta: float = 1.0,
        sigma_n: float = 0.01,
        num_steps: int = 100,
        report_every: int = 10,
        **common: Any,
    ) -> None:
        super().__init__(num_steps=num_steps, report_every=report_every, **common)
        check_positive("lam", lam)
        check_positive("zeta", zeta, allow_zero=True)
        if zeta > 1:
            raise ValueError(f"zeta must be in [0, 1], got {zeta!r}.")
        check_positive("sigma_n", sigma_n)
        self.lam, self.zeta, self.sigma_n = float(lam), float(zeta), float(sigma_n)

    def _step(self, prior: Prior, i: int, z: Tensor, y: Tensor, operator: Operator, rngs: Rngs,
              context: Any) -> tuple[Tensor, Tensor, None]:
        a_t, a_prev = prior.step_coefficients[i]
        with torch.no_grad():
            x0, _ = prior.denoise(z, i)
            rho = self.lam * self.sigma_n**2 * a_t / (1.0 - a_t)
            x0_hat = operator.proximal(x0, y, rho)
            eps = (z - math.sqrt(a_t) * x0_hat) / math.sqrt(1.0 - a_t)
            if self.zeta > 0:
                eps = math.sqrt(1.0 - self.zeta) * eps + math.sqrt(self.zeta) * draw_noise(rngs, z.shape[1:], z)
            return math.sqrt(a_prev) * x0_hat + math.sqrt(1.0 - a_prev) * eps, x0_hat, None
