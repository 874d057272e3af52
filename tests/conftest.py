"""Shared fixtures: tiny denoisers so tests run in seconds on CPU."""
from __future__ import annotations

import pytest
import torch
from monai.networks.nets import DiffusionModelUNet


def tiny_unet(channels: int = 1, seed: int = 0) -> DiffusionModelUNet:
    """A ~40k-parameter MONAI DiffusionModelUNet with random weights (deterministic per seed)."""
    torch.manual_seed(seed)
    return DiffusionModelUNet(
        spatial_dims=2,
        in_channels=channels,
        out_channels=channels,
        channels=(8, 16),
        attention_levels=(False, True),
        num_res_blocks=1,
        num_head_channels=8,
        norm_num_groups=8,
    )


@pytest.fixture
def tiny_generator():
    from monai_dmilo.generator import StepwiseDDIM

    def make(channels: int = 1, size: int = 16, num_steps: int = 3, seed: int = 0):
        return StepwiseDDIM(tiny_unet(channels, seed), num_steps=num_steps, image_shape=(channels, size, size))

    return make


def error_line(fn, *args, **kwargs) -> str:
    """Run ``fn`` (a workflow step); return the one line a user sees for its user-input error.

    In a ``python -m monai.bundle run`` process that line is what ``monai_dmilo.errors``' hook
    prints instead of the traceback; here the exception chain is read directly. Fails the test when
    ``fn`` succeeds or raises something that is not a user-input error.
    """
    from monai_dmilo.errors import one_line_message, user_error

    try:
        fn(*args, **kwargs)
    except SystemExit as err:
        return str(err)
    except Exception as err:  # noqa: BLE001 - the chain is inspected below
        root = user_error(err)
        if root is None:
            raise
        return one_line_message(root)
    pytest.fail(f"{getattr(fn, '__name__', fn)} raised no error")
