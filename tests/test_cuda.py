"""The solvers, operators, inferer and bundle on a CUDA device (skipped where there is none).

What only a GPU can show: results follow the inputs' device and match the CPU's; the inner loops
make no host-device synchronisation (``torch.cuda.set_sync_debug_mode("error")`` turns any into an
exception); the bf16 and ``torch.compile`` speed options work there; DMILO's peak CUDA memory
stays flat as the number of DDIM steps grows while DMPlug's grows.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
import torch

from helpers import FAST, PixelMask, mask_problem, random_mask, toy_generator, unet_generator
from monai_dmilo.priors.stepwise import StepwiseDDIM
from monai_dmilo.priors.loading import build_prior
from monai_dmilo.operators import build as build_operator
from monai_dmilo.operators import gaussian_kernel, kspace_mask
from monai_dmilo.solvers import SOLVERS, DMILO, DMPlug, build

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")

CUDA = torch.device("cuda")
REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "configs" / "models" / "fashion_mnist_32.yaml"


@pytest.fixture(autouse=True)
def _exact_float32():
    """Full float32 on the GPU (no TF32), so CPU and CUDA results are comparable."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


@contextlib.contextmanager
def syncs_are_errors():
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def forbid_syncs_in_loops(solver, monkeypatch) -> None:
    """Any host-device sync inside the solver's loops (``_run``) raises a RuntimeError."""
    run = solver._run

    def guarded(*args, **kwargs):
        with syncs_are_errors():
            return run(*args, **kwargs)

    monkeypatch.setattr(solver, "_run", guarded)


