"""DAPS (Zhang et al., CVPR 2025, "Improving Diffusion Inverse Problem Solving with Decoupled Noise Annealing").

The noise level is annealed over ``num_steps`` uniform timesteps ``t_K > ... > t_1`` of the prior,
and at each level the sample is *decoupled* from the previous one:

1. ``x0_hat``: the probability-flow ODE (``ode_steps`` deterministic DDIM steps of the prior) from
   the current state at ``t_k`` towards ``t = 0``, read as the last step's clean prediction;
2. ``langevin_steps`` Langevin steps on ``x0`` targeting ``p(x0 | x_t) p(y | x0)`` with
   ``p(x0 | x_t) ~ N(x0_hat, r^2 I)``, ``r = sigma_k`` (the level's noise, as the paper):

       x0 <- x0 + lr_k (-(x0 - x0_hat) / r^2 - grad ||A(x0) - y||^2 / (2 sigma_y^2)) + sqrt(2 lr_k) e

   with ``lr_k = langevin_lr * (lr_min_ratio + (1 - lr_min_ratio) k / K)``, the paper's linear decay
   of the step along the annealing (``k`` counts down from ``K``). Stable while
   ``lr_k * (||A||^2 / sigma_y^2 + 1 / r^2) < 2``: the default 1e-4 suits sigma_y = 0.01 and
   ``||A|| <= 1``;
3. the next state ``x = x0 + sigma_{k-1} e`` (variance-exploding view, ``sigma = sqrt((1 - abar) / abar)``),
   handed to the prior as ``z = sqrt(abar) x``.

The data gradient goes through ``A`` only (any differentiable operator); the network runs forward
only: NFE = ``num_steps * ode_steps``. Fresh noise per sample from the sample's seed stream.
History: ``x0`` after each level's Langevin steps (every ``report_every`` levels), then the final
``clip(x0)``.

The maths: docs/algorithms.md, section 11.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .base import Operator, Prior, Rngs, RunState, Tensor, register
from .numerics import draw_noise, per_sample_mean_square, per_sample_sum_square
from .stepwise import StepwiseSolver
from monai_dmilo.checks import check_positive

__all__ = ["DAPS"]


@register("daps")
class DAPS(StepwiseSolver):
    """Decoupled annealing posterior sampling (see module docstring).

    Args:
        num_steps: annealing levels K (the paper uses 200 for its 1K-NFE setting).
        ode_steps: DDIM steps of each level's ODE solve to ``x0_hat`` (the paper: 5).
        langevin_steps: Langevin steps per level (the paper: 100).
        langevin_lr: the Langevin step size at the first level (see module docstring).
        lr_min_ratio: the step size at the last level relative to the first.
        sigma_y: measurement noise standard deviation (image units, > 0).
        report_every: progress bar / callback interval in levels.
        selection, selection_params, progress, callback: see :class:`~.base.Solver`.
    """

    tuning_knob = "langevin_lr"

    def __init__(
        self,
        *,
        num_steps: int = 200,
        ode_steps: int = 5,
        langevin_steps: int = 100,
        langevin_lr: float = 1e-4,
        lr_min_ratio: float = 0.01,
        sigma_y: float = 0.01,
        report_every: int = 10,
        **common: Any,
    ) -> None:
        super().__init__(num_steps=num_steps, report_every=report_every, **common)
        for name, value in (("ode_steps", ode_steps), ("langevin_steps", langevin_steps)):
            check_positive(name, value, integer=True)
        check_positive("langevin_lr", langevin_lr)
        check_positive("lr_min_ratio", lr_min_ratio)
        check_positive("sigma_y", sigma_y)
        if num_steps > 999:
            raise ValueError(f"num_steps must be at most 999 (the prior's timesteps), got {num_steps!r}.")
        self.ode_steps, self.langevin_steps = ode_steps, langevin_steps
        self.langevin_lr, self.lr_min_ratio, self.sigma_y = float(langevin_lr), float(lr_min_ratio), float(sigma_y)

    def _run(self, state: RunState, y: Tensor, operator: Operator, prior: Prior, z0: Tensor, rngs: Rngs) -> None:
        total = prior.num_train_timesteps
        levels = torch.linspace(total - 1, 0, self.num_steps + 1).round().long().tolist()   # t_K ... t_0 = 0
        abar = prior.alphas_cumprod.double().cpu()

        z = z0
        state.x = z0.clamp(-1.0, 1.0)
        for k, t in enumerate(levels[:-1]):
            grid = torch.linspace(t, 0, self.ode_steps + 1).round().long().tolist()
            pairs = [(a, b) for a, b in zip(grid[:-1], grid[1:]) if a > b]
            ode = prior.with_timesteps(pairs)
            with torch.no_grad():
                state_t = z
                for i in range(ode.num_steps - 1):
                    state_t = ode.step(state_t, i)
                x0_hat, _ = ode.denoise(state_t, ode.num_steps - 1)     # the clean prediction of the last step
            state.count(forward=ode.num_steps, nfe=ode.num_steps)
            r2 = float((1.0 - abar[t]) / abar[t])
            lr = self.langevin_lr * (self.lr_min_ratio + (1.0 - self.lr_min_ratio) * (self.num_steps - k) / self.num_steps)
            x0 = x0_hat.clone()
            for _ in range(self.langevin_steps):
                x0 = x0.detach().requires_grad_(True)
                misfit = per_sample_sum_square(operator(x0) - y) / (2.0 * self.sigma_y**2)
                (grad,) = torch.autograd.grad(misfit.sum(), x0)
                with torch.no_grad():
                    x0 = x0 - lr * ((x0 - x0_hat) / r2 + grad) + math.sqrt(2.0 * lr) * draw_noise(rngs, z0.shape[1:], z0)
            x0 = x0.detach()
            t_next = levels[k + 1]
            with torch.no_grad():
                sigma_next = math.sqrt(float((1.0 - abar[t_next]) / abar[t_next]))
                z = math.sqrt(float(abar[t_next])) * (x0 + sigma_next * draw_noise(rngs, z0.shape[1:], z0))
            self._record_step(state, k, self.num_steps, x0, per_sample_mean_square(operator(x0) - y))
        with torch.no_grad():
            final = x0.clamp(-1.0, 1.0)
            state.record(final, {"data_fit": per_sample_mean_square(operator(final) - y)}, position=self.num_steps)
