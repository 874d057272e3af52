"""Denoising networks for diffusion priors and the model configs that load them.

* :class:`ADMUNet`: guided-diffusion (ADM) UNet; ``ADMUNet.from_preset("ffhq_10m")`` etc. load the
  paper's checkpoints with ``strict=True``.
* :func:`monai_unet`: a validated factory for MONAI's ``DiffusionModelUNet``.
* :func:`load_model_config`, :func:`build_network`, :func:`load_prior`, :func:`build_generator`:
  ``configs/models/<name>.yaml`` -> frozen network -> ``StepwiseDDIM``.
"""
from __future__ import annotations

from monai_dmilo.networks.adm_unet import ADM_PRESETS, ADMUNet, timestep_embedding
from monai_dmilo.networks.monai_unet import monai_unet
from monai_dmilo.networks.priors import (
    ARCHITECTURES,
    build_generator,
    build_network,
    load_model_config,
    load_prior,
)

__all__ = [
    "ADMUNet",
    "ADM_PRESETS",
    "timestep_embedding",
    "monai_unet",
    "ARCHITECTURES",
    "load_model_config",
    "build_network",
    "load_prior",
    "build_generator",
]
