"""Training-recipe options of the prior trainer: learning-rate schedule and Min-SNR loss weighting.

Both are off by default (constant learning rate, plain epsilon MSE), which is the recipe the
first shipped priors were trained with. ``bundle/configs/train.yaml`` exposes them as
``lr_schedule``, ``lr_warmup`` and ``min_snr_gamma``.

* :func:`lr_factor`: the multiplier of the base learning rate at an iteration (linear warm-up,
  then constant, cosine or linear decay to 0 at the last iteration).
* :func:`min_snr_weight`: Min-SNR-gamma weights for epsilon prediction (Hang et al., ICCV 2023):
  ``w(t) = min(SNR(t), gamma) / SNR(t)`` with ``SNR(t) = abar_t / (1 - abar_t)``.
* :class:`MinSNRPrepareBatch` and :class:`WeightedDiffusionInferer`: the weighting inside MONAI's
  ``SupervisedTrainer``. The loss stays ``MSELoss``; prediction and target are both multiplied by
  ``sqrt(w(t))`` per sample, so the MSE is ``mean_b w(t_b) * mean((eps_pred - eps) ** 2)``.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from monai.engines.utils import DiffusionPrepareBatch
from monai.inferers import DiffusionInferer

__all__ = ["LR_SCHEDULES", "lr_factor", "min_snr_weight", "MinSNRPrepareBatch", "WeightedDiffusionInferer"]

LR_SCHEDULES = ("constant", "cosine", "linear")


def lr_factor(iteration: int, *, schedule: str, warmup: int, total: int) -> float:
    """Multiplier of the base learning rate for 0-based ``iteration`` of ``total``.

    Warm-up: ``(iteration + 1) / warmup`` for the first ``warmup`` iterations. After it, with
    ``p = (iteration - warmup) / (total - warmup)`` in [0, 1): ``constant`` 1, ``cosine``
    ``(1 + cos(pi p)) / 2``, ``linear`` ``1 - p``.
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {schedule!r}.")
    if iteration < warmup:
        return (iteration + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (iteration - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def min_snr_weight(timesteps: torch.Tensor, alphas_cumprod: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma weights ``(B,)`` for epsilon prediction at integer ``timesteps`` ``(B,)``."""
    abar = alphas_cumprod.to(timesteps.device)[timesteps].float()
    snr = abar / (1.0 - abar)
    return torch.clamp(snr, max=float(gamma)) / snr


class MinSNRPrepareBatch(DiffusionPrepareBatch):
    """MONAI's ``DiffusionPrepareBatch`` with a target scaled by ``sqrt(w(t))`` per sample.

    The inferer's keyword arguments gain ``loss_scale`` ``(B, 1, ..., 1)`` = ``sqrt(w(t))``, which
    :class:`WeightedDiffusionInferer` multiplies into the prediction.

    Args:
        num_train_timesteps: T of the schedule.
        alphas_cumprod: ``(T,)`` cumulative products of ``1 - beta`` (the scheduler's).
        gamma: the Min-SNR clamp (5 in the paper).
    """

    def __init__(self, num_train_timesteps: int, *, alphas_cumprod: torch.Tensor, gamma: float) -> None:
        super().__init__(num_train_timesteps=num_train_timesteps)
        if not float(gamma) > 0:
            raise ValueError(f"min_snr_gamma must be a positive number or null, got {gamma!r}.")
        self.alphas_cumprod, self.gamma = torch.as_tensor(alphas_cumprod), float(gamma)

    def __call__(self, batchdata: Any, device: Any = None, non_blocking: bool = False, **kwargs: Any):
        images, target, args, infer_kwargs = super().__call__(batchdata, device, non_blocking, **kwargs)
        weight = min_snr_weight(infer_kwargs["timesteps"], self.alphas_cumprod, self.gamma)
        scale = weight.sqrt().to(target.dtype).view(-1, *([1] * (target.ndim - 1)))
        infer_kwargs["loss_scale"] = scale
        return images, target * scale, args, infer_kwargs


class WeightedDiffusionInferer(DiffusionInferer):
    """MONAI's ``DiffusionInferer`` whose training prediction is multiplied by ``loss_scale``."""

    def __call__(self, inputs: torch.Tensor, diffusion_model: Any, noise: torch.Tensor, timesteps: torch.Tensor,
                 *args: Any, loss_scale: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        prediction = super().__call__(inputs, diffusion_model, noise, timesteps, *args, **kwargs)
        return prediction if loss_scale is None else prediction * loss_scale
