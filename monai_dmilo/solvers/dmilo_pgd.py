"""DMILO-PGD (docs/algorithms.md, section 5, Algorithm 2): projected gradient descent, DMILO as projection.

``X = 0``; per outer iteration:

1. data-fidelity step(s) ``X' = X - lr_x * grad_X f(X)``, ``num_fidelity_steps`` of them;
2. projection: the DMILO backward sweep with the last target ``A(X')`` (computed without
   gradients) instead of ``y``, then the regeneration pass; latents and deviations carry over;
3. ``X = clip(z_N, -1, 1)``.

Fidelity variants (``fidelity``), per sample (sums over one sample's elements):

* ``"squared"`` (inpainting, SR): ``X <- X - lr_x * grad ||A(clip(X)) - y||^2``.
* ``"norm_clipped"`` (the reference code's deblurring variant, many small steps):
  ``X <- clip(X - lr_x * grad ||A(X) - y||_2, -1, 1)`` (the norm, not its square).

With a masking operator and ``lr_x = 0.5`` one ``"squared"`` step pastes ``y`` into the observed
pixels, so ``A(X') = y`` and DMILO-PGD returns DMILO's estimate (section 5).

In blind mode the fidelity step and ``A(X')`` use the current kernel estimate (held fixed there).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from .numerics import per_sample_norm, per_sample_sum_square
from monai_dmilo.checks import check_positive
from .base import register
from .dmilo import DMILO, DMILOProblem

__all__ = ["DMILOPGD", "FIDELITY_STEPS"]


def _squared_step(operator: Callable, x: torch.Tensor, y: torch.Tensor, lr_x: float) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    loss = per_sample_sum_square(operator(x.clamp(-1.0, 1.0)) - y).sum()
    (grad,) = torch.autograd.grad(loss, x)
    return (x - lr_x * grad).detach()


def _norm_clipped_step(operator: Callable, x: torch.Tensor, y: torch.Tensor, lr_x: float) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    loss = per_sample_norm(operator(x) - y).sum()
    (grad,) = torch.autograd.grad(loss, x)
    return (x - lr_x * grad).clamp(-1.0, 1.0).detach()


FIDELITY_STEPS: dict[str, Callable[[Callable, torch.Tensor, torch.Tensor, float], torch.Tensor]] = {
    "squared": _squared_step,
    "norm_clipped": _norm_clipped_step,
}


@register("dmilo_pgd")
class DMILOPGD(DMILO):
    """DMILO-PGD: Algorithm 2 of the paper (see module docstring).

    Args:
        lr_x: the fidelity step size eta.
        num_fidelity_steps: fidelity steps per outer iteration (1 for inpainting and SR).
        fidelity: ``"squared"`` or ``"norm_clipped"`` (see module docstring).
        **dmilo: every :class:`~.dmilo.DMILO` argument (``num_outer``, ``num_inner``, ``lr_z``,
            ``lr_nu``, ``lambda_nu``, ``lambda_z``, blind mode, selection, progress, callback).

    Defaults are the inpainting preset of docs/algorithms.md section 7.
    """

    tuning_knob = "lr_x"
    tuning_factors = (0.5, 1.0, 2.0)

    def __init__(
        self,
        *,
        lr_x: float = 0.5,
        num_fidelity_steps: int = 1,
        fidelity: str = "squared",
        **dmilo: Any,
    ) -> None:
        super().__init__(**dmilo)
        if self.inner_discrepancy is not None:
            raise ValueError("inner_discrepancy applies to DMILO, whose last layer fits y; DMILO-PGD's fits A(X') "
                             "(use selection: discrepancy to pick its outer iterate instead).")
        check_positive("lr_x", lr_x, allow_zero=True)
        check_positive("num_fidelity_steps", num_fidelity_steps, integer=True)
        if fidelity not in FIDELITY_STEPS:
            raise ValueError(f"fidelity must be one of {sorted(FIDELITY_STEPS)}, got {fidelity!r}.")
        self.lr_x = float(lr_x)
        self.num_fidelity_steps = num_fidelity_steps
        self.fidelity = fidelity

    def _begin(self, ctx: DMILOProblem) -> None:
        ctx.X = torch.zeros_like(ctx.latents[-1])

    def _last_target(self, ctx: DMILOProblem) -> torch.Tensor:
        step = FIDELITY_STEPS[self.fidelity]
        x = ctx.X
        for _ in range(self.num_fidelity_steps):
            x = step(ctx.operator, x, ctx.y, self.lr_x)
        ctx.X_prime = x
        with torch.no_grad():
            return ctx.operator(x)

    def _end_outer(self, ctx: DMILOProblem, x: torch.Tensor) -> None:
        ctx.X = x
