"""DPS (Chung et al., ICLR 2023, "Diffusion Posterior Sampling"), for comparison.

Sampling over the prior's timesteps (or ``num_steps`` uniform ones) with the DDIM update of
stochasticity ``eta`` (``eta = 1``: DDPM-like ancestral sampling, as in DPS; ``eta = 0``:
deterministic DDIM), followed at every step by the measurement-guidance correction

    z_{t_prev} <- z_{t_prev} - zeta * grad_{z_t} || y - A(x0_hat(z_t)) ||_2

(the norm, not its square, per sample, as in the DPS reference code, where ``zeta`` is its
``scale``). ``x0_hat`` is the prior's (clipped) clean prediction. Settings: DPS uses 1,000
ancestral steps and ``zeta`` = 1.0 (super-resolution, inpainting, Gaussian blur on FFHQ); ``zeta``
needs tuning per task and prior. The fresh noise of each step is drawn per sample on CPU from the
sample's seed stream (after ``z_0``), so batched and single solves agree; on CUDA it is copied
from pinned memory without blocking, so the host does not wait for the GPU at every step.

Each step is one network forward + backward (one NFE). History: one record per step (the
prediction ``x0_hat`` and its data fit) plus the final ``clip(z_0)``.

The maths: docs/algorithms.md, section 11.
"""
from __future__ import annotations

from typing import Any

import torch

from .base import Operator, Prior, Rngs, Tensor, register
from .numerics import ddim_sigma, ddim_update, per_sample_norm
from .stepwise import SamplingSolver
from monai_dmilo.checks import check_positive

__all__ = ["DPS"]


@register("dps")
class DPS(SamplingSolver):
    """Diffusion posterior sampling (see module docstring).

    Args:
        zeta: guidance step size (DPS ``scale``).
        eta: DDIM stochasticity (1: ancestral, 0: deterministic).
        num_steps: sample over this many uniform timesteps on the prior's network instead of
            the prior's own (DPS needs many more than DMILO's 3; at most T - 1 = 999).
        report_every: progress bar / callback interval in steps (reporting may sync).
        selection, selection_params, progress, callback: see :class:`~.base.Solver`.
    """

    tuning_knob = "zeta"
    latent_priors = True  # the data fit of the decoded x0, differentiated through the decoder

    backward_passes = 1

    def __init__(
        self,
        *,
        zeta: float = 1.0,
        eta: float = 1.0,
        num_steps: int | None = None,
        report_every: int = 50,
        **common: Any,
    ) -> None:
        super().__init__(num_steps=num_steps, report_every=report_every, **common)
        check_positive("zeta", zeta, allow_zero=True)
        check_positive("eta", eta, allow_zero=True)
        self.zeta = float(zeta)
        self.eta = float(eta)

    def _step(self, prior: Prior, i: int, z: Tensor, y: Tensor, operator: Operator, rngs: Rngs,
              context: Any) -> tuple[Tensor, Tensor, Tensor]:
        a_t, a_prev = prior.step_coefficients[i]
        sigma = ddim_sigma(self.eta, a_t, a_prev)
        z = z.detach().requires_grad_(True)
        x0, eps = prior.denoise(z, i)
        decode = getattr(prior, "decode", None)  # a latent prior's decoder, as SamplingSolver reads it
        image = x0 if decode is None else decode(x0)
        residual_norm = per_sample_norm(y - operator(image))
        (grad,) = torch.autograd.grad(residual_norm.sum(), z)
        with torch.no_grad():
            z_prev = ddim_update(x0, eps, a_prev, sigma, rngs)
            fit = residual_norm.detach().square() / _num_elements(y)
            return z_prev - self.zeta * grad, image.detach(), fit


def _num_elements(y: torch.Tensor) -> int:
    per_sample = y[0].numel()
    return 2 * per_sample if y.is_complex() else per_sample
