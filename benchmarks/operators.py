"""Adjointness and speed of every forward operator.

For each operator (paper-sized parameters) this prints one row: the float64 adjointness error
``|<Ax, y> - <x, A*y>| / (||Ax|| ||y||)`` for random ``x`` and ``y`` and the wall time of one
forward and one adjoint pass on a float32 batch (default ``8 x 3 x 256 x 256``, CPU), and writes
the table to ``docs/operators.md`` with the command that produced it.

Usage::

    python benchmarks/operators.py [--batch 8] [--channels 3] [--size 256] [--repeats 3] \
        [--device cpu] [--threads N] [--output docs/operators.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monai_dmilo.operators import (  # noqa: E402
    build,
    gaussian_kernel,
    kspace_mask,
    motion_kernel,
    random_pixel_mask,
    simulate_coil_maps,
)


def _cases(batch: int, channels: int, size: int) -> list[tuple[str, str, Callable[[], dict], int | None]]:
    """(label, registry name, params factory, channels override)."""
    return [
        (
            "inpainting",
            "inpainting",
            lambda: {"mask": torch.stack([random_pixel_mask((size, size), 0.7, seed=b) for b in range(batch)])},
            None,
        ),
        ("super_resolution", "super_resolution", lambda: {"scale": 4}, None),
        ("blur (Gaussian)", "blur", lambda: {"kernel": gaussian_kernel(64, 3.0)}, None),
        (
            "blur (motion, per sample)",
            "blur",
            lambda: {"kernel": torch.stack([motion_kernel(64, 0.5, seed=b) for b in range(batch)])},
            None,
        ),
        (
            "mri (single-coil)",
            "mri",
            lambda: {"mask": torch.stack([kspace_mask((size, size), 4, 0.08, seed=b) for b in range(batch)])},
            None,
        ),
        (
            "mri (8 coils)",
            "mri",
            lambda: {
                "mask": kspace_mask((size, size), 4, 0.08, seed=0)[0, 0],
                "coil_maps": simulate_coil_maps((size, size), 8)[None],
            },
            1,
        ),
        ("ct", "ct", lambda: {"angles": torch.arange(60) * 3.0}, None),
        ("phase_retrieval", "phase_retrieval", lambda: {"oversampling": 2.0}, None),
        (
            "module",
            "module",
            lambda: {"module": nn.Sequential(nn.Conv2d(channels, channels, 5, padding=2), nn.Tanh())},
            None,
        ),
    ]


def _describe(label: str, params: dict) -> str:
    parts = []
    for key, value in params.items():
        if isinstance(value, torch.Tensor):
            parts.append(f"{key} {tuple(value.shape)}")
        elif isinstance(value, nn.Module):
            parts.append(f"{key} {type(value).__name__}")
        else:
            parts.append(f"{key}={value}")
    return ", ".join(parts)


def _random(shape, dtype, seed, device) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dtype.is_complex:
        real = torch.randn(*shape, 2, generator=g, dtype=torch.float64 if dtype == torch.complex128 else torch.float32)
        return torch.view_as_complex(real).to(device)
    return torch.randn(*shape, generator=g, dtype=dtype).to(device)


def adjointness_error(op, x_shape, device) -> float:
    """Float64 error of <Ax, y> = <x, A*y> (complex inner product for complex outputs)."""
    x = _random(x_shape, torch.float64, 0, device)
    ax = op(x)
    if ax.is_complex():  # complex-linear operator: test on complex images
        x = torch.complex(x, _random(x_shape, torch.float64, 1, device))
        ax = op(x)
    y = _random(ax.shape, ax.dtype, 2, device)
    aty = op.adjoint(y)
    lhs = torch.vdot(ax.reshape(-1).to(torch.complex128), y.reshape(-1).to(torch.complex128))
    rhs = torch.vdot(x.reshape(-1).to(torch.complex128), aty.reshape(-1).to(torch.complex128))
    return float((lhs - rhs).abs() / (ax.norm() * y.norm()))


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timing(op, x: torch.Tensor, repeats: int) -> tuple[float, float | None]:
    """Median seconds of one forward and one adjoint pass (adjoint None for nonlinear operators)."""
    with torch.no_grad():
        y = op(x)
        if op.linear:
            op.adjoint(y)
        forward, adjoint = [], []
        for _ in range(repeats):
            _sync(x.device)
            start = time.perf_counter()
            y = op(x)
            _sync(x.device)
            forward.append(time.perf_counter() - start)
            if op.linear:
                start = time.perf_counter()
                op.adjoint(y)
                _sync(x.device)
                adjoint.append(time.perf_counter() - start)
    return statistics.median(forward), (statistics.median(adjoint) if adjoint else None)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--output", default=str(Path(__file__).resolve().parents[1] / "docs" / "operators.md"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    for label, name, make, channels in _cases(args.batch, args.channels, args.size):
        params = make()
        c = channels or args.channels
        shape = (args.batch, c, args.size, args.size)
        if name == "module":
            params["module"] = params["module"].to(device)
        op64 = build(name, **{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in params.items()})
        if name == "module":
            op64.module.double()
        error = adjointness_error(op64, shape, device) if op64.linear else None
        if name == "module":
            op64.module.float()
        x = _random(shape, torch.float32, 3, device)
        forward, adjoint = timing(op64, x, args.repeats)
        y_shape = tuple(op64(x).shape)
        rows.append((label, _describe(label, params), shape, y_shape, error, forward, adjoint))
        err_text = f"{error:.1e}" if error is not None else "n/a"
        adj_text = f"{adjoint * 1e3:.0f}" if adjoint is not None else "-"
        print(f"{label:28s} err={err_text:>8s}  forward {forward * 1e3:8.1f} ms  adjoint {adj_text:>8s} ms", flush=True)

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    command = "python benchmarks/operators.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [
        "# Forward operators: adjointness and speed",
        "",
        f"Made by `{command.strip()}` on {platform.machine()} / {platform.processor() or 'cpu'}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, device `{device}`, "
        f"{os.cpu_count()} CPUs with a load average of {load:.1f} when it finished (times on a busy machine are "
        "upper bounds).",
        "",
        "Adjointness error: `|<Ax, y> - <x, A*y>| / (||Ax|| ||y||)` in float64 with random `x` and `y`",
        "(complex inner product and complex `x` for `mri`). Times: median of "
        f"{args.repeats} runs, float32, `x` of shape {(args.batch, args.channels, args.size, args.size)}"
        " (the multi-coil MRI row takes one channel).",
        "",
        "| operator | parameters | x | y | adjointness error (float64) "
        "| forward (ms) | adjoint (ms) | forward + adjoint (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, desc, shape, y_shape, error, forward, adjoint in rows:
        err_text = f"{error:.1e}" if error is not None else "nonlinear"
        adj_text = f"{adjoint * 1e3:.1f}" if adjoint is not None else "-"
        total = f"{(forward + (adjoint or 0.0)) * 1e3:.1f}"
        lines.append(
            f"| {label} | {desc} | {shape} | {y_shape} | {err_text} | {forward * 1e3:.1f} | {adj_text} | {total} |"
        )
    lines += [
        "",
        "## Conventions",
        "",
        "- `inpainting`: `y = m * x`; masks `(B|1, 1|C, H, W)` or `(H, W)`; self-adjoint.",
        "- `super_resolution`: MATLAB `imresize` bicubic (Keys a = -0.5) widened by the factor `s` (anti-aliasing),",
        "  symmetric boundary, as two dense matrices: `A x = R_h x R_w^T`, `A* y = R_h^T y R_w` (exact).",
        "- `blur`: true convolution (kernel flipped) with reflect padding, same-size output, via FFT on a grid",
        "  large enough that nothing wraps around; adjoint = correlation + folding the padding back (exact).",
        "  Kernels `(k, k)` or `(B, k, k)`, differentiable in the kernel.",
        "- `mri`: `y = M * F(S x)`, centred orthonormal FFT. Complex-linear; `adjoint` returns the complex",
        "  `A^H y` also for real `x` (for a real image space use `adjoint(y).real`, which equals autograd's VJP).",
        "- `ct`: parallel beam, angles in degrees, bilinear ray sampling at unit steps (`grid_sample`,",
        "  `align_corners=True`); back-projection = the scatter-add transpose (PyTorch's grid-sampler",
        "  input-gradient kernel). Default detectors: `ceil(sqrt(H^2 + W^2))` with the parity of `W`.",
        "- `phase_retrieval`: `|F(pad(x))|`, zero padding to `round(oversampling * H)`; `module`: any `nn.Module`.",
        "- Noise (simulation only): Gaussian `sigma` in the units of `y` (0.01 on the [-1, 1] image scale;",
        "  per real/imaginary component for complex `y`), Poisson `Poisson(scale * y) / scale`; drawn per",
        "  sample from `torch.Generator().manual_seed(seed_b)` on the CPU; unmeasured entries (hidden pixels,",
        "  unsampled k-space) stay zero.",
    ]
    text = "\n".join(lines) + "\n"
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(text)
    print(f"\nwrote {args.output}")
    return text


if __name__ == "__main__":
    main()
