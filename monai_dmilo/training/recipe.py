"""Training-recipe options of the prior trainer: learning-rate schedule and loss weighting.

Both are off by default (constant learning rate, plain epsilon MSE), which is the recipe the
first shipped priors were trained with. ``bundle/configs/train.yaml`` exposes them as
``lr_schedule``, ``lr_warmup``, ``lr_decay_start``, ``min_snr_gamma`` and ``parameterization``.

* :func:`lr_factor`: the multiplier of the base learning rate at an iteration (linear warm-up,
  then constant, cosine or linear decay to 0 at the last iteration; the decay may start late,
  ``decay_start``, so that a run trained at a constant rate ends with a cool-down).
* :func:`min_snr_weight`: Min-SNR-gamma weights for epsilon prediction (Hang et al., ICCV 2023):
  ``w(t) = min(SNR(t), gamma) / SNR(t)`` with ``SNR(t) = abar_t / (1 - abar_t)``.
* :func:`loss_weight`: Min-SNR, or the weight that turns the eps-MSE into a v-prediction
  network's v-MSE (``parameterization: v``, :mod:`monai_dmilo.priors.parameterization`).
* :class:`WeightedPrepareBatch` and :class:`WeightedDiffusionInferer`: the weighting inside MONAI's
  ``SupervisedTrainer``. The loss stays ``MSELoss``; prediction and target are both multiplied by
  ``sqrt(w(t))`` per sample, so the MSE is ``mean_b w(t_b) * mean((eps_pred - eps) ** 2)``.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from monai.engines.utils import DiffusionPrepareBatch
from monai.inferers import DiffusionInferer

from monai_dmilo.priors.parameterization import PARAMETERIZATIONS, parameterization_weight

__all__ = ["LR_SCHEDULES", "lr_factor", "min_snr_weight", "loss_weight", "WeightedPrepareBatch", "WeightedDiffusionInferer"]

LR_SCHEDULES = ("constant", "cosine", "linear")


def lr_factor(iteration: int, *, schedule: str, warmup: int, total: int, decay_start: int | None = None) -> float:
    """Multiplier of the base learning rate for 0-based ``iteration`` of ``total``.

    Warm-up: ``(iteration + 1) / warmup`` for the first ``warmup`` iterations. Then the rate stays
    at the base until ``start = max(warmup, decay_start or 0)``; after it, with
    ``p = (iteration - start) / (total - start)`` in [0, 1): ``constant`` 1, ``cosine``
    ``(1 + cos(pi p)) / 2``, ``linear`` ``1 - p``.
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {schedule!r}.")
    if iteration < warmup:
        return (iteration + 1) / warmup
    start = max(warmup, decay_start or 0)
    if schedule == "constant" or iteration < start:
        return 1.0
    progress = min(1.0, (iteration - start) / max(1, total - start))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def min_snr_weight(timesteps: torch.Tensor, alphas_cumprod: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma weights ``(B,)`` for epsilon prediction at integer ``timesteps`` ``(B,)``."""
    abar = alphas_cumprod.to(timesteps.device)[timesteps].float()
    snr = abar / (1.0 - abar)
    return torch.clamp(snr, max=float(gamma)) / snr


def loss_weight(timesteps: torch.Tensor, alphas_cumprod: torch.Tensor, *, min_snr_gamma: float | None = None,
                parameterization: str = "eps") -> torch.Tensor:
    """Per-sample weight ``(B,)`` of the eps-MSE at integer ``timesteps`` ``(B,)``.

    Min-SNR-gamma when ``min_snr_gamma`` is given (its weight is ``min(SNR, gamma)`` on the x0-MSE
    whatever the network predicts, so ``min(SNR, gamma) / SNR`` on the eps-MSE for ``"eps"`` and
    ``"v"`` alike); otherwise the parameterization's own MSE
    (:func:`monai_dmilo.priors.parameterization.parameterization_weight`: 1 for eps, ``1 / abar_t``
    for v).
    """
    if min_snr_gamma is not None:
        return min_snr_weight(timesteps, alphas_cumprod, min_snr_gamma)
    return parameterization_weight(timesteps, alphas_cumprod, parameterization)


class WeightedPrepareBatch(DiffusionPrepareBatch):
    """MONAI's ``DiffusionPrepareBatch`` with a target scaled by ``sqrt(w(t))`` per sample (:func:`loss_weight`).

    The inferer's keyword arguments gain ``loss_scale`` ``(B, 1, ..., 1)`` = ``sqrt(w(t))``, which
    :class:`WeightedDiffusionInferer` multiplies into the prediction.

    Args:
        num_train_timesteps: T of the schedule.
        alphas_cumprod: ``(T,)`` cumulative products of ``1 - beta`` (the scheduler's).
        min_snr_gamma: the Min-SNR clamp (5 in the paper), or None.
        parameterization: ``"eps"`` or ``"v"`` (what the network predicts inside).
    """

    def __init__(self, num_train_timesteps: int, *, alphas_cumprod: torch.Tensor, min_snr_gamma: float | None = None,
                 parameterization: str = "eps") -> None:
        super().__init__(num_train_timesteps=num_train_timesteps)
        if min_snr_gamma is not None and not float(min_snr_gamma) > 0:
            raise ValueError(f"min_snr_gamma must be a positive number or null, got {min_snr_gamma!r}.")
        if parameterization not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {sorted(PARAMETERIZATIONS)}, got {parameterization!r}.")
        self.alphas_cumprod = torch.as_tensor(alphas_cumprod)
        self.min_snr_gamma = None if min_snr_gamma is None else float(min_snr_gamma)
        self.parameterization = parameterization

    def __call__(self, batchdata: Any, device: Any = None, non_blocking: bool = False, **kwargs: Any):
        images, target, args, infer_kwargs = super().__call__(batchdata, device, non_blocking, **kwargs)
        weight = loss_weight(infer_kwargs["timesteps"], self.alphas_cumprod, min_snr_gamma=self.min_snr_gamma,
                             parameterization=self.parameterization)
        scale = weight.sqrt().to(target.dtype).view(-1, *([1] * (target.ndim - 1)))
        infer_kwargs["loss_scale"] = scale
        return images, target * scale, args, infer_kwargs


class WeightedDiffusionInferer(DiffusionInferer):
    """MONAI's ``DiffusionInferer`` whose training prediction is multiplied by ``loss_scale``."""

    def __call__(self, inputs: torch.Tensor, diffusion_model: Any, noise: torch.Tensor, timesteps: torch.Tensor,
                 *args: Any, loss_scale: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        prediction = super().__call__(inputs, diffusion_model, noise, timesteps, *args, **kwargs)
        return prediction if loss_scale is None else prediction * loss_scale
