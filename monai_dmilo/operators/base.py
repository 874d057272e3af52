"""Base classes of the forward operators ``A``.

An operator is a batched, differentiable ``nn.Module`` whose parameters (mask, kernel, ...)
are fixed at construction; calling it never changes it. Device and dtype follow the input.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator, Sequence

import torch
from torch import nn

from . import views
from .linear_solve import Spectral, conjugate_gradient, dense_svd, real_part

_NAN_CHECKS = contextvars.ContextVar("monai_dmilo_nan_checks", default=True)


@contextlib.contextmanager
def skip_nan_checks() -> Iterator[None]:
    """Operators called inside this block do not scan their inputs for NaN.

    The scan reads the whole tensor and, on CUDA, waits for the device (``.any()`` on the host).
    Solvers check ``y`` once and run their inner loops inside this block, so an operator call
    there costs only its arithmetic. Shape and dtype checks stay on.
    """
    token = _NAN_CHECKS.set(False)
    try:
        yield
    finally:
        _NAN_CHECKS.reset(token)


class ForwardOperator(nn.Module):
    """A forward model ``y = A(x)`` on images ``x`` of shape ``(B, C, H, W)``.

    Subclasses implement :meth:`forward`. ``linear`` tells solvers whether :meth:`adjoint` exists.
    """

    linear: bool = False
    #: per-sample parameters a workflow reads from a batch to build this operator (mask, kernel...)
    batch_keys: tuple[str, ...] = ()
    #: those of :attr:`batch_keys` a batch may leave out (the rest are required)
    optional_batch_keys: tuple[str, ...] = ()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def view(self, y: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
        """``y`` shown as images ``(B, 1|C, H, W)`` in [0, 1] for a panel; ``shape`` is the image's
        ``(C, H, W)``. Default: ``y`` itself when it is a real image of that size, else ``A^* y``
        for linear operators, else ``|y|`` resized (see :mod:`.views`)."""
        if tuple(y.shape[-2:]) == tuple(shape[-2:]) and not y.is_complex():
            return views.to_unit(y)
        if self.linear:
            return views.zero_filled_view(y, self)
        return views.sinogram_view(y, shape)

    def keep_measured(self, y: torch.Tensor) -> torch.Tensor:
        """Zeroes the entries of a measurement-shaped ``y`` that the operator does not measure.

        Masking operators (inpainting, MRI) return full-size outputs with zeros where nothing is
        observed; simulated noise is passed through this so those entries stay exactly zero.
        The default (every entry measured) returns ``y`` unchanged.
        """
        return y


class LinearOperator(ForwardOperator):
    """A linear forward model with an exact adjoint ``A^*``."""

    linear = True

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Apply ``A^*`` to a measurement ``y``; returns an image-shaped tensor."""
        raise NotImplementedError

    #: conjugate-gradient iterations of the default :meth:`proximal`
    proximal_cg_iters: int = 30

    def proximal(self, z: torch.Tensor, y: torch.Tensor, rho: torch.Tensor | float) -> torch.Tensor:
        """``argmin_x ||A x - y||^2 + rho ||x - z||^2`` for real images ``z`` ``(B, C, H, W)``.

        ``rho``: a positive number or one per sample ``(B,)``. Solves the normal equations
        ``(Re A^*A + rho) x = Re A^* y + rho z`` by :func:`~.linear_solve.conjugate_gradient`
        (``proximal_cg_iters`` iterations from ``z``); operators with a closed form override it.
        """
        rho = _per_sample(rho, z)
        rhs = real_part(self.adjoint(y)) + rho * z
        return conjugate_gradient(lambda x: real_part(self.adjoint(self(x))) + rho * x, rhs, z,
                                  num_iters=self.proximal_cg_iters)

    #: conjugate-gradient iterations of the default :meth:`pseudo_inverse`
    pseudo_inverse_cg_iters: int = 30

    def pseudo_inverse(self, y: torch.Tensor) -> torch.Tensor:
        """``A^+ y``, real images ``(B, C, H, W)``: the least-squares solution of least norm.

        Conjugate gradient on ``Re A^*A x = Re A^* y`` from ``x = 0`` (which stays in the row space,
        so it tends to the least-norm solution), ``pseudo_inverse_cg_iters`` iterations: exact after
        as many iterations as ``Re A^*A`` has distinct eigenvalues (three for single-coil MRI on real
        images), an early-stopped, hence regularised, solve for ill-conditioned operators (blur, CT).
        Operators with a closed form override it (inpainting).
        """
        rhs = real_part(self.adjoint(y))
        return conjugate_gradient(lambda x: real_part(self.adjoint(self(x))), rhs, torch.zeros_like(rhs),
                                  num_iters=self.pseudo_inverse_cg_iters)

    #: largest image (C * H * W elements) whose dense SVD :meth:`svd` computes
    dense_svd_max_size: int = 4096

    def svd(self, y: torch.Tensor) -> Spectral:
        """The singular value decomposition ``A = U S V^T`` of each sample's operator, for DDRM.

        Default: the dense matrix of ``A`` on real images (complex outputs as real and imaginary
        rows), one column per pixel from ``C * H * W`` operator calls, and ``torch.linalg.svd`` per
        sample; refused above ``dense_svd_max_size`` elements. Operators with a structured SVD
        override it (inpainting).

        Args:
            y: the measurement ``(B, ...)``; its batch size and the operator's image shape.
        """
        return dense_svd(self, y)


