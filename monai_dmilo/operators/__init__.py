"""Forward operators ``A`` of the inverse problems, built by name.

>>> from monai_dmilo import operators
>>> op = operators.build("super_resolution", scale=4)
>>> y = op(x)                      # A(x), x (B, C, H, W)
>>> x_adj = op.adjoint(y)          # A*(y), linear operators only

Each operator class declares the per-sample parameters a workflow reads from a batch
(``batch_keys``, e.g. ``mask``; ``optional_batch_keys`` may be absent) and how its measurement is
shown in a panel (``view``); :func:`build_from_batch` builds it from a collated batch.

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

from typing import Any, Callable, Mapping

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
    "build_from_batch",
    "batch_keys",
    "required_batch_keys",
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


def batch_keys(name: str) -> tuple[str, ...]:
    """The per-sample parameters operator ``name`` reads from a batch (its class's ``batch_keys``)."""
    return tuple(getattr(look_up_option(name, OPERATORS), "batch_keys", ()))


def required_batch_keys(name: str) -> tuple[str, ...]:
    """Those of :func:`batch_keys` that every item must provide (the rest are optional)."""
    optional = set(getattr(look_up_option(name, OPERATORS), "optional_batch_keys", ()))
    return tuple(k for k in batch_keys(name) if k not in optional)


def build_from_batch(name: str, operator_params: Mapping[str, Any] | None, batch: Mapping[str, Any]) -> ForwardOperator:
    """Operator ``name`` from its fixed ``operator_params`` and the per-sample parameters
    (:func:`batch_keys`) present in a collated ``batch`` (tensors ``(B, ...)``; MetaTensors are
    used as plain tensors). Batch values override fixed ones."""
    params = dict(operator_params or {})
    for key in batch_keys(name):
        if key in batch:
            value = batch[key]
            params[key] = value.as_tensor() if hasattr(value, "as_tensor") else value
    return build(name, **params)
