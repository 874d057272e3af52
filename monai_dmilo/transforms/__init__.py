"""MONAI transforms that draw operator parameters and simulate measurements.

Array transforms work on channel-first images ``(C, H, W)``; each has a dictionary twin
(``...d``, aliases ``...D`` / ``...Dict``). All are randomizable (``set_random_state``) and seed
per sample through ``seed_key`` (see :mod:`.seeding`).
"""

from __future__ import annotations

from .operator_parameters import (
    RandBlurKernel,
    RandBlurKernelD,
    RandBlurKernelDict,
    RandBlurKerneld,
    RandInpaintingMask,
    RandInpaintingMaskD,
    RandInpaintingMaskDict,
    RandInpaintingMaskd,
    RandKspaceMask,
    RandKspaceMaskD,
    RandKspaceMaskDict,
    RandKspaceMaskd,
)
from .measurement import (
    SimulateMeasurement,
    SimulateMeasurementD,
    SimulateMeasurementDict,
    SimulateMeasurementd,
)
from . import measurement, operator_parameters
from monai_dmilo.seeds import base_seed, mix_seed, sample_seed

__all__ = [*operator_parameters.__all__, *measurement.__all__, "base_seed", "mix_seed", "sample_seed"]
