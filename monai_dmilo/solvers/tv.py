"""Total-variation regularised least squares: the classical baseline, no network.

    x_hat = argmin_{x in [-1, 1]^n}  1/2 ||A(x) - y||_2^2 + lam * sum_pixels sqrt(dx^2 + dy^2 + delta^2)

per sample (isotropic TV, smoothed by ``delta`` so that it is differentiable; forward differences,
none across the last row / column). Solved by Adam from ``x = 0`` (the middle of the intensity
range, the same start for every operator) for ``num_iters`` iterations, with ``x`` clipped to
[-1, 1] after each step. Works for any differentiable operator, real or complex (the squared
norm of a complex residual counts its real and imaginary parts).

The batch loss is the sum of the per-sample objectives and Adam is element-wise, so a batch
solves ``B`` independent problems. No network is evaluated (NFE 0); ``prior`` only gives
the image shape. History: ``data_fit`` every ``report_every`` iterations and at the end.

The maths: docs/algorithms.md, section 11.
"""
from __future__ import annotations

from typing import Any

import torch

from .base import Operator, Prior, Rngs, RunState, Solver, Tensor, register
from .numerics import per_sample_mean_square, per_sample_sum_square
from monai_dmilo.checks import check_positive
from monai_dmilo.metrics import total_variation

__all__ = ["TV"]


@register("tv")
class TV(Solver):
    """TV-regularised least squares (see module docstring).

    Args:
        lam: weight of the TV term (choose it on a validation split; it scales with the noise).
        num_iters: Adam iterations.
        lr: Adam step size (intensities in [-1, 1]).
        delta: TV smoothing (intensity units).
        report_every: progress bar / callback / history interval in iterations.
        selection, selection_params, progress, callback: see :class:`~.base.Solver`.
    """

    tuning_knob = "lam"
    tuning_factors = (0.1, 0.3, 1.0, 3.0, 10.0)

    def __init__(
        self,
        *,
        lam: float = 1e-3,
        num_iters: int = 1000,
        lr: float = 0.05,
        delta: float = 1e-3,
        report_every: int = 50,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        check_positive("lam", lam, allow_zero=True)
        check_positive("num_iters", num_iters, integer=True)
        check_positive("lr", lr)
        check_positive("delta", delta)
        check_positive("report_every", report_every, integer=True)
        self.lam, self.num_iters, self.lr, self.delta = float(lam), int(num_iters), float(lr), float(delta)
        self.report_every = report_every

    latent_priors = True  # the prior is not used

    def _progress_total(self, prior: Prior) -> int | None:
        return -(-self.num_iters // self.report_every)

    def _run(self, state: RunState, y: Tensor, operator: Operator, prior: Prior, z0: Tensor, rngs: Rngs) -> None:
        shape = (z0.shape[0], *(getattr(prior, "image_shape", None) or z0.shape[1:]))  # a latent prior's z0 is no image
        x = torch.zeros(shape, dtype=z0.dtype, device=z0.device, requires_grad=True)
        state.x = x.detach().clone()
        optimizer = torch.optim.Adam([x], lr=self.lr)
        for k in range(self.num_iters):
            residual = operator(x) - y
            loss = 0.5 * per_sample_sum_square(residual) + self.lam * total_variation(x, self.delta)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            with torch.no_grad():
                x.clamp_(-1.0, 1.0)
                if (k + 1) % self.report_every == 0 or k + 1 == self.num_iters:
                    current = x.detach().clone()
                    state.record(current, {"data_fit": per_sample_mean_square(operator(current) - y)})
