"""The proximal (data-consistency) step of every linear operator against a dense direct solve."""
from __future__ import annotations

import math

import pytest
import torch

from monai_dmilo.operators import build, gaussian_kernel, simulate_coil_maps
from monai_dmilo.operators.linear_solve import conjugate_gradient

SIZE = 8


def _operators():
    g = torch.Generator().manual_seed(0)
    angles = torch.linspace(0, math.pi, 6)[:-1]
    return {
        "inpainting": build("inpainting", mask=(torch.rand(SIZE, SIZE, generator=g) > 0.5).float()),
        "blur": build("blur", kernel=gaussian_kernel(3, 1.0)),
        "super_resolution": build("super_resolution", scale=2),
        "mri": build("mri", mask=(torch.rand(SIZE, SIZE, generator=g) > 0.5).float()),
        "mri_coils": build("mri", mask=(torch.rand(SIZE, SIZE, generator=g) > 0.5).float(),
                           coil_maps=simulate_coil_maps((SIZE, SIZE), 3, dtype=torch.complex128)[None]),
        "ct": build("ct", angles=angles, image_size=(SIZE, SIZE)),
    }


def _dense(op, dtype=torch.float64) -> torch.Tensor:
    """A's matrix on real images (complex outputs split into real and imaginary rows)."""
    def flat(v):
        out = op(v.view(1, 1, SIZE, SIZE)).flatten()
        return torch.cat([out.real, out.imag]) if out.is_complex() else out
    return torch.autograd.functional.jacobian(flat, torch.zeros(SIZE * SIZE, dtype=dtype))


@pytest.mark.parametrize("name", sorted(_operators()))
def test_proximal_matches_the_direct_solve(name):
    op = _operators()[name].double()
    matrix = _dense(op)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, SIZE, SIZE, generator=g, dtype=torch.float64)
    z = torch.randn(2, 1, SIZE, SIZE, generator=g, dtype=torch.float64)
    y = op(x)
    rho = torch.tensor([0.05, 3.0], dtype=torch.float64)
    if name not in ("inpainting",):
        op.proximal_cg_iters = SIZE * SIZE          # exact (up to rounding) after n iterations
    got = op.proximal(z, y, rho)
    for b in range(2):
        yb = y[b].flatten()
        yb = torch.cat([yb.real, yb.imag]) if yb.is_complex() else yb
        normal = matrix.T @ matrix + rho[b] * torch.eye(SIZE * SIZE, dtype=torch.float64)
        expected = torch.linalg.solve(normal, matrix.T @ yb + rho[b] * z[b].flatten())
        torch.testing.assert_close(got[b].flatten(), expected, atol=1e-6, rtol=1e-6)


def test_conjugate_gradient_keeps_samples_apart_and_stops_at_zero_residual():
    m = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    apply = lambda v: v @ m  # noqa: E731  (symmetric)
    b = torch.tensor([[1.0, 2.0], [0.0, 0.0]], dtype=torch.float64)
    x = conjugate_gradient(apply, b, torch.zeros_like(b), num_iters=5)
    torch.testing.assert_close(x[0], torch.linalg.solve(m, b[0]))
    assert torch.equal(x[1], torch.zeros(2, dtype=torch.float64))    # no NaN from a 0/0 step


# CG iterations to converge (inpainting: closed form); blur's A*A has condition ~4e5 here
PINV_ITERS = {"inpainting": None, "super_resolution": SIZE * SIZE, "mri": SIZE * SIZE, "mri_coils": SIZE * SIZE,
              "blur": 300}


@pytest.mark.parametrize("name", sorted(PINV_ITERS))
def test_pseudo_inverse_matches_the_dense_pinv(name):
    op = _operators()[name].double()
    matrix = _dense(op)
    x = torch.randn(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = op(x)
    if PINV_ITERS[name] is not None:
        op.pseudo_inverse_cg_iters = PINV_ITERS[name]
    got = op.pseudo_inverse(y)
    pinv = torch.linalg.pinv(matrix, rtol=1e-10)
    for b in range(2):
        yb = y[b].flatten()
        yb = torch.cat([yb.real, yb.imag]) if yb.is_complex() else yb
        torch.testing.assert_close(got[b].flatten(), pinv @ yb, atol=1e-5, rtol=1e-5)
    # A A^+ A = A: the pseudo-inverse reproduces the measurement of any image
    torch.testing.assert_close(op(got), y, atol=1e-6, rtol=1e-6)


def test_pseudo_inverse_of_sparse_view_ct_reproduces_the_measurement():
    """5 views of an 8 x 8 image: rank 35 of 64 with tiny singular values; CG from 0 fits y."""
    op = _operators()["ct"].double()
    x = torch.randn(1, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    op.pseudo_inverse_cg_iters = 1000
    got = op.pseudo_inverse(op(x))
    torch.testing.assert_close(op(got), op(x), atol=1e-7, rtol=0)
    assert got.square().sum() < x.square().sum()        # a least-norm solution: no larger than x itself


@pytest.mark.parametrize("name", sorted(_operators()))
def test_svd_diagonalises_the_operator(name):
    """V^T x agrees with S^+ U^T A x on the observed components, and A^T A = V S^2 V^T."""
    op = _operators()[name].double()
    x = torch.randn(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    spectral = op.svd(op(x))
    observed = spectral.s > 0
    xbar = spectral.to_spectral(x)
    torch.testing.assert_close(spectral.ybar[observed], xbar[observed], atol=1e-8, rtol=1e-6)
    assert (spectral.ybar[~observed] == 0).all()
    torch.testing.assert_close(spectral.from_spectral(xbar), x, atol=1e-10, rtol=0)   # V orthogonal
    matrix = _dense(op)
    gram = spectral.from_spectral(spectral.s.square() * xbar)
    torch.testing.assert_close(gram[0].flatten(), matrix.T @ matrix @ x[0].flatten(), atol=1e-8, rtol=1e-6)
