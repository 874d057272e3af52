"""Shared fixtures (helpers shared as functions and classes are in ``helpers.py``)."""
from __future__ import annotations

import pytest

from helpers import tiny_unet


@pytest.fixture
def tiny_generator():
    from monai_dmilo.priors.stepwise import StepwiseDDIM

    def make(channels: int = 1, size: int = 16, num_steps: int = 3, seed: int = 0):
        return StepwiseDDIM(tiny_unet(channels, seed), num_steps=num_steps, image_shape=(channels, size, size))

    return make
