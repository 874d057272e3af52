"""DMILO-PGD (docs/algorithms.md, section 5, Algorithm 2): projected gradient descent, DMILO as projection.

``X = 0`` (a warm start's estimate with ``warm_start``); per outer iteration:

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

What each outer iteration reports (``output``): ``"projection"`` (the paper's ``X``), ``"gradient"``
(its gradient iterate ``X'``, clipped), or ``"discrepancy"``: per sample, ``X`` when its data fit
``mean(|A(X) - y|^2)`` is within ``tau * sigma^2 *`` the measured fraction of ``y`` (it explains the
data to the noise level, so the prior's image is kept), else ``X'``, which fits the data better
(``output_params: {sigma, tau}``, docs/algorithms.md section 13). The algorithm itself always
continues from ``X``.

In blind mode the fidelity step and ``A(X')`` use the current kernel estimate (held fixed there).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from .dmilo_options import squared_fidelity_step
from .numerics import per_sample_mean_square, per_sample_norm
from .selection import discrepancy_level
from monai_dmilo.checks import check_positive
from .base import register
from .dmilo import DMILO, DMILOProblem

__all__ = ["DMILOPGD", "FIDELITY_STEPS", "OUTPUTS"]


def _norm_clipped_step(operator: Callable, x: torch.Tensor, y: torch.Tensor, lr_x: float) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    loss = per_sample_norm(operator(x) - y).sum()
    (grad,) = torch.autograd.grad(loss, x)
    return (x - lr_x * grad).clamp(-1.0, 1.0).detach()


#: what an outer iteration reports (see the module docstring)
OUTPUTS = ("projection", "gradient", "discrepancy")


def _check_output_params(spec: Mapping[str, float] | None) -> dict[str, float] | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or not set(spec) <= {"sigma", "tau"} or "sigma" not in spec:
        raise ValueError(f"output_params must be a mapping {{sigma: <noise std>, tau: <~1>}}, got {spec!r}.")
    out = {"sigma": float(spec["sigma"]), "tau": float(spec.get("tau", 1.0))}
    for key, value in out.items():
        check_positive(f"output_params {key}", value)
    return out


FIDELITY_STEPS: dict[str, Callable[[Callable, torch.Tensor, torch.Tensor, float], torch.Tensor]] = {
    "squared": squared_fidelity_step,
    "norm_clipped": _norm_clipped_step,
}


@register("dmilo_pgd")
class DMILOPGD(DMILO):
    """DMILO-PGD: Algorithm 2 of the paper (see module docstring).

    Args:
        lr_x: the fidelity step size eta.
        num_fidelity_steps: fidelity steps per outer iteration (1 for inpainting and SR).
        fidelity: ``"squared"`` or ``"norm_clipped"`` (see module docstring).
        output: ``"projection"`` (default), ``"gradient"`` or ``"discrepancy"`` (see module docstring).
        output_params: ``{"sigma": s, "tau": t}`` for ``output="discrepancy"``.
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
        output: str = "projection",
        output_params: Mapping[str, float] | None = None,
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
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {list(OUTPUTS)}, got {output!r}.")
        if (output == "discrepancy") != (output_params is not None):
            raise ValueError(f"output_params {{sigma, tau}} go with output 'discrepancy' (and only with it); "
                             f"got output {output!r} with output_params {output_params!r}.")
        self.output = output
        self.output_params = _check_output_params(output_params)

    def _begin(self, ctx: DMILOProblem) -> None:
        """``X = 0`` (the paper's), or the warm start's estimate (the chain's initial image) when one is set."""
        ctx.X = ctx.latents[-1].clamp(-1.0, 1.0) if self.warm_start is not None else torch.zeros_like(ctx.latents[-1])

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

    def _output(self, ctx: DMILOProblem, x: torch.Tensor, fit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The projection ``x``, the gradient iterate X' or the per-sample discrepancy choice, with its data fit."""
        if self.output == "projection":
            return x, fit
        with torch.no_grad():
            x_prime = ctx.X_prime.clamp(-1.0, 1.0)
            fit_prime = per_sample_mean_square(ctx.operator(x_prime) - ctx.y)
            if self.output == "gradient":
                return x_prime, fit_prime
            level = discrepancy_level(ctx.y, **self.output_params).to(fit.device)
            keep = fit.double() <= level  # the projection explains y to the noise level
            return torch.where(keep.view(-1, *(1,) * (x.ndim - 1)), x, x_prime), torch.where(keep, fit, fit_prime)

    def _record_images(self, ctx: DMILOProblem) -> dict[str, torch.Tensor]:
        """The callback also sees this outer iteration's gradient iterate ``x_prime`` (X', clipped)."""
        return {"x_prime": ctx.X_prime.clamp(-1.0, 1.0)}
