"""Paired comparison of solver presets on a test split: PSNR per image, NFE and wall time.

``speed.py`` times every preset on four shipped images; four images cannot say whether one preset
is as good as another. This script solves ``--count`` Fashion-MNIST test images (every
``--stride``-th from ``--start``; the default start 300 shares no image with the validation split
of ``validation_sweep.py``, start 1, on which presets are chosen, nor with the shipped samples)
with each preset, as one batch, and compares each with ``--reference`` image by image: the mean
paired PSNR difference with its standard error, how many images are at least as good, and the
wall-time and NFE ratios. Problem: inpainting, 70% hidden, sigma 0.01 (masks and noise from seed
200, other than the benchmark's and the validation split's). Every solve returns its final iterate.

Each preset's result is cached under ``data_cache/compare/``, keyed by the solver, its
parameters, the images, the problem, the prior's weights, the device and torch version, so adding
a preset to a comparison does not rerun the others (DMPlug's 5,000 iterations take most of an
hour on 12 images on a 2-core CPU). ``--fresh`` ignores the cache.

Usage::

    python benchmarks/compare.py --presets inpainting_dmplug inpainting_dmilo_fashion32 inpainting_dmilo \\
        --reference inpainting_dmplug [--count 12] [--output docs/benchmarks/compare.md]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch

from common import (
    DEFAULT_MODEL, REPO, inpainting_problem, markdown_table, psnr, save_plot, split_images, write_report,
)

from monai_dmilo.networks.priors import build_generator  # noqa: E402
from monai_dmilo.solvers import build, load_solver_preset  # noqa: E402

CACHE_DIR = REPO / "data_cache" / "compare"
PROBLEM = {"task": "inpainting", "hidden": 0.7, "sigma": 0.01, "seed": 200}


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 of a module's parameters and buffers (names, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def solve_cached(preset_name: str, y, operator, generator, names: list[str], context: dict, fresh: bool) -> dict:
    """``{"x": (B, C, H, W), "nfe": int, "wall_time": float}`` of one preset, from the cache when present."""
    preset = load_solver_preset(preset_name)
    key_source = json.dumps({"solver": preset["solver"], "params": preset["params"], "images": names, **context},
                            sort_keys=True)
    path = CACHE_DIR / f"{Path(preset_name).stem}-{hashlib.sha256(key_source.encode()).hexdigest()[:16]}.pt"
    if path.is_file() and not fresh:
        print(f"{preset_name}: cached result {path.relative_to(REPO)}", flush=True)
        return torch.load(path, weights_only=True)
    solver = build(preset["solver"], progress=True, **preset["params"])
    out = solver.solve(y, operator, generator, seed=list(range(len(names))))
    result = {"x": out.x.detach().cpu(), "nfe": out.nfe, "wall_time": out.wall_time}
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    torch.save(result, path)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", required=True, help="solver presets of configs/solvers")
    parser.add_argument("--reference", required=True, help="the preset the others are compared with")
    parser.add_argument("--model-config", default=str(DEFAULT_MODEL))
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--start", type=int, default=300)
    parser.add_argument("--stride", type=int, default=617)
    parser.add_argument("--fresh", action="store_true", help="solve again even when a cached result exists")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks" / "compare.md")
    args = parser.parse_args()
    if args.reference not in args.presets:
        parser.error(f"--reference {args.reference!r} must be one of --presets {args.presets}.")
    torch.set_flush_denormal(True)  # CPU: denormals in the prior's backward cost ~30x (see README)
    device = torch.device(args.device)
    generator = build_generator(args.model_config, num_steps=3, device=device)
    names, x = split_images(args.start, args.stride, args.count)
    x = x.to(device)
    y, operator = inpainting_problem(x, hidden=PROBLEM["hidden"], sigma=PROBLEM["sigma"], seed=PROBLEM["seed"])
    print(f"test images: {', '.join(names)}", flush=True)
    context = {"problem": PROBLEM, "prior": weights_digest(generator), "device": device.type,
               "torch": torch.__version__}

    results = {name: solve_cached(name, y, operator, generator, names, context, args.fresh) for name in args.presets}
    quality = {name: psnr(r["x"].to(device), x).cpu() for name, r in results.items()}
    ref, ref_result = quality[args.reference], results[args.reference]
    rows = []
    for name in args.presets:
        r, diff = results[name], quality[name] - ref
        rows.append([
            name, str(r["nfe"]), f"{r['wall_time'] / args.count:.1f}",
            f"{quality[name].mean():.2f} ± {quality[name].std():.2f}",
            f"{diff.mean():+.2f} ± {diff.std() / args.count ** 0.5:.2f}", f"{int((diff >= 0).sum())} / {args.count}",
            f"{ref_result['wall_time'] / r['wall_time']:.2f}x", f"{ref_result['nfe'] / r['nfe']:.2f}x",
        ])
    table = (f"Inpainting (70% hidden, sigma 0.01, seed {PROBLEM['seed']}), {args.count} Fashion-MNIST test images "
             f"({', '.join(names)}) solved as one batch per preset, prior `{Path(args.model_config).name}`, N = 3, "
             f"final iterate. Paired differences and ratios are against `{args.reference}`; wall times may come "
             "from different runs (cached), NFE ratios do not depend on the machine.\n\n")
    table += markdown_table(
        ["preset", "NFE / image", "wall s / image", "PSNR dB (mean ± std)",
         f"paired difference to {args.reference} (mean ± s.e.)", "images at least as good",
         f"{args.reference} wall / this wall", f"{args.reference} NFE / this NFE"], rows)
    per_image = markdown_table(["image"] + args.presets,
                               [[n] + [f"{float(quality[p][i]):.2f}" for p in args.presets] for i, n in enumerate(names)])
    table += "\n\nPSNR (dB) per image:\n\n" + per_image
    print(table)
    command = "python benchmarks/compare.py " + " ".join(sys.argv[1:])
    write_report(args.output, "Paired comparison of solver presets on a test split", command.strip(), table)

    def draw_tradeoff(ax):
        for name in args.presets:
            wall = results[name]["wall_time"] / args.count
            ax.errorbar(wall, float(quality[name].mean()), yerr=float(quality[name].std() / args.count ** 0.5),
                        marker="o", capsize=3)
            ax.annotate(name, (wall, float(quality[name].mean())), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("wall s per image")
        ax.set_ylabel("PSNR (dB), mean ± s.e.")
        ax.set_title(f"{args.count} test images, inpainting 70% hidden")

    save_plot(args.output.with_suffix(".png"), draw_tradeoff)

    shown = min(args.count, 6)
    rows_shown = [("truth", x), ("measurement", y)] + [(name, results[name]["x"].to(device)) for name in args.presets]

    def draw_panel(axes):
        for r, (label, images) in enumerate(rows_shown):
            for c in range(shown):
                ax = axes[r, c]
                ax.imshow(images[c, 0].clamp(-1, 1).cpu().numpy(), cmap="gray", vmin=-1, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if c == 0:
                    ax.set_ylabel(Path(label).stem, fontsize=6)
                if label in quality:
                    ax.set_title(f"{float(quality[label][c]):.1f} dB", fontsize=6)

    save_plot(args.output.with_name(args.output.stem + "_panel.png"), draw_panel, grid=(len(rows_shown), shown),
              figsize=(1.3 * shown, 1.3 * len(rows_shown)))


if __name__ == "__main__":
    main()
