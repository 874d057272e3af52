"""PSNR of a DMILO preset against one of its hyperparameters, on a validation split (not the benchmark images).

Presets are chosen here, on images the speed benchmark never uses, and then evaluated there, so
that no benchmark number comes from tuning on the benchmark images (and no per-image result is
picked with the ground truth: every solve returns its final iterate).

Validation images: ``--count`` Fashion-MNIST test-split PNGs (prepared by
``scripts/prepare_data.py`` into ``data_cache/fashion_mnist/test``), taken every ``--stride``
images from ``--start``, skipping the shipped sample images. Problem: inpainting, 70% hidden,
sigma 0.01, as in ``speed.py``. Every value solves the same problems from the same seeds, so the
paired difference to the reference value (mean and its standard error) is the number to read.
``--param`` names the varied hyperparameter (default ``num_inner``, the inner iterations M);
``--set`` fixes others (``--set num_inner=20``).

Usage::

    python benchmarks/validation_sweep.py [--values 40 80 200] [--count 16] [--output docs/benchmarks/validation_sweep.md]
    python benchmarks/validation_sweep.py --param lr_z --values 0.01 0.02 0.04 --reference 0.02 --set num_inner=20
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

from common import (
    DEFAULT_MODEL, REPO, inpainting_problem, markdown_table, paired, psnr, save_plot, split_images, write_report,
)

from monai_dmilo.priors.loading import build_prior  # noqa: E402
from monai_dmilo.solvers import build, load_solver_preset  # noqa: E402


def parse_setting(text: str) -> tuple[str, object]:
    """``"name=value"`` -> ``(name, value)``, the value read as YAML (numbers stay numbers)."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--set expects name=value, got {text!r}.")
    return name, yaml.safe_load(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-config", default=str(DEFAULT_MODEL))
    parser.add_argument("--preset", default="inpainting_dmilo", help="the preset whose hyperparameter is varied")
    parser.add_argument("--param", default="num_inner", help="the varied hyperparameter (a preset parameter)")
    parser.add_argument("--values", "--inner", dest="values", type=float, nargs="+", default=[40, 80, 200])
    parser.add_argument("--reference", type=float, default=200, help="the value the others are compared with")
    parser.add_argument("--set", dest="settings", type=parse_setting, action="append", default=[],
                        metavar="NAME=VALUE", help="fix another parameter of the preset (repeatable)")
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--start", type=int, default=1)
    parser.add_argument("--stride", type=int, default=617)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks" / "validation_sweep.md")
    args = parser.parse_args()
    if args.reference not in args.values:
        parser.error(f"--reference {args.reference:g} must be one of --values {[f'{v:g}' for v in args.values]}.")
    preset = load_solver_preset(args.preset)
    base = {**preset["params"], **dict(args.settings)}
    if args.param not in base:
        parser.error(f"--param {args.param!r} is not a parameter of the preset {args.preset!r}: {sorted(base)}.")
    integer = isinstance(base[args.param], int) and all(v.is_integer() for v in args.values)
    name = "M" if args.param == "num_inner" else args.param
    torch.set_flush_denormal(True)
    device = torch.device(args.device)
    generator = build_prior(args.model_config, num_steps=3, device=device)
    names, x = split_images(args.start, args.stride, args.count)
    x = x.to(device)
    y, operator = inpainting_problem(x, seed=100)  # other masks and noise than the benchmark's
    print(f"validation images: {', '.join(names)}", flush=True)

    quality, nfe = {}, {}
    for value in args.values:
        params = {**base, args.param: int(value) if integer else value}
        solver = build(preset["solver"], progress=True, **params)
        out = solver.solve(y, operator, generator, seed=list(range(args.count)))
        quality[value], nfe[value] = psnr(out.x, x).cpu(), out.nfe
        print(f"{name} = {value:g}: PSNR {quality[value].mean():.2f} ± {quality[value].std():.2f} dB, "
              f"{out.nfe} NFE, {out.wall_time:.0f} s", flush=True)

    ref = quality[args.reference]
    rows = []
    for value in args.values:
        diff = quality[value] - ref
        rows.append([
            f"{value:g}", str(nfe[value]), f"{quality[value].mean():.2f} ± {quality[value].std():.2f}",
            paired(diff), f"{int((diff >= 0).sum())} / {len(diff)}",
        ])
    fixed = "".join(f", {k} = {v}" for k, v in args.settings)
    table = (f"`{args.preset}` with {'its num_inner M' if name == 'M' else name} varied{fixed}; {args.count} "
             f"validation images ({', '.join(names)}), inpainting 70% hidden, sigma 0.01, final iterate.\n\n")
    table += markdown_table(
        [name, "NFE / image", "PSNR dB (mean ± std)", f"paired difference to {name} = {args.reference:g} (mean ± s.e.)",
         "images at least as good"], rows)
    print(table)
    command = "python benchmarks/validation_sweep.py " + " ".join(sys.argv[1:])
    write_report(args.output, f"{args.preset}: {name} on a validation split", command.strip(), table)

    def draw(ax):
        means = [float(quality[v].mean()) for v in args.values]
        errors = [float(quality[v].std() / len(quality[v]) ** 0.5) for v in args.values]
        ax.errorbar(args.values, means, yerr=errors, marker="o")
        if args.param != "num_inner":
            ax.set_xscale("log")
        ax.set_xlabel(f"{name} ({args.preset})")
        ax.set_ylabel("PSNR (dB), mean ± s.e.")
        ax.set_title(f"{args.preset} on the validation split")

    save_plot(args.output.with_suffix(".png"), draw)


if __name__ == "__main__":
    main()
