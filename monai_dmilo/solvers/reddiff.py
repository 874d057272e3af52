"""RED-diff (Mardani, Song, Kautz and Vahdat, ICLR 2024, "A Variational Perspective on Solving Inverse
Problems with Diffusion Models").

The estimate ``mu`` (an image) is optimised by Adam while the timestep runs down ``num_steps``
uniform timesteps of the prior, one Adam step per timestep ``t``:

    x_t   = sqrt(abar_t) mu + sqrt(1 - abar_t) eps,              eps ~ N(0, I), fresh each step
    loss  = mean(|A(mu) - y|^2) / 2 + lam * w_t * mean(sg(eps_pred(x_t, t) - eps) * mu)
    w_t   = sqrt((1 - abar_t) / abar_t)                           (the paper's SNR^(-1/2) weighting)

per sample (``sg``: no gradient through the network, which is evaluated forward only). The second
term is the score-matching regulariser whose gradient in ``mu`` is ``lam * w_t * (eps_pred - eps)``.
``mu`` starts at ``clip(A^+ y)`` when the operator has a pseudo-inverse, else at 0; it is clipped
to [-1, 1] after each step. Works for any differentiable operator (the data term is backpropagated
through ``A`` only).

One network forward per step (NFE = ``num_steps``, ``nfe_backward`` = 0). Noise per sample from
the sample's seed stream. History: ``data_fit`` every ``report_every`` steps and at the end.

The maths: docs/algorithms.md, section 11.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from .base import Operator, Prior, Rngs, RunState, Tensor, register
from .numerics import draw_noise, per_sample_mean_square
from .stepwise import StepwiseSolver
from monai_dmilo.checks import check_positive

__all__ = ["REDDiff"]


@register("reddiff")
class REDDiff(StepwiseSolver):
    """RED-diff (see module docstring).

    Args:
        lam: weight of the diffusion regulariser (the paper's lambda).
        lr: Adam step size on ``mu`` (images in [-1, 1]).
        num_steps: uniform timesteps, one Adam step each (at most 999; the paper uses 1,000).
        report_every: progress bar / callback / history interval in steps.
        selection, selection_params, progress, callback: see :class:`~.base.Solver`.
    """

    tuning_knob = "lam"

    def __init__(
        self,
        *,
        lam: float = 0.25,
        lr: float = 0.1,
        num_steps: int = 999,
        report_every: int = 50,
        **common: Any,
    ) -> None:
        super().__init__(num_steps=num_steps, report_every=report_every, **common)
        check_positive("lam", lam, allow_zero=True)
        check_positive("lr", lr)
        self.lam, self.lr = float(lam), float(lr)

    def _run(self, state: RunState, y: Tensor, operator: Operator, prior: Prior, z0: Tensor, rngs: Rngs) -> None:
        gen = prior.with_uniform_steps(self.num_steps)
        with torch.no_grad():
            if callable(getattr(operator, "pseudo_inverse", None)):
                start = operator.pseudo_inverse(y).to(z0.dtype).clamp(-1.0, 1.0)
            else:
                start = torch.zeros_like(z0)
        mu = start.clone().requires_grad_(True)
        state.x = start
        optimizer = torch.optim.Adam([mu], lr=self.lr)
        for i, (a_t, _) in enumerate(gen.step_coefficients):
            noise = draw_noise(rngs, z0.shape[1:], z0)
            with torch.no_grad():
                x_t = math.sqrt(a_t) * mu + math.sqrt(1.0 - a_t) * noise
                direction = gen.eps(x_t, i) - noise
            weight = self.lam * math.sqrt((1.0 - a_t) / a_t)
            fit = per_sample_mean_square(operator(mu) - y)
            loss = 0.5 * fit + weight * (direction * mu).flatten(1).mean(1)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            state.count(forward=1, nfe=1)
            with torch.no_grad():
                mu.clamp_(-1.0, 1.0)
                if (i + 1) % self.report_every == 0 or i + 1 == self.num_steps:  # records at the reports only
                    current = mu.detach().clone()
                    self._record_step(state, i, self.num_steps, current,
                                      per_sample_mean_square(operator(current) - y))