def sample_on_cuda(generator: StepwiseDDIM, batch: int, seed: int = 7) -> torch.Tensor:
    """``clip(G(z))`` of a seeded noise, for a generator on the GPU: an image in its range."""
    z = torch.randn(batch, *generator.image_shape, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return generator.sample(z.to(CUDA)).clamp(-1, 1)


def cuda_problem(batch: int = 2):
    """The CPU mask problem of test_solvers, and the same on the GPU."""
    y, op, generator = mask_problem(batch)
    return (y, op, generator), (y.to(CUDA), PixelMask(op.mask.to(CUDA)), toy_generator().to(CUDA))


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_solver_follows_the_device_and_matches_cpu(name):
    (y, op, generator), (y_gpu, op_gpu, generator_gpu) = cuda_problem()
    solver = build(name, **FAST[name])
    cpu = solver.solve(y, op, generator, seed=[3, 4])
    gpu = solver.solve(y_gpu, op_gpu, generator_gpu, seed=[3, 4])
    assert gpu.x.device.type == "cuda" and gpu.history["data_fit"].device.type == "cuda"
    assert gpu.nfe == cpu.nfe
    torch.testing.assert_close(gpu.x.cpu(), cpu.x, atol=1e-3, rtol=0)
    again = solver.solve(y_gpu, op_gpu, generator_gpu, seed=[3, 4])
    torch.testing.assert_close(again.x, gpu.x, atol=1e-6, rtol=0)  # reproducible on the GPU too


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_batch_equals_singles_on_cuda(name):
    _, (y, op, generator) = cuda_problem(3)
    solver = build(name, **FAST[name])
    batched = solver.solve(y, op, generator, seed=[10, 11, 12])
    for b, seed in enumerate([10, 11, 12]):
        single = solver.solve(y[b : b + 1], PixelMask(op.mask[b : b + 1]), generator, seed=seed)
        torch.testing.assert_close(single.x[0], batched.x[b], atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_no_host_device_sync_in_the_loops_with_the_shipped_prior(name, monkeypatch):
    generator = build_prior(SHIPPED, num_steps=3, device=CUDA)
    x = sample_on_cuda(generator, 2)
    op = build_operator("inpainting", mask=random_mask(2, size=32).to(CUDA))
    solver = build(name, **FAST[name])
    forbid_syncs_in_loops(solver, monkeypatch)
    out = solver.solve(op(x), op, generator, seed=[0, 1])
    assert torch.isfinite(out.x).all()


@pytest.mark.parametrize(
    "task, params",
    [
        ("inpainting", lambda: {"mask": random_mask(2, size=32)}),
        ("super_resolution", lambda: {"scale": 2}),
        ("blur", lambda: {"kernel": gaussian_kernel(5, 1.0)}),
        ("mri", lambda: {"mask": kspace_mask((32, 32), 4, seed=0)[0]}),
    ],
)
def test_operators_inside_dmilo_make_no_sync(task, params, monkeypatch):
    generator = StepwiseDDIM(toy_generator().network, num_steps=3, image_shape=(1, 32, 32)).to(CUDA)
    values = {k: v.to(CUDA) if isinstance(v, torch.Tensor) else v for k, v in params().items()}
    op = build_operator(task, **values)
    x = sample_on_cuda(generator, 2)
    solver = DMILO(num_outer=1, num_inner=3)
    forbid_syncs_in_loops(solver, monkeypatch)
    out = solver.solve(op(x), op, generator, seed=[0, 1])
    assert out.x.device.type == "cuda"


def test_blind_deblurring_on_cuda_makes_no_sync(monkeypatch):
    generator = toy_generator().to(CUDA)
    x = sample_on_cuda(generator, 2)
    y = build_operator("blur", kernel=gaussian_kernel(5, 1.2).to(CUDA))(x)
    solver = DMILO(num_outer=2, num_inner=5, blind_kernel_size=5)
    forbid_syncs_in_loops(solver, monkeypatch)
    out = solver.solve(y, None, generator, seed=[1, 2])
    assert out.kernel.device.type == "cuda" and out.kernel.shape == (2, 5, 5)
    torch.testing.assert_close(out.kernel.sum((1, 2)), torch.ones(2, device=CUDA))


def test_bf16_autocast_on_cuda():
    _, (y, op, _) = cuda_problem()
    generator = StepwiseDDIM(toy_generator().network, num_steps=3, image_shape=(1, 16, 16),
                             autocast_dtype="bfloat16").to(CUDA)
    dtypes = set()
    generator.network.net[0].register_forward_hook(lambda m, i, o: dtypes.add(o.dtype))
    out = DMILO(num_outer=3, num_inner=15).solve(y, op, generator, seed=[1, 2])
    assert dtypes == {torch.bfloat16} and out.x.dtype == torch.float32
    fit = out.history["data_fit"]
    assert (fit[-1] < 0.5 * fit[0]).all(), fit


def test_compiled_unet_gives_the_eager_result_on_cuda():
    eager = unet_generator().to(CUDA)
    compiled = StepwiseDDIM(eager.network, num_steps=3, image_shape=(1, 16, 16), compile_network=True)
    y, op, _ = mask_problem(2, unet_generator())
    y, op = y.to(CUDA), PixelMask(op.mask.to(CUDA))
    a = DMILO(num_outer=1, num_inner=5).solve(y, op, eager, seed=[1, 2])
    b = DMILO(num_outer=1, num_inner=5).solve(y, op, compiled, seed=[1, 2])
    torch.testing.assert_close(b.x, a.x, atol=1e-4, rtol=0)


def _peak_bytes(solver, generator, y, op) -> int:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    solver.solve(y, op, generator, seed=0)
    return torch.cuda.max_memory_allocated() - base


def test_dmilo_peak_memory_flat_in_steps_dmplug_growing():
    # the shipped prior is fully convolutional: at 64 x 64 one evaluation's activations dominate
    op = PixelMask(random_mask(2, size=64).to(CUDA))
    y = op(torch.rand(2, 1, 64, 64, device=CUDA) * 2 - 1)
    peaks = {}
    for steps in (1, 8):
        generator = build_prior(SHIPPED, num_steps=steps, device=CUDA, image_shape=(1, 64, 64))
        peaks["dmilo", steps] = _peak_bytes(DMILO(num_outer=1, num_inner=2), generator, y, op)
        peaks["dmplug", steps] = _peak_bytes(DMPlug(num_iters=2), generator, y, op)
    assert peaks["dmilo", 8] <= 1.05 * peaks["dmilo", 1], peaks
    assert peaks["dmplug", 8] >= 3 * peaks["dmplug", 1], peaks


def test_bundle_evaluate_on_cuda(tmp_path, monkeypatch):
    from helpers import make_pngs, rows, run

    monkeypatch.chdir(REPO)  # the bundle configs name their includes relative to the repository
    make_pngs(tmp_path / "data", 2)
    cpu, gpu = tmp_path / "cpu", tmp_path / "gpu"
    run("evaluate.yaml", tmp_path, dataset_dir=str(tmp_path / "data"), output_dir=str(cpu))
    run("evaluate.yaml", tmp_path, dataset_dir=str(tmp_path / "data"), output_dir=str(gpu), device="cuda")
    for a, b in zip(rows(cpu / "metrics.csv"), rows(gpu / "metrics.csv")):
        assert a["name"] == b["name"]
        assert abs(float(a["psnr"]) - float(b["psnr"])) < 0.05, (a, b)
    assert len(list((gpu / "panels").glob("*.png"))) == 2
