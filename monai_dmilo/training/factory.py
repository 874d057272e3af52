"""The prior's network and noise schedule for training: MONAI's ``DiffusionModelUNet`` and ``DDPMScheduler``."""
from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from monai_dmilo.networks.monai_unet import monai_unet

__all__ = ["build_diffusion_unet", "build_ddpm_scheduler"]


def build_diffusion_unet(
    *,
    spatial_dims: int = 2,
    in_channels: int = 1,
    out_channels: int = 1,
    channels: Sequence[int] = (32, 64, 64),
    attention_levels: Sequence[bool] = (False, False, True),
    num_res_blocks: int = 1,
    num_head_channels: int = 32,
    norm_num_groups: int = 32,
    **kwargs: Any,
) -> nn.Module:
    """A MONAI ``DiffusionModelUNet`` with small defaults (about 2M parameters at 32x32), validated
    by :func:`monai_dmilo.networks.monai_unet.monai_unet` (the factory the model configs use)."""
    if len(channels) != len(attention_levels):
        raise ValueError(
            f"channels and attention_levels must have the same length, got {list(channels)} and "
            f"{list(attention_levels)}."
        )
    if not all(isinstance(a, bool) for a in attention_levels):
        raise TypeError(
            f"attention_levels must be booleans, got {list(attention_levels)} (on a command line write "
            f"[False, True], not [false, true])."
        )
    return monai_unet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=tuple(channels),
        attention_levels=tuple(attention_levels),
        num_res_blocks=num_res_blocks,
        num_head_channels=num_head_channels,
        norm_num_groups=norm_num_groups,
        **kwargs,
    )


def build_ddpm_scheduler(
    *, num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> Any:
    """MONAI ``DDPMScheduler`` with the DDPM linear beta schedule and epsilon prediction."""
    from monai.networks.schedulers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        schedule="linear_beta",
        beta_start=beta_start,
        beta_end=beta_end,
        prediction_type="epsilon",
    )
