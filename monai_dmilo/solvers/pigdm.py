"""PiGDM (Song, Vahdat, Mardani and Kautz, ICLR 2023, "Pseudoinverse-Guided Diffusion Models for Inverse Problems").

Sampling over ``num_steps`` uniform timesteps with the DDIM update of stochasticity ``eta``, plus at
every step ``t -> t_prev`` the pseudo-inverse guidance of the paper's noiseless form

    g      = (d x0_hat / d x_t)^T (A^+ y - A^+ A x0_hat)         (one vector-Jacobian product)
    x_prev = DDIM_eta(x_t, x0_hat) + w * sqrt(abar_prev) * sqrt(abar_t) * g

where ``x0_hat`` is the prior's (clipped) clean prediction and ``A^+`` the operator's
``pseudo_inverse``: exact for inpainting, conjugate gradient otherwise (see
:meth:`~monai_dmilo.operators.base.LinearOperator.pseudo_inverse`). The scale
``sqrt(abar_prev abar_t)`` is the one the method's public implementations use for the noiseless
guidance (the paper's ``1 / r_t^2`` folded into the step); ``w`` (``guidance_weight``) is the knob to
tune on a validation split. The noisy-measurement form, with ``(r_t^2 A A^T + sigma^2 I)^{-1}``, is
not implemented: the noise of the shipped tasks (sigma 0.01) is small.

Each step is one network forward + backward (one NFE). Fresh noise per sample from the sample's seed
stream, as DPS. History: ``x0_hat`` and its data fit at each step, then the final ``clip(x_0)``.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .base import Operator, Prior, Rngs, RunState, Solver, Tensor, register
from .numerics import ddim_sigma, draw_noise, per_sample_mean_square
from monai_dmilo.checks import check_positive

__all__ = ["PiGDM"]


@register("pigdm")
class PiGDM(Solver):
    """Pseudo-inverse guided DDIM sampling (see module docstring).

    Args:
        guidance_weight: ``w``, the scale of the guidance term.
        eta: DDIM stochasticity (1: ancestral-like, 0: deterministic).
        num_steps: uniform timesteps on the generator's network (the paper uses 100).
        report_every: progress bar / callback interval in steps.
        selection, selection_params, progress, callback: see :class:`~.base.Solver`.
    """

    tuning_knob = "guidance_weight"
    requires = "pseudo_inverse"

    def __init__(
        self,
        *,
        guidance_weight: float = 1.0,
        eta: float = 1.0,
        num_steps: int = 100,
        report_every: int = 10,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        check_positive("guidance_weight", guidance_weight, allow_zero=True)
        check_positive("eta", eta, allow_zero=True)
        check_positive("num_steps", num_steps, integer=True)
        check_positive("report_every", report_every, integer=True)
        self.guidance_weight, self.eta = float(guidance_weight), float(eta)
        self.num_steps, self.report_every = num_steps, report_every

    def _progress_total(self) -> int | None:
        return self.num_steps // self.report_every

    def _run(self, state: RunState, y: Tensor, operator: Operator, generator: Prior, z0: Tensor, rngs: Rngs) -> None:
        gen = generator.with_uniform_steps(self.num_steps)
        target = operator.pseudo_inverse(y)
        x = z0
        state.x = z0.clamp(-1.0, 1.0)
        for i, (a_t, a_prev) in enumerate(gen.step_coefficients):
            sigma = ddim_sigma(self.eta, a_t, a_prev)
            x = x.detach().requires_grad_(True)
            x0, eps = gen.denoise(x, i)
            with torch.no_grad():
                direction = target - operator.pseudo_inverse(operator(x0))
            (guidance,) = torch.autograd.grad(x0, x, direction)
            with torch.no_grad():
                x_prev = math.sqrt(a_prev) * x0 + math.sqrt(max(1.0 - a_prev - sigma**2, 0.0)) * eps
                if sigma > 0:
                    x_prev = x_prev + sigma * draw_noise(rngs, x.shape[1:], x)
                x = x_prev + self.guidance_weight * math.sqrt(a_prev * a_t) * guidance
                x0 = x0.detach()
            state.count(forward=1, backward=1, nfe=1)
            state.record(x0, {"data_fit": per_sample_mean_square(operator(x0) - y)},
                         report=(i + 1) % self.report_every == 0)
        with torch.no_grad():
            final = x.clamp(-1.0, 1.0)
            state.record(final, {"data_fit": per_sample_mean_square(operator(final) - y)})
