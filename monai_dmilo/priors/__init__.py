"""The diffusion prior: a frozen denoiser seen as a chain of differentiable DDIM steps.

* :mod:`~monai_dmilo.priors.stepwise`: :class:`StepwiseDDIM` (``G = g_{N-1} o ... o g_0``, one
  network evaluation per step), the timestep lists, and :class:`Prior`, the protocol a solver
  may rely on;
* :mod:`~monai_dmilo.priors.loading`: model configs (``configs/models/<name>.yaml``) -> frozen
  network -> ``StepwiseDDIM`` (:func:`build_prior`);
* :mod:`~monai_dmilo.priors.formats`: diffusers folders and MONAI model-zoo bundles read as model configs;
* :mod:`~monai_dmilo.priors.latent`: :class:`LatentDDIM`, latent DDIM steps then the decoder;
* :mod:`~monai_dmilo.priors.checkpoints`: weights as untrusted input (``weights_only``, strict keys);
* :mod:`~monai_dmilo.priors.parameterization`: v-prediction networks seen as eps networks;
* :mod:`~monai_dmilo.priors.quality`: sample-quality measures of a trained prior.
"""
from __future__ import annotations

from .checkpoints import load_into, load_state_dict, sha256_of
from .latent import LatentDDIM
from .loading import (ARCHITECTURES, build_generator, build_network, build_prior, load_autoencoder, load_model_config,
                      load_prior)
from .stepwise import Prior, StepwiseDDIM, linear_alphas_cumprod, reference_timesteps, uniform_timesteps

__all__ = [
    "Prior", "StepwiseDDIM", "reference_timesteps", "uniform_timesteps", "linear_alphas_cumprod",
    "LatentDDIM", "load_autoencoder", "ARCHITECTURES", "load_model_config", "build_network", "load_prior", "build_prior", "build_generator",
    "load_state_dict", "load_into", "sha256_of",
]
