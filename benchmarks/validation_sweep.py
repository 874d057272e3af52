"""PSNR of DMILO against its inner-iteration count M, on a validation split (not the benchmark images).

Presets are chosen here, on images the speed benchmark never uses, and then evaluated there, so
that no benchmark number comes from tuning on the benchmark images (and no per-image result is
picked with the ground truth: every solve returns its final iterate).

Validation images: ``--count`` Fashion-MNIST test-split PNGs (prepared by
``scripts/prepare_data.py`` into ``data_cache/fashion_mnist/test``), taken every ``--stride``
images from ``--start``, skipping the shipped sample images. Problem: inpainting, 70% hidden,
sigma 0.01, as in ``speed.py``. All M values solve the same problems from the same seeds, so the
paired difference to the reference M (mean and its standard error) is the number to read.

Usage::

    python benchmarks/validation_sweep.py [--inner 40 80 200] [--count 16] [--output docs/benchmarks/validation_sweep.md]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from common import (
    DEFAULT_MODEL, REPO, SAMPLE_DIR, inpainting_problem, load_grey_pngs, markdown_table, psnr, save_plot, write_report,
)

from monai_dmilo.networks.priors import build_generator  # noqa: E402
from monai_dmilo.solvers import build, load_solver_preset  # noqa: E402

VALIDATION_DIR = REPO / "data_cache" / "fashion_mnist" / "test"


def validation_images(start: int, stride: int, count: int) -> tuple[list[str], torch.Tensor]:
    """Names and ``(count, 1, 32, 32)`` images in [-1, 1] of the validation split."""
    if not VALIDATION_DIR.is_dir():
        sys.exit(f"{VALIDATION_DIR} not found: run `python scripts/prepare_data.py` first.")
    shipped = {p.name for p in SAMPLE_DIR.glob("*.png")}
    paths = sorted(VALIDATION_DIR.glob("*.png"))[start::stride]
    paths = [p for p in paths if p.name not in shipped][:count]
    if len(paths) < count:
        sys.exit(f"only {len(paths)} validation images in {VALIDATION_DIR} for --count {count}.")
    return [p.stem for p in paths], load_grey_pngs(paths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-config", default=str(DEFAULT_MODEL))
    parser.add_argument("--preset", default="inpainting_dmilo", help="the preset whose num_inner is varied")
    parser.add_argument("--inner", type=int, nargs="+", default=[40, 80, 200])
    parser.add_argument("--reference", type=int, default=200, help="the M the others are compared with")
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--start", type=int, default=1)
    parser.add_argument("--stride", type=int, default=617)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks" / "validation_sweep.md")
    args = parser.parse_args()
    if args.reference not in args.inner:
        parser.error(f"--reference {args.reference} must be one of --inner {args.inner}.")
    torch.set_flush_denormal(True)
    device = torch.device(args.device)
    generator = build_generator(args.model_config, num_steps=3, device=device)
    names, x = validation_images(args.start, args.stride, args.count)
    x = x.to(device)
    y, operator = inpainting_problem(x, seed=100)  # other masks and noise than the benchmark's
    preset = load_solver_preset(args.preset)
    print(f"validation images: {', '.join(names)}", flush=True)

    quality, nfe = {}, {}
    for inner in args.inner:
        solver = build(preset["solver"], progress=True, **{**preset["params"], "num_inner": inner})
        out = solver.solve(y, operator, generator, seed=list(range(args.count)))
        quality[inner], nfe[inner] = psnr(out.x, x).cpu(), out.nfe
        print(f"M = {inner}: PSNR {quality[inner].mean():.2f} ± {quality[inner].std():.2f} dB, {out.nfe} NFE, "
              f"{out.wall_time:.0f} s", flush=True)

    ref = quality[args.reference]
    rows = []
    for inner in args.inner:
        diff = quality[inner] - ref
        rows.append([
            str(inner), str(nfe[inner]), f"{quality[inner].mean():.2f} ± {quality[inner].std():.2f}",
            f"{diff.mean():+.2f} ± {diff.std() / len(diff) ** 0.5:.2f}", f"{int((diff >= 0).sum())} / {len(diff)}",
        ])
    table = (f"`{args.preset}` with its num_inner M varied; {args.count} validation images "
             f"({', '.join(names)}), inpainting 70% hidden, sigma 0.01, final iterate.\n\n")
    table += markdown_table(
        ["M", "NFE / image", "PSNR dB (mean ± std)", f"paired difference to M = {args.reference} (mean ± s.e.)",
         "images at least as good"], rows)
    print(table)
    command = "python benchmarks/validation_sweep.py " + " ".join(sys.argv[1:])
    write_report(args.output, "DMILO inner iterations on a validation split", command.strip(), table)

    def draw(ax):
        ms = list(args.inner)
        ax.errorbar([nfe[m] for m in ms], [float(quality[m].mean()) for m in ms],
                    yerr=[float(quality[m].std() / len(quality[m]) ** 0.5) for m in ms], marker="o")
        for m in ms:
            ax.annotate(f"M={m}", (nfe[m], float(quality[m].mean())), fontsize=8)
        ax.set_xlabel("NFE per image")
        ax.set_ylabel("PSNR (dB), mean ± s.e.")
        ax.set_title("DMILO on the validation split")

    save_plot(args.output.with_suffix(".png"), draw)


if __name__ == "__main__":
    main()
