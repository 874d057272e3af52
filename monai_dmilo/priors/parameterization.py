"""Epsilon-prediction networks whose inside predicts something else.

Every solver and docs/algorithms.md read a prior as ``eps(x_t, t)``. What the trained network computes
inside may differ: :class:`VPredictionEps` wraps a network ``F`` trained to predict the
"velocity" ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0`` (Salimans & Ho, ICLR 2022) and returns

    eps(x_t, t) = sqrt(1 - abar_t) x_t + sqrt(abar_t) F(x_t, t),

which is exact when ``F = v``. Its x0 prediction is ``sqrt(abar_t) x_t - sqrt(1 - abar_t) F``:
bounded by ``F`` at every noise level, where a plain eps network's x0 error is its eps error
times ``sqrt((1 - abar_t) / abar_t)`` (156x at t = 999 of the linear schedule). Trained with the
v-MSE, i.e. the eps-MSE weighted by ``1 / abar_t`` (:func:`parameterization_weight`).
:class:`SamplePredictionEps` does the same for a network that predicts ``x0`` (diffusers' ``sample``).

``PARAMETERIZATIONS`` maps a model config's / ``train.yaml``'s ``parameterization`` to the wrapper.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from monai_dmilo.priors.schedules import make_alphas_cumprod

__all__ = ["VPredictionEps", "SamplePredictionEps", "PARAMETERIZATIONS", "wrap_network", "parameterization_weight"]


def network_in_channels(network: nn.Module) -> int | None:
    """The input channels a network declares (MONAI's ``in_channels``, diffusers' ``config.in_channels``)."""
    config = getattr(network, "config", None)
    if isinstance(config, Mapping) and "in_channels" in config:
        return int(config["in_channels"])
    value = getattr(network, "in_channels", None)
    return int(value) if isinstance(value, int) else None


class _ScheduleAware(nn.Module):
    """A wrapper of ``network`` that needs ``abar_t`` of its training schedule (rebuilt, not stored).

    Args:
        network: ``network(x, t)`` with ``x`` ``(B, C, H, W)`` and ``t`` a ``(B,)`` long tensor.
        num_train_timesteps, beta_start, beta_end, beta_schedule, alphas_cumprod: the schedule it was
            trained with (:func:`monai_dmilo.priors.schedules.make_alphas_cumprod`).

    The state dict holds the wrapped network's weights under ``network.``.
    """

    def __init__(
        self, network: nn.Module, *, num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
        beta_schedule: str = "linear", alphas_cumprod: Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.in_channels = network_in_channels(network)
        abar = make_alphas_cumprod(beta_schedule, num_train_timesteps, beta_start, beta_end, alphas_cumprod).float()
        self.register_buffer("abar", abar, persistent=False)

    def _abar(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """``abar_t`` shaped to broadcast over ``x`` ``(B, C, ...)``."""
        return self.abar.to(x.device)[timesteps.long()].to(x.dtype).view(-1, *([1] * (x.ndim - 1)))

    @staticmethod
    def _with_extra(eps: torch.Tensor, out: torch.Tensor, channels: int) -> torch.Tensor:
        """``eps`` followed by the network's extra output channels (e.g. a learned variance)."""
        return torch.cat([eps, out[:, channels:]], dim=1) if out.shape[1] > channels else eps


class VPredictionEps(_ScheduleAware):
    """``eps(x, t) = sqrt(1 - abar_t) x + sqrt(abar_t) network(x, t)`` for a v-prediction ``network``."""

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, **kwargs: object) -> torch.Tensor:
        """eps ``(B, C, ...)`` (plus the network's extra channels, e.g. a learned variance); ``kwargs``
        (MONAI's ``context``, ...) are passed to the network."""
        v = self.network(x, timesteps, **kwargs)
        a = self._abar(x, timesteps)
        channels = x.shape[1]
        return self._with_extra((1.0 - a).sqrt() * x + a.sqrt() * v[:, :channels], v, channels)


class SamplePredictionEps(_ScheduleAware):
    """``eps(x, t) = (x - sqrt(abar_t) network(x, t)) / sqrt(1 - abar_t)`` for a network that predicts
    the clean sample ``x0`` (diffusers' ``prediction_type: sample``)."""

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, **kwargs: object) -> torch.Tensor:
        """eps ``(B, C, ...)`` (plus extra channels); ``kwargs`` are passed to the network."""
        x0 = self.network(x, timesteps, **kwargs)
        a = self._abar(x, timesteps)
        channels = x.shape[1]
        return self._with_extra((x - a.sqrt() * x0[:, :channels]) / (1.0 - a).sqrt(), x0, channels)


def _identity(network: nn.Module, **schedule: Any) -> nn.Module:
    return network


# parameterization name -> wrapper(network, **schedule) returning an eps-prediction module.
PARAMETERIZATIONS: dict[str, Callable[..., nn.Module]] = {"eps": _identity, "v": VPredictionEps,
                                                          "sample": SamplePredictionEps}


def wrap_network(network: nn.Module, parameterization: str, **schedule: Any) -> nn.Module:
    """``network`` as an eps-prediction module for ``parameterization`` ``"eps"`` (unchanged), ``"v"``
    or ``"sample"``; ``schedule``: the training schedule's keyword arguments (see :class:`_ScheduleAware`)."""
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be one of {sorted(PARAMETERIZATIONS)}, got {parameterization!r}.")
    return PARAMETERIZATIONS[parameterization](network, **schedule)


def parameterization_weight(timesteps: torch.Tensor, alphas_cumprod: torch.Tensor, parameterization: str) -> torch.Tensor:
    """Per-sample weight ``(B,)`` of the eps-MSE that gives the parameterization's own MSE.

    ``"eps"``: 1. ``"v"``: ``1 / abar_t``, because ``eps_pred - eps = sqrt(abar_t) (F - v)``.
    ``"sample"``: ``(1 - abar_t) / abar_t``, because ``eps_pred - eps = -sqrt(abar_t / (1 - abar_t)) (F - x0)``.
    """
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be one of {sorted(PARAMETERIZATIONS)}, got {parameterization!r}.")
    abar = alphas_cumprod.to(timesteps.device)[timesteps].float()
    weights = {"eps": torch.ones_like(abar), "v": 1.0 / abar, "sample": (1.0 - abar) / abar}
    return weights[parameterization]