def _per_sample(rho: torch.Tensor | float, z: torch.Tensor) -> torch.Tensor:
    """``rho`` as a ``(B, 1, 1, 1)`` tensor in ``z``'s dtype and device."""
    rho = torch.as_tensor(rho, dtype=z.dtype, device=z.device)
    if rho.ndim == 0:
        rho = rho.expand(z.shape[0])
    if rho.shape != (z.shape[0],):
        raise ValueError(f"rho must be a number or one per sample ({z.shape[0]},), got shape {tuple(rho.shape)}.")
    return rho.view(-1, *([1] * (z.ndim - 1)))


def check_tensor(
    value: object,
    *,
    name: str,
    ndim: int | tuple[int, ...] | None = None,
    allow_complex: bool = True,
) -> torch.Tensor:
    """Checks that ``value`` is a floating (or complex) tensor of the right rank without NaN.

    Args:
        value: the object to check.
        name: the argument's name, used in the error message.
        ndim: accepted number(s) of dimensions; ``None`` accepts any.
        allow_complex: whether complex dtypes are accepted.

    Returns:
        ``value`` unchanged.

    Raises:
        TypeError: ``value`` is not a tensor, or has an integer/bool (or unaccepted complex) dtype.
        ValueError: wrong number of dimensions, or NaN values (not checked inside
            :func:`skip_nan_checks`).
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}.")
    if not (value.is_floating_point() or (allow_complex and value.is_complex())):
        kinds = "a floating or complex" if allow_complex else "a floating"
        raise TypeError(f"{name} must have {kinds} dtype, got {value.dtype}.")
    if ndim is not None:
        accepted = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if value.ndim not in accepted:
            raise ValueError(
                f"{name} must have {' or '.join(map(str, accepted))} dimensions, "
                f"got shape {tuple(value.shape)}."
            )
    if _NAN_CHECKS.get() and torch.isnan(value).any():
        raise ValueError(f"{name} contains NaN values (shape {tuple(value.shape)}); expected finite numbers.")
    return value


def check_image(x: object, *, name: str = "x") -> torch.Tensor:
    """Checks an image batch: a floating/complex tensor of shape ``(B, C, H, W)`` without NaN."""
    return check_tensor(x, name=name, ndim=4)


def real_dtype_of(x: torch.Tensor) -> torch.dtype:
    """The real floating dtype matching ``x`` (``float32`` for ``complex64`` and so on)."""
    return x.real.dtype if x.is_complex() else x.dtype


def complex_dtype_of(x: torch.Tensor) -> torch.dtype:
    """The complex dtype matching ``x`` (``complex64`` for ``float32``, ``complex128`` for ``float64``)."""
    if x.is_complex():
        return x.dtype
    return torch.complex128 if x.dtype == torch.float64 else torch.complex64


def as_real_parameter(value: object, *, name: str, ndim: int | tuple[int, ...]) -> torch.Tensor:
    """Checks a real operator parameter (mask, kernel, angles); bool/int tensors become ``float32``.

    Raises:
        TypeError: not a tensor, or complex.
        ValueError: wrong number of dimensions, or NaN values (not checked inside
            :func:`skip_nan_checks`).
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}.")
    if value.is_complex():
        raise TypeError(f"{name} must be real, got dtype {value.dtype}.")
    if not value.is_floating_point():
        value = value.float()
    return check_tensor(value, name=name, ndim=ndim, allow_complex=False)
