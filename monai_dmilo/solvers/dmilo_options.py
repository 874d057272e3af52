"""DMILO's ground-truth-free options beyond the paper (docs/algorithms.md, section 13), each off by default.

* **warm start** (``warm_start: {solver: NAME, params: {...}}``): another solver's estimate ``x_hat``
  (e.g. TV or DDRM, run first on the same ``y`` and seeds) starts DMILO. Latent ``j`` (the input of
  layer ``j``, DDIM step ``b_j`` with ``abar_j``) is set to ``sqrt(abar_j) x_hat + sqrt(1 - abar_j) z_0``
  (one noise, as a deterministic DDIM path carries it), the image ``z_L`` to ``x_hat``, and each
  deviation to ``nu_j = z_{j+1} - g_j(z_j)``, so the initial chain regenerates ``x_hat`` exactly; the
  sweeps then move it towards the prior's range while fitting ``y``. Pixel priors in [-1, 1] only.
* **refinement** (``refine: {steps: K, lr: eta}``): after the outer loop, ``K`` gradient steps on the
  data fit from the final estimate, ``x <- x - eta * grad ||A(clip(x)) - y||^2`` (per sample), the last
  one clipped and recorded as one more iterate (DMILO-PGD's fidelity step, applied to the output).
  ``lr: auto`` takes ``eta = 1 / (2 ||A||^2)`` per sample, the step that pastes ``y`` into a mask's
  observed pixels (``||A||^2`` by 20 power iterations on ``A^T A``, no network; linear operators).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from monai_dmilo.checks import check_positive
from .numerics import per_sample_sum_square

__all__ = ["check_warm_start", "check_refine", "warm_start_chain", "squared_fidelity_step", "refine"]


def check_warm_start(spec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``{"solver": name, "params": {...}}`` checked (the solver is built once to check its params), or None."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or not set(spec) <= {"solver", "params"} or not isinstance(spec.get("solver"), str):
        raise ValueError(f"warm_start must be a mapping {{solver: <name>, params: {{...}}}} or null, got {spec!r}.")
    if spec["solver"] in ("dmilo", "dmilo_pgd"):
        raise ValueError(f"warm_start solver must be another solver than DMILO / DMILO-PGD, got {spec['solver']!r}.")
    params = dict(spec.get("params") or {})
    from monai_dmilo.solvers import build

    build(spec["solver"], **params)  # an unknown solver or parameter fails here, once
    return {"solver": spec["solver"], "params": params}


def check_refine(spec: Mapping[str, Any] | None) -> dict[str, float] | None:
    """``{"steps": K, "lr": eta}`` checked, or None."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping) or set(spec) != {"steps", "lr"}:
        raise ValueError(f"refine must be a mapping {{steps: <int>, lr: <step size>}} or null, got {spec!r}.")
    check_positive("refine steps", spec["steps"], integer=True, allow_zero=True)
    if spec["lr"] != "auto":
        check_positive("refine lr", spec["lr"])
    return {"steps": int(spec["steps"]), "lr": spec["lr"] if spec["lr"] == "auto" else float(spec["lr"])}


def warm_start_chain(prior: Any, blocks: list[range], x_hat: torch.Tensor, z0: torch.Tensor,
                     apply_layer: Callable[[Any, torch.Tensor, range], torch.Tensor]) -> tuple[list, list]:
    """Latents ``z_0 .. z_L`` and deviations ``nu_0 .. nu_{L-1}`` whose chain regenerates ``x_hat``
    ``(B, C, H, W)`` exactly (see the module docstring); L evaluations of the layers, no gradients."""
    with torch.no_grad():
        latents = []
        for block in blocks:
            abar = prior.step_coefficients[block.start][0]
            latents.append(abar**0.5 * x_hat + (1.0 - abar) ** 0.5 * z0)
        latents.append(x_hat.clone())
        deviations = [latents[j + 1] - apply_layer(prior, latents[j], block) for j, block in enumerate(blocks)]
    return latents, deviations


def squared_fidelity_step(operator: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                          lr: float) -> torch.Tensor:
    """``x - lr * grad ||A(clip(x)) - y||^2`` (sums per sample) for ``x`` ``(B, C, H, W)``, detached."""
    x = x.detach().requires_grad_(True)
    loss = per_sample_sum_square(operator(x.clamp(-1.0, 1.0)) - y).sum()
    (grad,) = torch.autograd.grad(loss, x)
    return (x - lr * grad).detach()


def operator_norm_squared(operator: Callable[[torch.Tensor], torch.Tensor], like: torch.Tensor,
                          iterations: int = 20) -> torch.Tensor:
    """Per-sample ``||A||^2`` ``(B,)`` of a linear operator by power iteration on ``A^T A`` (``A^T A v`` is
    the gradient of ``||A(v)||^2 / 2``); ``like`` ``(B, C, H, W)`` gives the shape, dtype and device."""
    v = torch.randn(like.shape, generator=torch.Generator().manual_seed(0), dtype=like.dtype).to(like.device)
    norm = torch.ones(like.shape[0], dtype=like.dtype, device=like.device)
    for _ in range(iterations):
        v = (v / v.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, *(1,) * (like.ndim - 1))).requires_grad_(True)
        (w,) = torch.autograd.grad(per_sample_sum_square(operator(v)).sum() / 2, v)
        norm = (w * v).detach().flatten(1).sum(1)
        v = w.detach()
    return norm.clamp_min(1e-12)


def refine(operator: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor,
           steps: int, lr: float | str) -> torch.Tensor:
    """``steps`` data-fit gradient steps from ``x`` ``(B, C, H, W)`` (``lr`` a float or ``"auto"``),
    clipped to [-1, 1] at the end."""
    if steps and lr == "auto":
        lr = (0.5 / operator_norm_squared(operator, x)).view(-1, *(1,) * (x.ndim - 1))
    for _ in range(steps):
        x = squared_fidelity_step(operator, x, y, lr)
    return x.clamp(-1.0, 1.0)
