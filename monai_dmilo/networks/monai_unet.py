"""A validated factory for MONAI's ``DiffusionModelUNet`` as an unconditional 2D eps-predictor."""
from __future__ import annotations

import inspect
from typing import Any

from monai.networks.nets import DiffusionModelUNet

__all__ = ["monai_unet"]

_REQUIRED = ("spatial_dims", "in_channels", "out_channels")
# Conditioning is not part of an unconditional prior: refuse these rather than build a network
# whose forward needs inputs the generator never passes.
_UNCONDITIONAL = {"with_conditioning": False, "cross_attention_dim": None, "num_class_embeds": None}


def monai_unet(**params: Any) -> DiffusionModelUNet:
    """Build a MONAI ``DiffusionModelUNet`` prior from plain (YAML-friendly) parameters.

    Args:
        params: keyword arguments of ``DiffusionModelUNet``; lists become tuples. Must include
            ``spatial_dims`` (2: the generator works on ``(B, C, H, W)`` images), ``in_channels``
            and ``out_channels`` (``in_channels`` for eps, ``2 * in_channels`` for learned variance).

    Returns:
        The network, randomly initialised (load weights with :func:`monai_dmilo.priors.checkpoints.load_into`).

    Raises:
        ValueError: unknown or missing parameters, conditioning options, inconsistent sizes.
    """
    allowed = set(inspect.signature(DiffusionModelUNet.__init__).parameters) - {"self"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"unknown DiffusionModelUNet parameters {unknown}; expected a subset of {sorted(allowed)}.")
    missing = [k for k in _REQUIRED if k not in params]
    if missing:
        raise ValueError(f"monai_unet needs the parameters {missing} (got {sorted(params)}).")
    if params["spatial_dims"] != 2:
        raise ValueError(f"spatial_dims must be 2 for an image prior, got {params['spatial_dims']!r}.")
    out_ch, in_ch = params["out_channels"], params["in_channels"]
    if out_ch not in (in_ch, 2 * in_ch):
        raise ValueError(
            f"out_channels must be in_channels ({in_ch}, eps) or 2 * in_channels ({2 * in_ch}, eps and "
            f"learned variance), got {out_ch!r}."
        )
    for key, expected in _UNCONDITIONAL.items():
        if key in params and params[key] != expected:
            raise ValueError(f"{key} must be {expected!r} for an unconditional prior, got {params[key]!r}.")
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    channels = params.get("channels", (32, 64, 64, 64))
    levels = params.get("attention_levels", (False, False, True, True))
    if len(levels) != len(channels):
        raise ValueError(
            f"attention_levels ({list(levels)}) must have one entry per level of channels ({list(channels)})."
        )
    groups = params.get("norm_num_groups", 32)
    if any(c % groups for c in channels):
        raise ValueError(f"every entry of channels ({list(channels)}) must be divisible by norm_num_groups={groups}.")
    return DiffusionModelUNet(**params)
