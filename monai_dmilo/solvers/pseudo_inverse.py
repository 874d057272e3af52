"""The no-prior reference: ``x = clip(A^+ y)``, the operator's pseudo-inverse applied to the measurement.

Zero-filled reconstruction for masks and single-coil MRI (exact pseudo-inverses), the least-norm
least-squares image for SR and multi-coil MRI, an early-stopped (regularised) conjugate-gradient
solve for blur and CT (:meth:`~monai_dmilo.operators.base.LinearOperator.pseudo_inverse`). No
network, no randomness: NFE 0 and the same output for every seed. History: one record.

The maths: docs/algorithms.md, section 11.
"""
from __future__ import annotations

import torch

from .base import Operator, Prior, Rngs, RunState, Solver, Tensor, register
from .numerics import per_sample_mean_square

__all__ = ["PseudoInverse"]


@register("pseudo_inverse")
class PseudoInverse(Solver):
    """``clip(A^+ y)`` (see module docstring); ``selection``, ``progress``, ``callback`` as :class:`~.base.Solver`.

    Registered as ``pseudo_inverse``; ``adjoint``, its name before 0.5, still builds it with a
    deprecation warning (it never applied the adjoint ``A^H``)."""

    tuning_knob = None
    tuning_factors = ()
    requires = "pseudo_inverse"

    latent_priors = True  # the prior is not used

    def _progress_total(self, prior: Prior) -> int | None:
        return 1

    def _run(self, state: RunState, y: Tensor, operator: Operator, prior: Prior, z0: Tensor, rngs: Rngs) -> None:
        with torch.no_grad():
            x = operator.pseudo_inverse(y).to(z0.dtype).clamp(-1.0, 1.0)
            state.record(x, {"data_fit": per_sample_mean_square(operator(x) - y)})
