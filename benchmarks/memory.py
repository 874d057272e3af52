"""Peak memory of DMILO, DMILO-PGD, DMPlug and checkpointed DMPlug as the number of DDIM steps N grows.

DMILO keeps one network evaluation in its autograd graph, so its memory should stay flat in N;
DMPlug back-propagates through all N evaluations, so its activation memory grows linearly.

On CUDA: ``torch.cuda.max_memory_allocated`` above what was allocated before the solve.
On CPU: each configuration runs in a fresh process; the reported number is the process's peak
resident set size (``ru_maxrss``) and, more telling, its growth during the solve (peak minus the
peak before the solve: model, inputs and torch's own footprint excluded). The worker runs with
``MALLOC_MMAP_THRESHOLD_=65536``: glibc then serves every large tensor from its own mapping and
returns it to the system when freed, so RSS follows live memory. With glibc's default (a
threshold that rises as tensors are freed) freed blocks stay in the heap and the peak RSS of the
same configuration varied by about 15% between runs.

A latent prior (``--model-config configs/models/fashion_latent_16.yaml``) counts N as its latent
DDIM steps (the decoder is one more layer); ``z_0`` is drawn on the decoder's input grid.

Usage::

    python benchmarks/memory.py [--size 128] [--batch 4] [--steps 1 2 4 8] [--device cpu] \
        [--model-config configs/models/fashion_mnist_32.yaml] [--output docs/benchmarks/memory.md]

The shipped prior is fully convolutional, so ``--size`` larger than its 32 x 32 training size
only makes the activations (what is measured) large enough to stand out from torch's footprint.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import torch

from common import DEFAULT_MODEL, REPO, inpainting_problem, markdown_table, save_plot, write_report

SOLVERS = {  # label: (registry name, hyperparameters) -- a few iterations suffice for a peak
    "DMILO": ("dmilo", {"num_outer": 1, "num_inner": 2}),
    "DMILO-PGD": ("dmilo_pgd", {"num_outer": 1, "num_inner": 2, "lr_x": 0.5}),
    "DMPlug": ("dmplug", {"num_iters": 2}),
    "DMPlug (checkpointing)": ("dmplug", {"num_iters": 2, "checkpointing": True}),
}


def measure(label: str, steps: int, args: argparse.Namespace) -> dict:
    """Run one configuration in this process; MiB numbers."""
    from monai_dmilo.priors.loading import build_prior
    from monai_dmilo.solvers import build

    torch.set_flush_denormal(True)
    device = torch.device(args.device)
    generator = build_prior(args.model_config, num_steps=steps, device=device)
    channels = generator.image_shape[0]
    shape = (args.batch, channels, args.size, args.size)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0)).mul(2).sub(1).to(device)
    y, operator = inpainting_problem(x)
    latent = getattr(generator, "latent_shape", None)  # a latent prior: z0 on the decoder's input grid
    factor = generator.image_shape[1] // latent[1] if latent else 1
    z_shape = (args.batch, latent[0], args.size // factor, args.size // factor) if latent else shape
    z0 = torch.randn(z_shape, generator=torch.Generator().manual_seed(1)).to(device)
    name, params = SOLVERS[label]
    solver = build(name, **params)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        solver.solve(y, operator, generator, z_init=z0)
        peak = torch.cuda.max_memory_allocated(device)
        return {"peak": peak / 2**20, "growth": (peak - before) / 2**20}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    solver.solve(y, operator, generator, z_init=z0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak": peak / 1024, "growth": (peak - before) / 1024}


def run_fresh(label: str, steps: int, argv: list[str]) -> dict:
    """``measure`` in a new Python process (CPU: a clean peak RSS per configuration)."""
    cmd = [sys.executable, __file__, *argv, "--worker", label, str(steps)]
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-config", default=str(DEFAULT_MODEL))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks" / "memory.md")
    parser.add_argument("--solvers", nargs="+", default=list(SOLVERS), choices=list(SOLVERS))
    parser.add_argument("--worker", nargs=2, metavar=("SOLVER", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker[0], int(args.worker[1]), args)))
        return

    passthrough = ["--model-config", args.model_config, "--size", str(args.size), "--batch", str(args.batch),
                   "--device", args.device]
    cuda = args.device.startswith("cuda")
    results: dict[str, dict[int, dict]] = {}
    for label in args.solvers:
        results[label] = {}
        for n in args.steps:
            results[label][n] = measure(label, n, args) if cuda else run_fresh(label, n, passthrough)
            r = results[label][n]
            print(f"{label:24s} N={n}: peak {r['peak']:8.1f} MiB, growth during solve {r['growth']:8.1f} MiB", flush=True)

    what = "CUDA max allocated" if cuda else "peak RSS of a fresh process"
    header = ["solver"] + [f"N={n}" for n in args.steps] + [f"N={args.steps[-1]} / N={args.steps[0]}"]
    rows = []
    for label, by_n in results.items():
        first, last = by_n[args.steps[0]]["growth"], by_n[args.steps[-1]]["growth"]
        cells = [f"{by_n[n]['peak']:.0f} (+{by_n[n]['growth']:.0f})" for n in args.steps]
        rows.append([label, *cells, f"{last / first:.2f}x" if first > 0 else "n/a"])
    table = (
        f"{what} in MiB, and in brackets its growth during the solve; batch {args.batch} x "
        f"{args.size}x{args.size}, prior `{Path(args.model_config).name}`.\n\n" + markdown_table(header, rows)
    )
    print(table)
    command = "python benchmarks/memory.py " + " ".join(sys.argv[1:])
    write_report(args.output, "Peak memory against the number of DDIM steps", command.strip(), table)

    def draw(ax):
        for label, by_n in results.items():
            ax.plot(args.steps, [by_n[n]["growth"] for n in args.steps], marker="o", label=label)
        ax.set_xlabel("DDIM steps N")
        ax.set_ylabel("memory growth during solve (MiB)")
        ax.set_xticks(args.steps)
        ax.set_title(f"{what}, batch {args.batch} x {args.size}^2")
        ax.legend()

    save_plot(args.output.with_suffix(".png"), draw)


if __name__ == "__main__":
    main()
