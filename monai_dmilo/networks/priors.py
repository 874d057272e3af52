"""Deprecated: moved to :mod:`monai_dmilo.priors.loading` (``monai_dmilo.priors.build_generator``)."""
import warnings

from monai_dmilo.priors.loading import *  # noqa: F401,F403
from monai_dmilo.priors.loading import __all__  # noqa: F401

warnings.warn("monai_dmilo.networks.priors moved to monai_dmilo.priors.loading", DeprecationWarning, stacklevel=2)
