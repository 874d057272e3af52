"""DDRM (Kawar, Elad, Ermon and Song, NeurIPS 2022, "Denoising Diffusion Restoration Models").

Sampling over ``num_steps`` uniform timesteps in the spectral basis of the operator,
``A = U S V^T`` (the operator's ``svd``: structured for inpainting, a dense per-sample SVD for the
other linear operators at small image sizes). With ``x = z / sqrt(abar)`` the variance-exploding
view of the prior's state (noise level ``sigma_t = sqrt((1 - abar_t) / abar_t)``),
``xbar = V^T x``, ``ybar = S^+ U^T y``, ``x0bar = V^T x0_hat`` (the prior's clipped clean
prediction) and fresh noise ``e = V^T w`` (``w`` white in image space: the same sample whatever basis
``svd`` returned for repeated singular values), each component ``i`` of a step ``t -> p`` becomes

* ``s_i = 0`` (unobserved): ``x0bar + sqrt(1 - eta^2) sigma_p (xbar - x0bar) / sigma_t + eta sigma_p e``;
* ``sigma_p < sigma_y / s_i`` (noisier than the prior here):
  ``x0bar + sqrt(1 - eta^2) sigma_p (ybar - x0bar) / (sigma_y / s_i) + eta sigma_p e``;
* otherwise: ``(1 - eta_b) x0bar + eta_b ybar + sqrt(sigma_p^2 - eta_b^2 sigma_y^2 / s_i^2) e``;

then ``z = sqrt(abar_p) V xbar``. Paper settings: 20 steps, ``eta = 0.85``, ``eta_b = 1``.
``sigma_y`` is the measurement noise in image units (the task's ``noise_sigma``).

One network forward per step (NFE = ``num_steps``, no backward). Noise per sample from the sample's
seed stream. History: ``x0_hat`` and its data fit per step, then the final ``clip(z_0)``.

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

__all__ = ["DDRM"]


@register("ddrm")
class DDRM(SamplingSolver):
    """Denoising diffusion restoration in the operator's spectral basis (see module docstring).

    Args:
        eta: stochasticity of the unobserved and noisy components (the paper's eta).
        eta_b: weight of the measurement in the well-observed components (the paper's eta_b).
        sigma_y: measurement noise standard deviation (image units, >= 0).
        num_steps: uniform timesteps on the prior's network (the paper uses 20).
        report_every: progress bar / callback interval in steps.
        selection, selection_params, progress, callback: see :class:`~.base.Solver`.
    """

    tuning_knob = "eta"
    tuning_factors = (0.6, 1.0, 1.15)
    tuning_extendable = False  # eta is at most 1
    requires = "svd"

    def __init__(
        self,
        *,
        eta: float = 0.85,
        eta_b: float = 1.0,
        sigma_y: float = 0.01,
        num_steps: int = 20,
        report_every: int = 5,
        **common: Any,
    ) -> None:
        super().__init__(num_steps=num_steps, report_every=report_every, **common)
        for name, value in (("eta", eta), ("eta_b", eta_b)):
            check_positive(name, value, allow_zero=True)
            if value > 1:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}.")
        check_positive("sigma_y", sigma_y, allow_zero=True)
        self.eta, self.eta_b, self.sigma_y = float(eta), float(eta_b), float(sigma_y)

    def _prepare(self, y: Tensor, operator: Operator, z0: Tensor) -> Any:
        with torch.no_grad():
            spectral = operator.svd(y)
            s = spectral.s.to(z0.dtype)
            observed = s > 0
            level = torch.where(observed, self.sigma_y / torch.where(observed, s, torch.ones_like(s)),
                                torch.full_like(s, math.inf))                 # sigma_y / s_i
        return spectral, s, spectral.ybar.to(z0.dtype), observed, level

    def _step(self, prior: Prior, i: int, z: Tensor, y: Tensor, operator: Operator, rngs: Rngs,
              context: Any) -> tuple[Tensor, Tensor, None]:
        spectral, s, ybar, observed, level = context
        a_t, a_p = prior.step_coefficients[i]
        with torch.no_grad():
            sigma_t, sigma_p = math.sqrt((1.0 - a_t) / a_t), math.sqrt((1.0 - a_p) / a_p)
            x0, _ = prior.denoise(z, i)
            xbar = spectral.to_spectral(z / math.sqrt(a_t))
            x0bar = spectral.to_spectral(x0)
            # white noise drawn in image space, then rotated: V^T e is white in any orthonormal basis, so
            # the sample does not depend on which basis the SVD returned for repeated singular values
            # (LAPACK's choice changes with the thread count)
            noise = spectral.to_spectral(draw_noise(rngs, z.shape[1:], z)).to(z.dtype)
            keep = math.sqrt(1.0 - self.eta**2) * sigma_p
            unobserved = x0bar + keep * (xbar - x0bar) / sigma_t + self.eta * sigma_p * noise
            noisy = x0bar + keep * (ybar - x0bar) / torch.where(observed, level, torch.ones_like(level)) \
                + self.eta * sigma_p * noise
            spread = (sigma_p**2 - (self.eta_b * torch.where(observed, level, torch.zeros_like(level))) ** 2)
            clean = (1.0 - self.eta_b) * x0bar + self.eta_b * ybar + spread.clamp_min(0.0).sqrt() * noise
            new = torch.where(~observed, unobserved, torch.where(sigma_p < level, noisy, clean))
            return math.sqrt(a_p) * spectral.from_spectral(new), x0, None
