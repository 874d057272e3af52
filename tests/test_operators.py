"""Contract tests of every registered forward operator, driven by ONE list of cases (``helpers.OPERATOR_CASES``,
which the solver tests reuse)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from monai_dmilo import operators
from monai_dmilo.operators import build, kspace_mask, simulate_coil_maps

from helpers import OPERATOR_CASES, Case, tiny_conv_net


LINEAR_CASES = [case for case in OPERATOR_CASES if case.linear]
IDS = [case.id for case in OPERATOR_CASES]
LINEAR_IDS = [case.id for case in LINEAR_CASES]

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")),
]


def test_every_registered_operator_is_covered():
    assert {case.name for case in OPERATOR_CASES} == set(operators.OPERATORS)


def _to(params: dict, device) -> dict:
    out = {}
    for key, value in params.items():
        if isinstance(value, torch.Tensor):
            out[key] = value.to(device)
        elif isinstance(value, nn.Module):
            out[key] = value.to(device)
        else:
            out[key] = value
    return out


def _make(case: Case, batch: int, device="cpu", dtype=torch.float64):
    params = _to(case.params(batch), device)
    op = build(case.name, **params)
    x = torch.randn(batch, *case.image, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    if case.name == "module":
        op.module.to(dtype)
    return op, x.to(device=device, dtype=dtype), params


def _random_like(y: torch.Tensor, seed: int = 11) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if y.is_complex():
        return torch.view_as_complex(torch.randn(*y.shape, 2, generator=g, dtype=y.real.dtype)).to(y.device)
    return torch.randn(y.shape, generator=g, dtype=y.dtype).to(y.device)


def _vdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.vdot(a.reshape(-1).to(torch.complex128), b.reshape(-1).to(torch.complex128))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", OPERATOR_CASES, ids=IDS)
def test_output_shape_and_dtype(case, dtype, device):
    op, x, _ = _make(case, 2, device, dtype)
    y = op(x)
    assert tuple(y.shape) == case.out(2, *case.image)
    expected = {torch.float32: torch.complex64, torch.float64: torch.complex128}[dtype] if case.complex_out else dtype
    assert y.dtype == expected
    assert y.device.type == device
    assert torch.isfinite(torch.view_as_real(y) if y.is_complex() else y).all()
    if op.linear:
        back = op.adjoint(y)
        assert back.shape[0] == 2 and back.shape[-2:] == x.shape[-2:]
        assert back.device.type == device


@pytest.mark.parametrize("case", OPERATOR_CASES, ids=IDS)
def test_batch_equals_single_calls(case):
    batch = 3
    op, x, params = _make(case, batch)
    y = op(x)
    singles = []
    for b in range(batch):
        single = {k: (v[b : b + 1] if k in case.batched else v) for k, v in params.items()}
        singles.append(build(case.name, **single)(x[b : b + 1]))
    torch.testing.assert_close(y, torch.cat(singles), rtol=1e-10, atol=1e-10)
    if op.linear:
        r = _random_like(y)
        back = op.adjoint(r)
        back_singles = []
        for b in range(batch):
            single = {k: (v[b : b + 1] if k in case.batched else v) for k, v in params.items()}
            back_singles.append(build(case.name, **single).adjoint(r[b : b + 1]))
        torch.testing.assert_close(back, torch.cat(back_singles), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", OPERATOR_CASES, ids=IDS)
def test_gradients_flow_to_x(case, device):
    op, x, _ = _make(case, 2, device, torch.float32)
    x = x.requires_grad_(True)
    y = op(x)
    loss = (torch.view_as_real(y) if y.is_complex() else y).square().mean()
    (grad,) = torch.autograd.grad(loss, x)
    assert grad.shape == x.shape
    assert torch.isfinite(grad).all()
    assert grad.abs().sum() > 0


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", LINEAR_CASES, ids=LINEAR_IDS)
def test_adjointness_float64(case, device):
    op, x, _ = _make(case, 2, device, torch.float64)
    if case.complex_out:  # MRI is complex-linear: test on complex images in the complex inner product
        x = torch.complex(x, _random_like(x, seed=5))
    ax = op(x)
    y = _random_like(ax)
    aty = op.adjoint(y)
    assert aty.shape == x.shape
    error = (_vdot(ax, y) - _vdot(x, aty)).abs() / (ax.norm() * y.norm())
    assert error < 1e-6, f"{case.id}: adjointness error {error:.3e}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", LINEAR_CASES, ids=LINEAR_IDS)
def test_adjoint_equals_autograd_vjp(case, device):
    op, x, _ = _make(case, 2, device, torch.float64)
    x = x.requires_grad_(True)
    ax = op(x)
    y = _random_like(ax)
    (vjp,) = torch.autograd.grad(ax, x, grad_outputs=y)
    adjoint = op.adjoint(y)
    if adjoint.is_complex() and not x.is_complex():  # real image space: the adjoint is the real part
        adjoint = adjoint.real
    torch.testing.assert_close(vjp, adjoint, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("case", LINEAR_CASES, ids=LINEAR_IDS)
def test_adjoint_is_differentiable_in_y(case):
    op, x, _ = _make(case, 2)
    y = _random_like(op(x)).requires_grad_(True)
    back = op.adjoint(y)
    # d/dy <A*y, x> = A x (real part for the complex-linear MRI)
    inner = (back.real * x).sum() if back.is_complex() else (back * x).sum()
    (grad,) = torch.autograd.grad(inner, y)
    expected = op(x)
    torch.testing.assert_close(grad, expected, rtol=1e-9, atol=1e-9)


def test_mri_real_image_space_adjointness():
    """For real images, <Ax, y>_R = Re<Ax, y> equals <x, Re(A*y)>."""
    case = next(c for c in OPERATOR_CASES if c.id == "mri_multi_coil")
    op, x, _ = _make(case, 2)
    ax = op(x)
    y = _random_like(ax)
    lhs = _vdot(ax, y).real
    rhs = (x * op.adjoint(y).real).sum()
    assert abs(lhs - rhs) / (ax.norm() * y.norm()) < 1e-12


# ---------------------------------------------------------------- operator-specific correctness


def test_super_resolution_matches_matlab_weights_and_keeps_constants():
    from monai_dmilo.operators.resize import bicubic_antialias_weights

    weights, first = bicubic_antialias_weights(2)
    # imresize(x, 0.5, 'bicubic') weights published for MATLAB (antialiasing on)
    matlab = torch.tensor(
        [-0.01171875, -0.03515625, 0.11328125, 0.43359375, 0.43359375, 0.11328125, -0.03515625, -0.01171875],
        dtype=torch.float64,
    )
    torch.testing.assert_close(weights, matlab)
    assert first == -3
    ones = torch.ones(1, 1, 32, 24, dtype=torch.float64)
    torch.testing.assert_close(build("super_resolution", scale=4)(ones), torch.ones(1, 1, 8, 6, dtype=torch.float64))


def test_super_resolution_interior_is_a_strided_convolution():
    from monai_dmilo.operators.resize import bicubic_antialias_weights

    scale = 4
    weights, first = bicubic_antialias_weights(scale)
    x = torch.randn(1, 1, 64, 64, dtype=torch.float64)
    y = build("super_resolution", scale=scale)(x)
    kernel2d = (weights[:, None] * weights[None, :])[None, None]
    # output (i, j) reads rows i*s+first ... : valid region away from the border
    reference = F.conv2d(x[..., 2:, 2:], kernel2d, stride=scale)  # first = -6 -> start at 8 - 6 = 2 for i = 2
    torch.testing.assert_close(
        y[..., 2 : 2 + reference.shape[-2], 2 : 2 + reference.shape[-1]],
        reference[..., : y.shape[-2] - 2, : y.shape[-1] - 2],
    )


def test_blur_matches_direct_reflect_convolution():
    kernel = torch.rand(2, 4, 5, dtype=torch.float64)  # per-sample, rectangular, even x odd
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    y = build("blur", kernel=kernel)(x)
    for b in range(2):
        kh, kw = kernel.shape[-2:]
        padded = F.pad(x[b : b + 1], (kw - 1 - kw // 2, kw // 2, kh - 1 - kh // 2, kh // 2), mode="reflect")
        weight = kernel[b].flip(0, 1).expand(3, 1, kh, kw)
        reference = F.conv2d(padded, weight, groups=3)
        torch.testing.assert_close(y[b : b + 1], reference)


def test_blur_is_differentiable_in_the_kernel():
    """Blind deblurring builds the operator from softmax(w) inside its loop."""
    x = torch.randn(2, 1, 12, 12, dtype=torch.float64)
    w = torch.randn(2, 16, dtype=torch.float64, requires_grad=True)

    def measure(weights):
        return build("blur", kernel=torch.softmax(weights, dim=1).view(2, 4, 4))(x)

    assert torch.autograd.gradcheck(measure, (w,))


def test_mri_takes_the_channel_first_mask_kspace_mask_returns():
    mask = kspace_mask((16, 16), 4, 0.125, seed=0)  # (1, H, W), as MONAI transforms hold it
    x = torch.randn(3, 1, 16, 16)
    torch.testing.assert_close(build("mri", mask=mask)(x), build("mri", mask=mask[0])(x))
    coil_maps = simulate_coil_maps((16, 16), 4)[None]
    torch.testing.assert_close(build("mri", mask=mask, coil_maps=coil_maps)(x),
                               build("mri", mask=mask[0], coil_maps=coil_maps)(x))


def test_mri_full_mask_is_unitary():
    x = torch.randn(2, 1, 16, 16, dtype=torch.complex128)
    full = torch.ones(16)
    op = build("mri", mask=full)
    y = op(x)
    torch.testing.assert_close(y.norm(), x.norm())
    np.testing.assert_allclose(
        y.numpy(), np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x.numpy(), axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    )
    maps = simulate_coil_maps((16, 16), 6, dtype=torch.complex128)[None]
    multi = build("mri", mask=full, coil_maps=maps)
    torch.testing.assert_close(multi.adjoint(multi(x)), x)


def test_ct_axis_aligned_projections_are_sums():
    x = torch.randn(1, 2, 16, 16, dtype=torch.float64)
    op = build("ct", angles=torch.tensor([0.0, 90.0]))
    sino = op(x)
    num_det = sino.shape[-1]
    offset = (num_det - 16) // 2
    torch.testing.assert_close(sino[:, :, 0, offset : offset + 16], x.sum(dim=-2))  # column sums
    torch.testing.assert_close(sino[:, :, 1, offset : offset + 16], x.sum(dim=-1))  # row sums
    assert sino[:, :, :, :offset].abs().max() < 1e-12


def test_ct_rotation_invariance_of_a_centred_disc():
    size = 32
    grid = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    disc = ((grid[:, None] ** 2 + grid[None, :] ** 2) < 8**2).double()[None, None]
    sino = build("ct", angles=torch.linspace(0, 180, 7)[:-1])(disc)
    # mass is preserved up to resampling error (exactly at 0 and 90 degrees)
    torch.testing.assert_close(sino.sum(-1), disc.sum().expand(1, 1, 6), rtol=5e-3, atol=0.0)
    torch.testing.assert_close(sino[..., 0, :].sum(-1), disc.sum().view(1, 1), rtol=1e-12, atol=1e-12)
    profiles = sino[0, 0]
    assert (profiles - profiles[0]).abs().max() < 0.1 * profiles.max()


def test_phase_retrieval_matches_numpy():
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    y = build("phase_retrieval", oversampling=2)(x)
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (4, 4), (4, 4)))
    reference = np.abs(np.fft.fft2(padded, norm="ortho"))
    np.testing.assert_allclose(np.fft.ifftshift(y.numpy(), axes=(-2, -1)), reference, atol=1e-12)


def test_module_operator_wraps_any_module():
    net = tiny_conv_net()
    op = build("module", module=net)
    assert not op.linear
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(op(x), net(x))


# ---------------------------------------------------------------- errors


def test_unknown_operator_name_lists_the_registered_ones():
    with pytest.raises(ValueError, match="inpainting"):
        build("inpaint", mask=torch.ones(4, 4))


def test_unknown_parameter_names_the_operator():
    with pytest.raises(TypeError, match="blur"):
        build("blur", kern=torch.ones(3, 3))


@pytest.mark.parametrize("case", OPERATOR_CASES, ids=IDS)
def test_nan_and_wrong_rank_inputs_raise(case):
    op, x, _ = _make(case, 2)
    bad = x.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        op(bad)
    with pytest.raises(ValueError, match="dimensions"):
        op(x[0])


@pytest.mark.parametrize(
    "name, params, shape, match",
    [
        ("inpainting", {"mask": torch.ones(1, 1, 8, 8)}, (1, 1, 16, 16), "mask of shape"),
        ("inpainting", {"mask": torch.ones(3, 1, 16, 16)}, (2, 1, 16, 16), "mask of shape"),
        ("inpainting", {"mask": torch.ones(1, 2, 16, 16)}, (1, 3, 16, 16), "mask of shape"),
        ("super_resolution", {"scale": 3}, (1, 1, 16, 16), "divisible"),
        ("blur", {"kernel": torch.ones(3, 5, 5)}, (2, 1, 16, 16), "kernel of shape"),
        ("mri", {"mask": torch.ones(12)}, (1, 1, 16, 16), "mask of shape"),
        ("mri", {"mask": torch.ones(3, 16, 16)}, (2, 1, 16, 16), "mask of shape"),
        (
            "mri",
            {"mask": torch.ones(16), "coil_maps": torch.ones(1, 4, 8, 8, dtype=torch.complex64)},
            (1, 1, 16, 16),
            "coil_maps of shape",
        ),
        (
            "mri",
            {"mask": torch.ones(16), "coil_maps": torch.ones(1, 4, 16, 16, dtype=torch.complex64)},
            (1, 2, 16, 16),
            "1 channel",
        ),
        ("ct", {"angles": torch.zeros(3, 4)}, (2, 1, 16, 16), "angles of shape"),
    ],
)
def test_parameters_that_do_not_match_the_image_raise(name, params, shape, match):
    with pytest.raises(ValueError, match=match):
        build(name, **params)(torch.zeros(shape))


@pytest.mark.parametrize(
    "name, params",
    [
        ("super_resolution", {"scale": 0}),
        ("super_resolution", {"scale": 2.5}),
        ("phase_retrieval", {"oversampling": 0.5}),
        ("inpainting", {"mask": torch.ones(2, 8, 8)}),
        ("blur", {"kernel": torch.full((3, 3), float("nan"))}),
        ("ct", {"angles": torch.zeros(0)}),
    ],
)
def test_bad_parameters_raise_at_construction(name, params):
    with pytest.raises(ValueError):
        build(name, **params)


def test_module_operator_rejects_non_modules():
    with pytest.raises(TypeError, match="nn.Module"):
        build("module", module=lambda x: x)


def test_ct_adjoint_rejects_a_mismatched_sinogram():
    op = build("ct", angles=torch.tensor([0.0, 45.0]))
    with pytest.raises(ValueError, match="does not match"):
        op.backproject(torch.zeros(1, 1, 3, 24), image_size=(16, 16))


# ---------------------------------------------------------------- noise


def test_gaussian_noise_level_and_seeding():
    y = torch.zeros(4, 1, 64, 64)
    noise = operators.build_noise("gaussian", sigma=0.05)
    a = noise(y, seed=[1, 2, 3, 4])
    assert abs(float(a.std()) - 0.05) < 0.003
    torch.testing.assert_close(noise(y[2:3], seed=[3]), a[2:3])  # same seed alone or batched
    assert not torch.equal(a[0], a[1])


def test_complex_gaussian_noise_has_sigma_per_component():
    y = torch.zeros(2, 1, 64, 64, dtype=torch.complex64)
    n = operators.build_noise("gaussian", sigma=0.1)(y, seed=0)
    assert n.dtype == torch.complex64
    assert abs(float(n.real.std()) - 0.1) < 0.005 and abs(float(n.imag.std()) - 0.1) < 0.005


def test_poisson_noise_mean_variance_and_errors():
    y = torch.full((1, 1, 128, 128), 0.5, dtype=torch.float64)
    n = operators.build_noise("poisson", scale=200.0)(y, seed=3)
    assert abs(float(n.mean()) - 0.5) < 0.01
    assert abs(float(n.var()) - 0.5 / 200.0) < 0.0005
    with pytest.raises(ValueError, match=">= 0"):
        operators.build_noise("poisson", scale=10.0)(y - 1, seed=0)
    with pytest.raises(ValueError, match="sigma"):
        operators.build_noise("gaussian", sigma=-1.0)
    with pytest.raises(ValueError):
        operators.build_noise("speckle")


@pytest.mark.parametrize("case", OPERATOR_CASES, ids=IDS)
def test_build_from_batch_reads_the_keys_the_class_declares(case):
    """A batch holding the per-sample parameters under the class's batch_keys rebuilds the same
    operator; fixed parameters come from operator_params; keys outside batch_keys are not read."""
    op, x, params = _make(case, 2)
    keys = operators.batch_keys(case.name)
    assert set(operators.required_batch_keys(case.name)) <= set(keys)
    fixed = {k: v for k, v in params.items() if k not in keys}
    batch = {k: v for k, v in params.items() if k in keys}
    batch["unrelated"] = torch.zeros(2)
    rebuilt = operators.build_from_batch(case.name, fixed, batch)
    if case.name == "module":
        rebuilt.module.to(torch.float64)
    torch.testing.assert_close(rebuilt(x), op(x))


def test_required_batch_keys_are_what_a_task_must_provide():
    assert operators.required_batch_keys("inpainting") == ("mask",)
    assert operators.required_batch_keys("blur") == ("kernel",)
    assert operators.required_batch_keys("mri") == ("mask",)  # coil maps are optional (single coil)
    assert operators.required_batch_keys("ct") == () and operators.required_batch_keys("super_resolution") == ()


@pytest.mark.parametrize("case", OPERATOR_CASES, ids=IDS)
def test_view_shows_the_measurement_as_an_image_in_unit_range(case):
    op, x, _ = _make(case, 2)
    view = op.view(op(x), x.shape[1:])
    assert view.shape[0] == 2 and view.shape[1] in (1, x.shape[1]) and view.shape[-2:] == x.shape[-2:]
    assert view.dtype == torch.float32 and float(view.min()) >= 0.0 and float(view.max()) <= 1.0


def test_views_of_image_domain_measurements_keep_the_pixels():
    x = torch.rand(1, 1, 8, 8) * 2 - 1
    mask = (torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    inpainting = build("inpainting", mask=mask)
    torch.testing.assert_close(inpainting.view(inpainting(x), (1, 8, 8)), ((x * mask + 1) / 2).clamp(0, 1))
    sinogram = build("ct", angles=torch.tensor([0.0, 45.0, 90.0])).view(torch.rand(1, 1, 3, 12), (1, 8, 8))
    assert sinogram.shape == (1, 1, 8, 8) and float(sinogram.min()) == 0.0 and float(sinogram.max()) == 1.0
