"""monai_dmilo: image reconstruction with diffusion priors (DMILO, DMILO-PGD) for MONAI."""
from __future__ import annotations

__version__ = "0.1.0"
