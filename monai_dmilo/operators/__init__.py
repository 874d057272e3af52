"""Forward operators ``A`` of the inverse problems, built by name.

>>> from monai_dmilo import operators
>>> op = operators.build("super_resolution", scale=4)
>>> y = op(x)                      # A(x), x (B, C, H, W)
>>> x_adj = op.adjoint(y)          # A*(y), linear operators only

Registered names and parameters:

================== ============================ =========================================
name               parameters                   module
================== ============================ =========================================
inpainting         mask                         :mod:`.inpainting`
super_resolution   scale                        :mod:`.resize`
blur               kernel                       :mod:`.blur`
mri                mask, coil_maps=None         :mod:`.mri`
ct                 angles (degrees)             :mod:`.ct`
phase_retrieval    oversampling                 :mod:`.nonlinear`
module             module                       :mod:`.nonlinear`
================== ============================ =========================================
"""

from __future__ import annotations

from typing import Callable

from monai.utils import look_up_option

from .base import ForwardOperator, LinearOperator
from .blur import Blur
from .ct import CT
from .inpainting import Inpainting
from .kernels import gaussian_kernel, motion_kernel
from .masks import box_mask, kspace_mask, random_pixel_mask
from .mri import MRI, fft2c, ifft2c, simulate_coil_maps
from .noise import NOISE_MODELS, GaussianNoise, NoNoise, PoissonNoise, build_noise
from .nonlinear import ModuleOperator, PhaseRetrieval
from .resize import SuperResolution

__all__ = [
    "OPERATORS",
    "build",
    "register",
    "ForwardOperator",
    "LinearOperator",
    "Inpainting",
    "SuperResolution",
    "Blur",
    "MRI",
    "CT",
    "PhaseRetrieval",
    "ModuleOperator",
    "gaussian_kernel",
    "motion_kernel",
    "random_pixel_mask",
    "box_mask",
    "kspace_mask",
    "simulate_coil_maps",
    "fft2c",
    "ifft2c",
    "NOISE_MODELS",
    "GaussianNoise",
    "PoissonNoise",
    "NoNoise",
    "build_noise",
]

#: name -> factory; extend with :func:`register`.
OPERATORS: dict[str, Callable[..., ForwardOperator]] = {
    "inpainting": Inpainting,
    "super_resolution": SuperResolution,
    "blur": Blur,
    "mri": MRI,
    "ct": CT,
    "phase_retrieval": PhaseRetrieval,
    "module": ModuleOperator,
}


def register(name: str) -> Callable[[Callable[..., ForwardOperator]], Callable[..., ForwardOperator]]:
    """Decorator adding a factory to the registry under ``name`` (an existing name is an error)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}.")

    def add(factory: Callable[..., ForwardOperator]) -> Callable[..., ForwardOperator]:
        if name in OPERATORS:
            raise ValueError(f"an operator named {name!r} is already registered ({OPERATORS[name]!r}).")
        OPERATORS[name] = factory
        return factory

    return add


def build(name: str, **params) -> ForwardOperator:
    """Builds the registered operator ``name`` with its parameters (see the module docstring).

    Raises:
        ValueError: unknown name (the message lists the registered ones).
        TypeError: a parameter the operator does not take.
    """
    factory = look_up_option(name, OPERATORS)
    try:
        return factory(**params)
    except TypeError as err:
        if "unexpected keyword argument" in str(err) or "missing" in str(err):
            raise TypeError(f"operator {name!r}: {err}") from err
        raise
