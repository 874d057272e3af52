"""Deprecated: moved to :mod:`monai_dmilo.priors.stepwise` (``monai_dmilo.priors.StepwiseDDIM``)."""
import warnings

from monai_dmilo.priors.stepwise import *  # noqa: F401,F403
from monai_dmilo.priors.stepwise import __all__  # noqa: F401

warnings.warn("monai_dmilo.generator moved to monai_dmilo.priors.stepwise", DeprecationWarning, stacklevel=2)
