"""Wall time, network evaluations and PSNR of every solver preset on the same inpainting problems.

For each preset (``configs/solvers``) the same batch of shipped held-out images is solved once;
the table gives wall time and NFE per image, PSNR of what the solver returns (final iterate, no
ground-truth picking), and the overhead ``wall / (NFE x t_fb)``, where ``t_fb`` is one network
forward+backward (one DDIM step ``g_i`` with its backward to ``z``) on the same batch, timed
alone right before and right after each solve (their mean is used, and both are printed, so that a
machine whose speed drifts during the run shows up instead of skewing the ratio). An overhead near
1 means the solver spends its time in the network, not around it.
Forward-only evaluations (initialisation, regeneration) count as NFE too and cost less than a
forward+backward, so DMILO's overhead is slightly understated by this definition.

A second table compares throughput (images per second) of DMILO at batch 1 and batch 8.

Usage::

    python benchmarks/speed.py [--images 4] [--presets inpainting_dmilo inpainting_dmilo_pgd \
        inpainting_dmilo_fashion32 inpainting_dmplug dps] [--scale 1.0] [--device cpu] [--output docs/benchmarks/speed.md]

``--scale`` multiplies every preset's iteration counts (e.g. 0.1 for a quick look).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from common import (DEFAULT_MODEL, REPO, inpainting_problem, load_samples, markdown_table, psnr, save_plot,
                    time_step, write_report)

from monai_dmilo.priors.loading import build_prior  # noqa: E402
from monai_dmilo.solvers import build, load_solver_preset  # noqa: E402

ITERATION_KEYS = ("num_inner", "num_iters", "num_steps", "num_fidelity_steps")


def scaled(params: dict, scale: float) -> dict:
    return {k: max(1, round(v * scale)) if k in ITERATION_KEYS else v for k, v in params.items()}


def time_forward_backward(generator, z: torch.Tensor, repeats: int = 10) -> float:
    """Seconds of one ``g_i`` forward+backward on ``z``, averaged over the steps and ``repeats``."""
    return time_step(generator, z, repeats=repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-config", default=str(DEFAULT_MODEL))
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument(
        "--presets", nargs="+",
        default=["inpainting_dmilo", "inpainting_dmilo_pgd", "inpainting_dmilo_fashion32", "inpainting_dmplug", "dps"],
    )
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--throughput-inner", type=int, default=20, help="DMILO num_inner of the batch-size test")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks" / "speed.md")
    args = parser.parse_args()
    torch.set_flush_denormal(True)  # CPU: denormals in the prior's backward cost ~30x (see README)
    device = torch.device(args.device)
    generator = build_prior(args.model_config, num_steps=3, device=device)

    x = load_samples(args.images).to(device)
    y, operator = inpainting_problem(x)
    probe = torch.randn_like(x)
    t_after = time_forward_backward(generator, probe)
    print(f"one forward+backward, batch {args.images}: {t_after * 1e3:.1f} ms", flush=True)

    rows, results, t_fbs = [], {}, [t_after]
    for preset_name in args.presets:
        preset = load_solver_preset(preset_name)
        params = scaled(preset["params"], args.scale)
        solver = build(preset["solver"], progress=True, **params)
        t_before = t_after
        out = solver.solve(y, operator, generator, seed=list(range(args.images)))
        t_after = time_forward_backward(generator, probe)
        t_fb = 0.5 * (t_before + t_after)
        t_fbs.append(t_after)
        quality = psnr(out.x, x)
        results[preset_name] = (out.wall_time, out.nfe, float(quality.mean()))
        overhead = out.wall_time / (out.nfe * t_fb)
        rows.append([
            preset_name, f"{out.wall_time / args.images:.1f}", str(out.nfe), f"{quality.mean():.2f} ± {quality.std():.2f}",
            f"{t_before * 1e3:.1f} / {t_after * 1e3:.1f}", f"{overhead:.2f}",
        ])
        print(" | ".join(rows[-1]), flush=True)
    table = markdown_table(
        ["preset", "wall s / image", "NFE / image", "PSNR dB (mean ± std)", "t_fb before / after (ms)", "overhead"], rows
    )

    notes = []
    if "inpainting_dmplug" in results:
        w_p, n_p, p_p = results["inpainting_dmplug"]
        for name in (n for n in results if n.startswith("inpainting_dmilo")):
            w_d, n_d, p_d = results[name]
            notes.append(f"inpainting_dmplug / {name}: {w_p / w_d:.2f}x the wall time, {n_p / n_d:.2f}x the NFE, "
                         f"PSNR {p_p:.2f} vs {p_d:.2f} dB.")

    throughput = []
    for batch in (1, 8):
        xb = load_samples(batch).to(device)
        yb, opb = inpainting_problem(xb)
        solver = build("dmilo", num_outer=1, num_inner=args.throughput_inner)
        solver.solve(yb, opb, generator, seed=0)  # warm-up
        out = solver.solve(yb, opb, generator, seed=list(range(batch)))
        throughput.append([str(batch), f"{out.wall_time:.2f}", f"{batch / out.wall_time:.2f}"])
        print("batch", " | ".join(throughput[-1]), flush=True)
    ratio = float(throughput[1][2]) / float(throughput[0][2])
    notes.append(f"Batch-8 throughput / batch-1 throughput: {ratio:.2f}x.")
    table += "\n\nDMILO throughput (num_outer 1, num_inner {}):\n\n".format(args.throughput_inner)
    table += markdown_table(["batch", "wall s", "images / s"], throughput)
    table = (f"Inpainting (70% hidden, sigma 0.01), {args.images} shipped held-out Fashion-MNIST images "
             f"solved as one batch, prior `{Path(args.model_config).name}`, N = 3, iteration scale "
             f"{args.scale}; one forward+backward at batch {args.images}: {min(t_fbs) * 1e3:.1f} to "
             f"{max(t_fbs) * 1e3:.1f} ms during the run.\n\n" + table)
    print(table)
    print("\n".join(notes))
    command = "python benchmarks/speed.py " + " ".join(sys.argv[1:])
    write_report(args.output, "Speed of the solvers", command.strip(), table, "\n".join(notes))

    def draw(ax):
        for name, (wall, _, quality) in results.items():
            ax.scatter(wall / args.images, quality, s=40)
            ax.annotate(name, (wall / args.images, quality), fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter("")  # the log axis' minor labels overlap
        ax.set_xlabel("wall time per image (s)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title("Inpainting: quality against time")

    save_plot(args.output.with_suffix(".png"), draw)


if __name__ == "__main__":
    main()
