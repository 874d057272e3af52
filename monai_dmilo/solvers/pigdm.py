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

The maths: docs/algorithms.md, section 11.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .base import Operator, Prior, Rngs, Tensor, register
from .numerics import ddim_sigma, ddim_update
from .stepwise import SamplingSolver
from monai_dmilo.checks import check_positive

__all__ = ["PiGDM"]


@register("pigdm")
class PiGDM(SamplingSolver):
    """Pseudo-inverse guided DDIM sampling (see module docstring).

    Args:
        guidance_weight: ``w``, the scale of the guidance term.
        eta: DDIM stochasticity (1: ancestral-like, 0: deterministic).
        num_steps: uniform timesteps on the prior's network (the paper uses 100).
        report_every: progress bar / callback interval in steps.
        selection, selection_params, progress, callback: see :class:`~.base.Solver`.
    """

    tuning_knob = "guidance_weight"
    requires = "pseudo_inverse"

    backward_passes = 1

    def __init__(
        self,
        *,
        guidance_weight: float = 1.0,
        eta: float = 1.0,
        num_steps: int = 100,
        report_every: int = 10,
        **common: Any,
    ) -> None:
        super().__init__(num_steps=num_steps, report_every=report_every, **common)
        check_positive("guidance_weight", guidance_weight, allow_zero=True)
        check_positive("eta", eta, allow_zero=True)
        self.guidance_weight, self.eta = float(guidance_weight), float(eta)

    def _prepare(self, y: Tensor, operator: Operator, z0: Tensor) -> Tensor:
        return operator.pseudo_inverse(y)  # A^+ y

    def _step(self, prior: Prior, i: int, z: Tensor, y: Tensor, operator: Operator, rngs: Rngs,
              context: Tensor) -> tuple[Tensor, Tensor, None]:
        a_t, a_prev = prior.step_coefficients[i]
        sigma = ddim_sigma(self.eta, a_t, a_prev)
        z = z.detach().requires_grad_(True)
        x0, eps = prior.denoise(z, i)
        with torch.no_grad():
            direction = context - operator.pseudo_inverse(operator(x0))
        (guidance,) = torch.autograd.grad(x0, z, direction)
        with torch.no_grad():
            z_prev = ddim_update(x0, eps, a_prev, sigma, rngs)
            return z_prev + self.guidance_weight * math.sqrt(a_prev * a_t) * guidance, x0.detach(), None
