"""Paired comparison of solver presets on a test split: PSNR per image, NFE and wall time, and
each preset's quality against its cost.

``speed.py`` times every preset on four shipped images; four images cannot say whether one preset
is as good as another. This script solves ``--count`` test images (every ``--stride``-th PNG of
``--image-dir`` from ``--start``; by default the Fashion-MNIST test split, where start 300 shares no
image with the validation split of ``validation_sweep.py``, start 1, on which presets are chosen,
nor with the shipped samples) with each preset, as one batch, and compares each with
``--reference`` image by image: the mean paired PSNR difference with its standard error, how many
images are at least as good, and the wall-time and NFE ratios. Problem: inpainting, 70% hidden,
sigma 0.01 (masks and noise from seed 200, other than the benchmark's and the validation split's).
Every solve returns its final iterate (or the pick of its selection rule).

It also keeps the iterates each solver reports to its callback and gives, from the reference's
iterates, the cost at which the reference reaches each preset's PSNR (equal quality) and its PSNR
at each preset's NFE (equal cost); a plot shows mean PSNR against NFE and wall time.

Each preset's result is cached under ``data_cache/compare/``, keyed by the solver, its
parameters, the images (names and pixels), the problem, the prior's weights, the device and torch version, so adding
a preset to a comparison does not rerun the others (DMPlug's 5,000 iterations take most of an
hour on 12 images on a 2-core CPU). ``--fresh`` ignores the cache.

Usage::

    python benchmarks/compare.py --presets inpainting_dmplug inpainting_dmilo_fashion32 inpainting_dmilo \\
        --reference inpainting_dmplug [--count 12] [--output docs/benchmarks/compare.md]
    python benchmarks/compare.py --model-config configs/models/ffhq_10m.yaml --image-dir FOLDER_OF_256PX_PNGS \\
        --start 0 --stride 1 --presets inpainting_dmplug inpainting_dmilo --reference inpainting_dmplug
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch

from common import (
    DEFAULT_MODEL, REPO, TEST_SPLIT_DIR, inpainting_problem, markdown_table, paired, psnr, save_plot, split_images,
    write_report,
)

from monai_dmilo.priors.loading import build_prior  # noqa: E402
from monai_dmilo.solvers import build, load_solver_preset  # noqa: E402

CACHE_DIR = REPO / "data_cache" / "compare"
PROBLEM = {"task": "inpainting", "hidden": 0.7, "sigma": 0.01, "seed": 200}


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of named tensors (names, shapes and values), e.g. a module's ``state_dict()``."""
    digest = hashlib.sha256()
    for name, tensor in tensors.items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def solve_cached(preset_name: str, y, operator, generator, names: list[str], context: dict, fresh: bool,
                 trace_every: int) -> dict:
    """One preset's result, from the cache when present: ``{"x": (B, C, H, W), "nfe": int,
    "wall_time": float, "trace": {"record", "nfe", "elapsed": (T,), "x": (T, B, C, H, W)}}``.

    The trace holds the iterates the solver reports to its callback (each outer iteration; every
    ``trace_every`` iterations for solvers with ``report_every``). A DMPlug iterate at record t is
    exactly what DMPlug with ``num_iters = t`` returns, at the NFE recorded with it.
    """
    preset = load_solver_preset(preset_name)
    key_source = json.dumps({"solver": preset["solver"], "params": preset["params"], "images": names,
                             "trace_every": trace_every, **context}, sort_keys=True)
    path = CACHE_DIR / f"{Path(preset_name).stem}-{hashlib.sha256(key_source.encode()).hexdigest()[:16]}.pt"
    if path.is_file() and not fresh:
        print(f"{preset_name}: cached result {path.relative_to(REPO)}", flush=True)
        return torch.load(path, weights_only=True)
    trace = []
    solver = build(preset["solver"], progress=True, **preset["params"],
                   callback=lambda r: trace.append((r["record"], r["nfe"], r["elapsed"], r["x"].cpu())))
    if hasattr(solver, "report_every"):
        solver.report_every = trace_every
    out = solver.solve(y, operator, generator, seed=list(range(len(names))))
    result = {
        "x": out.x.detach().cpu(), "nfe": out.nfe, "wall_time": out.wall_time,
        "trace": {"record": torch.tensor([t[0] for t in trace]), "nfe": torch.tensor([t[1] for t in trace]),
                  "elapsed": torch.tensor([t[2] for t in trace]), "x": torch.stack([t[3] for t in trace])},
    }
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    torch.save(result, path)
    return result


