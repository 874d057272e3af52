"""DMPlug (docs/algorithms.md, section 3): optimise the initial noise through the whole sampler.

    z* = argmin_z || A(clip(G(z))) - y ||^2  (a mean over each sample's elements),   x* = clip(G(z*))

Adam on ``z``. Every iteration back-propagates through all N network evaluations, so activation
memory grows linearly with N; ``checkpointing=True`` recomputes each DDIM step in the backward pass
(``torch.utils.checkpoint``, non-reentrant) to trade that memory for time.

History: one record per iteration (the iterate ``clip(G(z_t))`` whose loss the step used) plus a
final record for ``clip(G(z*))``. With ``selection="es_wmv"`` the iterations stop once every sample
of the batch has stopped (checked every ``check_every`` iterations, the only host syncs).
"""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from .base import Operator, Prior, Rngs, RunState, Solver, Tensor, register
from .numerics import per_sample_mean_square
from monai_dmilo.checks import check_positive

__all__ = ["DMPlug"]


@register("dmplug")
class DMPlug(Solver):
    """DMPlug with optional gradient checkpointing.

    Args:
        num_iters: Adam iterations (paper: 5,000 for SR/inpainting, 10,000 nonlinear deblurring).
        lr: Adam learning rate on ``z``.
        checkpointing: recompute each DDIM step in the backward pass (less memory, more time).
        report_every: progress bar / callback interval in iterations (reporting may sync).
        check_every: interval in iterations of the early-stopping check (one host sync).
        selection, selection_params, progress, callback: see :class:`~.base.Solver`.
    """

    tuning_knob = "num_iters"
    tuning_factors = ()
    tuning_extendable = False  # num_iters: DMPlug's plateau, not a grid

    def __init__(
        self,
        *,
        num_iters: int = 5000,
        lr: float = 1e-2,
        checkpointing: bool = False,
        report_every: int = 100,
        check_every: int = 10,
        **common: Any,
    ) -> None:
        super().__init__(**common)
        check_positive("num_iters", num_iters, integer=True, allow_zero=True)
        check_positive("lr", lr, allow_zero=True)
        check_positive("report_every", report_every, integer=True)
        check_positive("check_every", check_every, integer=True)
        self.num_iters = num_iters
        self.lr = float(lr)
        self.checkpointing = bool(checkpointing)
        self.report_every = report_every
        self.check_every = check_every

    latent_priors = True

    def _progress_total(self, prior: Prior) -> int | None:
        return self.num_iters + 1

    def _generate(self, prior: Any, z: torch.Tensor) -> torch.Tensor:
        for i in range(prior.num_steps):
            if self.checkpointing:
                z = checkpoint(prior.step, z, i, use_reentrant=False)
            else:
                z = prior.step(z, i)
        return z

    def _run(self, state: RunState, y: Tensor, operator: Operator, prior: Prior, z0: Tensor, rngs: Rngs) -> None:
        n = prior.num_steps
        z = z0.detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=self.lr)
        for it in range(self.num_iters):
            optimizer.zero_grad(set_to_none=True)
            x = self._generate(prior, z).clamp(-1.0, 1.0)
            fit = per_sample_mean_square(operator(x) - y)
            fit.sum().backward()
            optimizer.step()
            state.count(forward=2 * n if self.checkpointing else n, backward=n, nfe=n)
            state.record(x.detach(), {"data_fit": fit}, report=(it + 1) % self.report_every == 0)
            if state.selection.can_stop and (it + 1) % self.check_every == 0 and state.all_stopped():
                break
        state.extras["iterations_run"] = state.num_records
        with torch.no_grad():  # the estimate x* = clip(G(z*))
            x = self._generate(prior, z.detach()).clamp(-1.0, 1.0)
            fit = per_sample_mean_square(operator(x) - y)
        state.count(forward=n, nfe=n)
        state.extras["z"] = z.detach()
        state.record(x, {"data_fit": fit})
