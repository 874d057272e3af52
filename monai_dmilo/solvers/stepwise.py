"""Bases of the solvers that walk down the prior's timesteps once (DDRM, DiffPIR, PiGDM, DPS,
RED-diff, DAPS), as opposed to DMILO and DMPlug, which optimise through the whole prior.

* :class:`StepwiseSolver` owns ``num_steps`` and ``report_every`` (checked once) and the one
  progress rule: the bar counts steps, reported every ``report_every`` steps and at the last.
* :class:`SamplingSolver` adds the DDIM-style sampling loop over ``num_steps`` uniform timesteps
  (docs/algorithms.md, section 2): one network forward (and backward, for the guided ones) per step,
  one record per step (the clean prediction and its data fit), then the final ``clip(z_0)``.
  A subclass writes only its :meth:`SamplingSolver._step` (and :meth:`SamplingSolver._prepare`
  for what it computes once per solve).
"""
from __future__ import annotations

from typing import Any

import torch

from monai_dmilo.checks import check_positive
from .base import Operator, Prior, Rngs, RunState, Solver, Tensor
from .numerics import per_sample_mean_square

__all__ = ["StepwiseSolver", "SamplingSolver"]


class StepwiseSolver(Solver):
    """A solver of ``num_steps`` steps with progress every ``report_every`` steps.

    Args:
        num_steps: steps of the solve (uniform timesteps of the prior); None where a subclass
            allows the prior's own timesteps (DPS).
        report_every: progress bar / callback interval in steps.
        common: ``selection``, ``selection_params``, ``progress``, ``callback`` (see :class:`~.base.Solver`).
    """

    def __init__(self, *, num_steps: int | None, report_every: int, **common: Any) -> None:
        super().__init__(**common)
        if num_steps is not None:
            check_positive("num_steps", num_steps, integer=True)
        check_positive("report_every", report_every, integer=True)
        self.num_steps, self.report_every = num_steps, report_every

    def _total_steps(self, prior: Prior) -> int:
        return self.num_steps if self.num_steps is not None else prior.num_steps

    def _progress_total(self, prior: Prior) -> int | None:
        return self._total_steps(prior)

    def _uniform_prior(self, prior: Prior) -> Prior:
        """The prior over this solver's ``num_steps`` uniform timesteps (its own when None)."""
        return prior if self.num_steps is None else prior.with_uniform_steps(self.num_steps)

    def _record_step(self, state: RunState, step: int, total: int, x: Tensor, data_fit: Tensor) -> None:
        """Record the estimate ``x`` after step ``step`` (0-based) of ``total``; report on schedule."""
        done = step + 1
        state.record(x, {"data_fit": data_fit}, report=done % self.report_every == 0 or done == total, position=done)


class SamplingSolver(StepwiseSolver):
    """DDIM-style sampling with a per-step correction; subclasses implement :meth:`_step`.

    ``backward_passes`` (0 or 1) is the number of backward passes through the network per step.
    """

    backward_passes = 0

    def _prepare(self, y: Tensor, operator: Operator, z0: Tensor) -> Any:
        """What the steps need, computed once per solve (e.g. an SVD or ``A^+ y``)."""
        return None

    def _step(self, prior: Prior, i: int, z: Tensor, y: Tensor, operator: Operator, rngs: Rngs,
              context: Any) -> tuple[Tensor, Tensor, Tensor | None]:
        """One step ``t_i -> t_{i+1}`` of ``prior`` from ``z`` ``(B, C, H, W)``.

        Returns:
            ``(z_next, x0, data_fit)``: the next state, the step's clean estimate (recorded) and its
            per-sample ``(B,)`` data fit, or None to have it computed as ``mean(|A(x0) - y|^2)``.
        """
        raise NotImplementedError  # pragma: no cover - abstract

    def _run(self, state: RunState, y: Tensor, operator: Operator, prior: Prior, z0: Tensor, rngs: Rngs) -> None:
        prior = self._uniform_prior(prior)
        total = getattr(prior, "num_diffusion_steps", prior.num_steps)  # a latent prior's decoder is no step here
        decode = getattr(prior, "decode", None)
        context = self._prepare(y, operator, z0)
        z = z0
        with torch.no_grad():
            state.x = (z0 if decode is None else decode(z0)).clamp(-1.0, 1.0)
        for i in range(total):
            z, x0, fit = self._step(prior, i, z, y, operator, rngs, context)
            state.count(forward=1, backward=self.backward_passes, nfe=1)
            if fit is None:
                with torch.no_grad():
                    fit = per_sample_mean_square(operator(x0) - y)
            self._record_step(state, i, total, x0, fit)
        with torch.no_grad():
            final = (z.detach() if decode is None else decode(z.detach())).clamp(-1.0, 1.0)
            state.record(final, {"data_fit": per_sample_mean_square(operator(final) - y)}, position=total)
