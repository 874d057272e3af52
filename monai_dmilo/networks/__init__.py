"""Denoising network architectures for diffusion priors.

* :class:`ADMUNet`: guided-diffusion (ADM) UNet; ``ADMUNet.from_preset("ffhq_10m")`` etc. load the
  paper's checkpoints with ``strict=True``.
* :func:`monai_unet`: a validated factory for MONAI's ``DiffusionModelUNet``.

Turning a model config into a prior (``build_generator`` and friends) lives in
:mod:`monai_dmilo.priors`; the old names here still work and warn.
"""
from __future__ import annotations

import warnings

from monai_dmilo.networks.adm_unet import ADM_PRESETS, ADMUNet, timestep_embedding
from monai_dmilo.networks.monai_unet import monai_unet

__all__ = ["ADMUNet", "ADM_PRESETS", "timestep_embedding", "monai_unet"]

_MOVED = {"ARCHITECTURES", "load_model_config", "build_network", "load_prior", "build_generator"}


def __getattr__(name: str):
    """Deprecated aliases of :mod:`monai_dmilo.priors` (``monai_dmilo.networks.build_generator``)."""
    if name in _MOVED:
        from monai_dmilo import priors

        warnings.warn(f"monai_dmilo.networks.{name} moved to monai_dmilo.priors.{name}", DeprecationWarning, stacklevel=2)
        return getattr(priors, name)
    raise AttributeError(f"module 'monai_dmilo.networks' has no attribute {name!r}")
