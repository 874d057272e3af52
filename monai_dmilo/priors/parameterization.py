"""Epsilon-prediction networks whose inside predicts something else.

Every solver and docs/algorithms.md read a prior as ``eps(x_t, t)``. What the trained network computes
inside may differ: :class:`VPredictionEps` wraps a network ``F`` trained to predict the
"velocity" ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0`` (Salimans & Ho, ICLR 2022) and returns

    eps(x_t, t) = sqrt(1 - abar_t) x_t + sqrt(abar_t) F(x_t, t),

which is exact when ``F = v``. Its x0 prediction is ``sqrt(abar_t) x_t - sqrt(1 - abar_t) F``:
bounded by ``F`` at every noise level, where a plain eps network's x0 error is its eps error
times ``sqrt((1 - abar_t) / abar_t)`` (156x at t = 999 of the linear schedule). Trained with the
v-MSE, i.e. the eps-MSE weighted by ``1 / abar_t`` (:func:`parameterization_weight`).

``PARAMETERIZATIONS`` maps a model config's / ``train.yaml``'s ``parameterization`` to the wrapper.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from monai_dmilo.priors.stepwise import linear_alphas_cumprod

__all__ = ["VPredictionEps", "PARAMETERIZATIONS", "wrap_network", "parameterization_weight"]


class VPredictionEps(nn.Module):
    """``eps(x, t) = sqrt(1 - abar_t) x + sqrt(abar_t) network(x, t)`` for a v-prediction ``network``.

    Args:
        network: ``network(x, t) -> v`` with ``x`` ``(B, C, H, W)`` and ``t`` a ``(B,)`` long tensor.
        num_train_timesteps, beta_start, beta_end: the DDPM linear schedule it was trained with.

    The state dict holds the wrapped network's weights under ``network.``; ``abar`` is rebuilt from
    the schedule (not stored).
    """

    def __init__(
        self, network: nn.Module, *, num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
    ) -> None:
        super().__init__()
        self.network = network
        self.in_channels = getattr(network, "in_channels", None)
        abar = linear_alphas_cumprod(num_train_timesteps, beta_start, beta_end).float()
        self.register_buffer("abar", abar, persistent=False)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, **kwargs: object) -> torch.Tensor:
        """eps ``(B, C, ...)`` (plus the network's extra channels, e.g. a learned variance); ``kwargs``
        (MONAI's ``context``, ...) are passed to the network."""
        v = self.network(x, timesteps, **kwargs)
        a = self.abar.to(x.device)[timesteps.long()].to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
        channels = x.shape[1]
        eps = (1.0 - a).sqrt() * x + a.sqrt() * v[:, :channels]
        return torch.cat([eps, v[:, channels:]], dim=1) if v.shape[1] > channels else eps


def _identity(network: nn.Module, **schedule: float) -> nn.Module:
    return network


# parameterization name -> wrapper(network, **schedule) returning an eps-prediction module.
PARAMETERIZATIONS: dict[str, Callable[..., nn.Module]] = {"eps": _identity, "v": VPredictionEps}


def wrap_network(network: nn.Module, parameterization: str, **schedule: float) -> nn.Module:
    """``network`` as an eps-prediction module for ``parameterization`` ``"eps"`` (unchanged) or ``"v"``."""
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be one of {sorted(PARAMETERIZATIONS)}, got {parameterization!r}.")
    return PARAMETERIZATIONS[parameterization](network, **schedule)


def parameterization_weight(timesteps: torch.Tensor, alphas_cumprod: torch.Tensor, parameterization: str) -> torch.Tensor:
    """Per-sample weight ``(B,)`` of the eps-MSE that gives the parameterization's own MSE.

    ``"eps"``: 1. ``"v"``: ``1 / abar_t``, because ``eps_pred - eps = sqrt(abar_t) (F - v)``.
    """
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be one of {sorted(PARAMETERIZATIONS)}, got {parameterization!r}.")
    abar = alphas_cumprod.to(timesteps.device)[timesteps].float()
    return torch.ones_like(abar) if parameterization == "eps" else 1.0 / abar
