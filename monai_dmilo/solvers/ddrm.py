"""DDRM (Kawar, Elad, Ermon and Song, NeurIPS 2022, "Denoising Diffusion Restoration Models").

Sampling over ``num_steps`` uniform timesteps in the spectral basis of the operator,
``A = U S V^T`` (the operator's ``svd``: structured for inpainting, a dense per-sample SVD for the
other linear operators at small image sizes). With ``x = z / sqrt(abar)`` the variance-exploding
view of the prior's state (noise level ``sigma_t = sqrt((1 - abar_t) / abar_t)``),
``xbar = V^T x``, ``ybar = S^+ U^T y``, ``x0bar = V^T x0_hat`` (the prior's clipped clean
prediction) and fresh noise ``e``, each component ``i`` of a step ``t -> p`` becomes

* ``s_i = 0`` (unobserved): ``x0bar + sqrt(1 - eta^2) sigma_p (xbar - x0bar) / sigma_t + eta sigma_p e``;
* ``sigma_p < sigma_y / s_i`` (noisier than the prior here):
  ``x0bar + sqrt(1 - eta^2) sigma_p (ybar - x0bar) / (sigma_y / s_i) + eta sigma_p e``;
* otherwise: ``(1 - eta_b) x0bar + eta_b ybar + sqrt(sigma_p^2 - eta_b^2 sigma_y^2 / s_i^2) e``;

then ``z = sqrt(abar_p) V xbar``. Paper settings: 20 steps, ``eta = 0.85``, ``eta_b = 1``.
``sigma_y`` is the measurement noise in image units (the task's ``noise_sigma``).

One network forward per step (NFE = ``num_steps``, no backward). Noise per sample from the sample's
seed stream. History: ``x0_hat`` and its data fit per step, then the final ``clip(z_0)``.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .base import Operator, Prior, Rngs, RunState, Solver, Tensor, register
from .numerics import draw_noise, per_sample_mean_square
from monai_dmilo.checks import check_positive

__all__ = ["DDRM"]


@register("ddrm")
class DDRM(Solver):
    """Denoising diffusion restoration in the operator's spectral basis (see module docstring).

    Args:
        eta: stochasticity of the unobserved and noisy components (the paper's eta).
        eta_b: weight of the measurement in the well-observed components (the paper's eta_b).
        sigma_y: measurement noise standard deviation (image units, >= 0).
        num_steps: uniform timesteps on the generator's network (the paper uses 20).
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
        super().__init__(**common)
        for name, value in (("eta", eta), ("eta_b", eta_b)):
            check_positive(name, value, allow_zero=True)
            if value > 1:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}.")
        check_positive("sigma_y", sigma_y, allow_zero=True)
        check_positive("num_steps", num_steps, integer=True)
        check_positive("report_every", report_every, integer=True)
        self.eta, self.eta_b, self.sigma_y = float(eta), float(eta_b), float(sigma_y)
        self.num_steps, self.report_every = num_steps, report_every

    def _progress_total(self) -> int | None:
        return self.num_steps // self.report_every

    def _run(self, state: RunState, y: Tensor, operator: Operator, generator: Prior, z0: Tensor, rngs: Rngs) -> None:
        gen = generator.with_uniform_steps(self.num_steps)
        with torch.no_grad():
            spectral = operator.svd(y)
            s = spectral.s.to(z0.dtype)
            ybar = spectral.ybar.to(z0.dtype)
            observed = s > 0
            level = torch.where(observed, self.sigma_y / torch.where(observed, s, torch.ones_like(s)),
                                torch.full_like(s, math.inf))                 # sigma_y / s_i
            z = z0
            state.x = z0.clamp(-1.0, 1.0)
            for i, (a_t, a_p) in enumerate(gen.step_coefficients):
                sigma_t, sigma_p = math.sqrt((1.0 - a_t) / a_t), math.sqrt((1.0 - a_p) / a_p)
                x0, _ = gen.denoise(z, i)
                xbar = spectral.to_spectral(z / math.sqrt(a_t))
                x0bar = spectral.to_spectral(x0)
                noise = draw_noise(rngs, s.shape[1:], z)
                keep = math.sqrt(1.0 - self.eta**2) * sigma_p
                unobserved = x0bar + keep * (xbar - x0bar) / sigma_t + self.eta * sigma_p * noise
                noisy = x0bar + keep * (ybar - x0bar) / torch.where(observed, level, torch.ones_like(level)) \
                    + self.eta * sigma_p * noise
                spread = (sigma_p**2 - (self.eta_b * torch.where(observed, level, torch.zeros_like(level))) ** 2)
                clean = (1.0 - self.eta_b) * x0bar + self.eta_b * ybar + spread.clamp_min(0.0).sqrt() * noise
                new = torch.where(~observed, unobserved, torch.where(sigma_p < level, noisy, clean))
                z = math.sqrt(a_p) * spectral.from_spectral(new)
                state.count(forward=1, nfe=1)
                state.record(x0, {"data_fit": per_sample_mean_square(operator(x0) - y)},
                             report=(i + 1) % self.report_every == 0)
            final = z.clamp(-1.0, 1.0)
            state.record(final, {"data_fit": per_sample_mean_square(operator(final) - y)})