def folder_label(folder: Path) -> str:
    """``folder`` relative to the repository when it lies inside it."""
    folder = folder.resolve()
    return str(folder.relative_to(REPO)) if folder.is_relative_to(REPO) else str(folder)


def first_reaching(trace_psnr: torch.Tensor, quality: float) -> int | None:
    """Index of the first trace point (row of ``trace_psnr`` ``(T, B)``) whose mean PSNR is at least
    ``quality``; ``None`` if none is."""
    reached = (trace_psnr.mean(1) >= quality).nonzero()
    return int(reached[0]) if len(reached) else None


def equal_quality_section(reference: str, results: dict, quality: dict, trace_psnr: dict, count: int) -> str:
    """Markdown: for each preset, the cost at which the reference's iterates first reach its final
    mean PSNR (the speed-up at equal quality), the reference's PSNR at the preset's NFE (equal cost),
    and whether the preset's own iterates reach the reference's final PSNR."""
    ref_trace, rows = results[reference]["trace"], []
    for name in quality:
        if name == reference:
            continue
        r, target = results[name], float(quality[name].mean())
        at = first_reaching(trace_psnr[reference], target)
        if at is None:
            matched = ["not reached"] * 3 + ["–"] * 3
        else:
            diff = quality[name] - trace_psnr[reference][at]
            nfe, elapsed = int(ref_trace["nfe"][at]), float(ref_trace["elapsed"][at])
            matched = [str(int(ref_trace["record"][at])), str(nfe), f"{elapsed / count:.1f}",
                       f"{nfe / r['nfe']:.1f}x", f"{elapsed / r['wall_time']:.1f}x",
                       f"{paired(diff)} ({int((diff >= 0).sum())} / {count})"]
        within = (ref_trace["nfe"] <= r["nfe"]).nonzero()
        if len(within):
            same_cost = trace_psnr[reference][int(within[-1])]
            diff = quality[name] - same_cost
            matched.append(f"{float(same_cost.mean()):.2f} (preset {paired(diff)})")
        else:
            matched.append("–")
        back = first_reaching(trace_psnr[name], float(quality[reference].mean()))
        reverse = (f"at NFE {int(r['trace']['nfe'][back])}" if back is not None
                   else f"no (best iterate {float(trace_psnr[name].mean(1).max()):.2f} dB)")
        rows.append([name, f"{target:.2f}", str(r["nfe"]), f"{r['wall_time'] / count:.1f}"] + matched + [reverse])
    ref_best = trace_psnr[reference].mean(1)
    best = int(ref_best.argmax())
    text = (f"Equal quality and equal cost: `{reference}` reports an iterate every few iterations "
            "(`--trace-every`; DMPlug's iterate at record t is exactly what DMPlug returns with `num_iters` = t). "
            f"The first record whose mean PSNR reaches a preset's final mean PSNR is the cost `{reference}` needs "
            "for that quality; its last record within the preset's NFE is its quality at the same cost. (Its best "
            f"mean over the whole run, {float(ref_best[best]):.2f} dB at record {int(ref_trace['record'][best])}, "
            "is picked with the ground truth and shown only for context.)\n\n")
    return text + markdown_table(
        ["preset", "final PSNR dB", "NFE / image", "wall s / image", f"{reference} record (iterations) reaching it",
         "its NFE / image", "its wall s / image", "NFE ratio", "wall ratio",
         "paired difference, preset − that iterate (mean ± s.e., images ≥)",
         f"{reference} PSNR at the preset's NFE (paired difference)", f"preset reaches {reference}'s final PSNR"],
        rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", required=True, help="solver presets of configs/solvers")
    parser.add_argument("--reference", required=True, help="the preset the others are compared with")
    parser.add_argument("--model-config", default=str(DEFAULT_MODEL))
    parser.add_argument("--image-dir", type=Path, default=TEST_SPLIT_DIR,
                        help="folder of PNG test images of the prior's size (default: the Fashion-MNIST test split)")
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--start", type=int, default=300)
    parser.add_argument("--stride", type=int, default=617)
    parser.add_argument("--trace-every", type=int, default=25,
                        help="iterations between recorded iterates of DMPlug / DPS (DMILO: every outer iteration)")
    parser.add_argument("--fresh", action="store_true", help="solve again even when a cached result exists")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "benchmarks" / "compare.md")
    args = parser.parse_args()
    if args.trace_every < 1:
        parser.error(f"--trace-every must be a positive integer, got {args.trace_every}.")
    if args.reference not in args.presets:
        parser.error(f"--reference {args.reference!r} must be one of --presets {args.presets}.")
    torch.set_flush_denormal(True)  # CPU: denormals in the prior's backward cost ~30x (see README)
    device = torch.device(args.device)
    generator = build_prior(args.model_config, num_steps=3, device=device)
    channels, *size = generator.image_shape
    names, x = split_images(args.start, args.stride, args.count, args.image_dir, channels)
    if list(x.shape[-2:]) != size:
        parser.error(f"--image-dir {args.image_dir}: images are {tuple(x.shape[-2:])}, "
                     f"the prior generates {tuple(size)}.")
    x = x.to(device)
    y, operator = inpainting_problem(x, hidden=PROBLEM["hidden"], sigma=PROBLEM["sigma"], seed=PROBLEM["seed"])
    print(f"test images: {', '.join(names)}", flush=True)
    context = {"problem": PROBLEM, "prior": tensors_digest(generator.state_dict()),
               "pixels": tensors_digest({"x": x}), "device": device.type, "torch": torch.__version__}

    results = {name: solve_cached(name, y, operator, generator, names, context, args.fresh, args.trace_every)
               for name in args.presets}
    quality = {name: psnr(r["x"].to(device), x).cpu() for name, r in results.items()}
    ref, ref_result = quality[args.reference], results[args.reference]
    rows = []
    for name in args.presets:
        r, diff = results[name], quality[name] - ref
        rows.append([
            name, str(r["nfe"]), f"{r['wall_time'] / args.count:.1f}",
            f"{quality[name].mean():.2f} ± {quality[name].std():.2f}",
            paired(diff), f"{int((diff >= 0).sum())} / {args.count}",
            f"{ref_result['wall_time'] / r['wall_time']:.2f}x", f"{ref_result['nfe'] / r['nfe']:.2f}x",
        ])
    table = (f"Inpainting (70% hidden, sigma 0.01, seed {PROBLEM['seed']}), {args.count} test images of "
             f"`{folder_label(args.image_dir)}` "
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
    trace_psnr = {name: psnr(r["trace"]["x"], x.cpu()) for name, r in results.items()}  # (T, B)
    table += "\n\n" + equal_quality_section(args.reference, results, quality, trace_psnr, args.count)
    print(table)
    command = "python benchmarks/compare.py " + " ".join(sys.argv[1:])
    write_report(args.output, "Paired comparison of solver presets on a test split", command.strip(), table)

    def draw_curves(axes):
        per_image = ((axes[0, 0], "nfe", 1, "NFE per image"), (axes[0, 1], "elapsed", args.count, "wall s per image"))
        for ax, key, divisor, label in per_image:  # NFE is counted per image, elapsed time per batch
            for name in args.presets:
                cost = results[name]["trace"][key].double() / divisor
                line, = ax.plot(cost, trace_psnr[name].mean(1), label=Path(name).stem)
                ax.plot(cost[-1], float(quality[name].mean()), "o", color=line.get_color())
            ax.set_xscale("log")
            ax.tick_params(axis="x", which="minor", labelbottom=False)
            ax.set_xlabel(label)
            ax.set_ylabel("mean PSNR (dB)")
            ax.grid(True, alpha=0.3)
        axes[0, 0].legend(fontsize=7)
        axes[0, 0].set_title(f"{args.count} test images, inpainting 70% hidden: quality of the iterate", fontsize=8)

    save_plot(args.output.with_suffix(".png"), draw_curves, grid=(1, 2), figsize=(10, 4))

    shown = min(args.count, 6)
    rows_shown = [("truth", x), ("measurement", y)] + [(name, results[name]["x"].to(device)) for name in args.presets]

    def draw_panel(axes):
        for r, (label, images) in enumerate(rows_shown):
            for c in range(shown):
                ax = axes[r, c]
                image = (images[c].clamp(-1, 1).cpu() + 1) / 2  # (C, H, W) in [0, 1]
                ax.imshow(image.permute(1, 2, 0).numpy() if image.shape[0] == 3 else image[0].numpy(),
                          cmap="gray", vmin=0, vmax=1)
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
