"""Train a small unconditional diffusion prior with MONAI and Ignite components.

The pieces are MONAI's own: a ``DiffusionModelUNet`` (epsilon prediction), a ``DDPMScheduler``
(linear betas, 1000 steps), a ``DiffusionInferer`` and ``DiffusionPrepareBatch`` inside a
``monai.engines.SupervisedTrainer``. This module adds the handlers a prior needs to be shipped:

* :class:`LossCSVLogger`: ``iteration, epoch, loss, elapsed_s, lr`` rows in a CSV file;
* :class:`StateDictExporter`: the network's plain ``state_dict`` (the EMA copy when one is kept),
  written atomically every ``interval`` iterations and at the end (this is the file that ships);
* :class:`SampleGridSaver`: a PNG grid of DDIM samples when training completes;
* MONAI's ``CheckpointSaver`` / ``CheckpointLoader`` for a resumable training checkpoint
  (network, optimizer, EMA network and engine state; loaded with ``weights_only=True``).

:func:`create_prior_trainer` wires them; :func:`train_prior` also runs it. The bundle's
``train.yaml`` builds the same objects through ``_target_``.

Modules: :mod:`.factory` (network, schedule), :mod:`.data` (augmentation),
:mod:`.recipe` (learning-rate schedule, loss weighting), :mod:`.handlers`, :mod:`.trainer`.
"""
from __future__ import annotations

from .data import RandAcquisitiond, RandScaleFromFloord
from .factory import build_ddpm_scheduler, build_diffusion_unet
from .handlers import LossCSVLogger, SampleGridSaver, StateDictExporter, sample_images, save_image_grid
from .trainer import create_prior_trainer, train_prior

__all__ = [
    "build_diffusion_unet",
    "build_ddpm_scheduler",
    "RandScaleFromFloord",
    "RandAcquisitiond",
    "LossCSVLogger",
    "StateDictExporter",
    "SampleGridSaver",
    "create_prior_trainer",
    "train_prior",
    "sample_images",
    "save_image_grid",
]
