"""The k-space workflow's references against BART's ``pics`` on the demo files, at 4x and 8x.

For each file set and acceleration, every file is undersampled (equispaced, 8 % centre, seeded per
file as the workflow does) and cropped to the 32 x 32 grid of the brain prior; PSNR is measured on
the magnitude against the file's reference (brought to the same grid) after a least-squares
intensity scale (Tikhonov shrinks SENSE), per slice, then averaged. Methods:

* ``zero-filled RSS``;
* ours, weights by k-space cross-validation (no ground truth): ``SENSE`` and ``CS-TV`` with the
  workflow's default ``lowres`` maps, and with ``jsense`` maps;
* ``bart pics`` with our ``lowres`` maps and the same cross-validated weights (``-l2`` / ``-R T``):
  the check that our solvers compute what BART computes;
* ``bart pics`` with ``bart caldir`` maps, weights chosen on the validation files (best mean PSNR
  on ``--val_dir``, reported on the others): what a BART user would run;
* with ``--dmilo``: DMILO (the workflow's problem and solver preset, ``num_inner`` 20, lowres maps).

Usage::

    python scripts/make_kspace_data.py --out_dir data_cache/kspace                  # demo: 64 -> 32, 6 calibration columns at 4x
    python scripts/make_kspace_data.py --out_dir data_cache/kspace32 --matrix 32    # few lines: 3 calibration columns
    python scripts/make_kspace_data.py --out_dir data_cache/kspace_val --slice_range 0.1 0.2 --slices 3 --seed 100
    python benchmarks/kspace_bart.py [--sets data_cache/kspace data_cache/kspace32] [--dmilo]
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from common import REPO, markdown_table, write_report

from monai_dmilo.kspace.bart import bart_caldir, bart_pics  # noqa: E402
from monai_dmilo.kspace.classical import (  # noqa: E402
    CS_TV_WEIGHTS, SENSE_WEIGHTS, choose_weight, cs_tv, sense, tv_scale, zero_filled_rss,
)
from monai_dmilo.kspace.coils import calibration_width, estimate_coil_maps  # noqa: E402
from monai_dmilo.kspace.problem import build_problem, crop_image_lowpass, crop_kspace, undersample  # noqa: E402
from monai_dmilo.kspace.reader import read_kspace_file  # noqa: E402
from monai_dmilo.kspace.workflow import list_kspace_files  # noqa: E402
from monai_dmilo.seeds import seed_from_name  # noqa: E402

GRID = (32, 32)


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """PSNR (peak = the reference's maximum) after the least-squares intensity scale of ``image``."""
    from monai_dmilo.metrics import psnr as psnr_of

    s = float((image * reference).sum() / max(float((image * image).sum()), 1e-30))
    fitted, ref = (torch.from_numpy(np.asarray(a, np.float64))[None, None] for a in (s * image, reference))
    return float(psnr_of(fitted, ref, data_range=float(reference.max()))[0])


def load(folder, acceleration):
    """Per file: (name, k-space, mask, reference) on the grid."""
    out = []
    for path in list_kspace_files(REPO / folder):
        item = read_kspace_file(path)
        k, m = undersample(item.kspace, acceleration, 0.08, seed=seed_from_name(item.name, 0))
        k, m = crop_kspace(k, m, GRID)
        out.append((item.name, torch.from_numpy(k), m, crop_image_lowpass(item.reference, GRID)))
    return out


def bart_stack(k, maps, regularization, weights):
    return np.stack([np.abs(bart_pics(k[s].numpy(), maps[s].numpy(), regularization=regularization,
                                      lam=float(weights[s]), iters=300 if regularization == "tv" else 30))
                     for s in range(k.shape[0])])


def caldir_maps(k, mask):
    """``bart caldir 24``: it takes the fully sampled centre, at most 24 lines in each direction."""
    return torch.from_numpy(np.stack([bart_caldir(k[s].numpy(), 24) for s in range(k.shape[0])]))


def bart_validation_weights(val, grids):
    """caldir-map BART weights with the best mean validation PSNR."""
    chosen = {}
    cache = [(k, torch.from_numpy(m.astype(np.float32)), caldir_maps(k, m), ref) for _, k, m, ref in val]
    for reg, grid in grids.items():
        scores = {}
        for w in grid:
            values = []
            for k, m, maps, ref in cache:
                weights = [w] * k.shape[0] if reg == "l2" else (w * tv_scale(k, maps, m)).tolist()
                images = bart_stack(k, maps, reg, weights)
                values += [psnr(a, r) for a, r in zip(images, ref)]
            scores[w] = float(np.mean(values))
        chosen[reg] = max(scores, key=scores.get)
        print(f"  validation caldir bart {reg}: " + ", ".join(f"{w:g}: {v:.2f}" for w, v in scores.items())
              + f" -> {chosen[reg]:g}", flush=True)
    return chosen


def evaluate(files, bart_weights, dmilo=None):
    rows: dict[str, list[float]] = {}
    below = {}

    def add(name, images, ref):
        rows.setdefault(name, []).extend(psnr(a, r) for a, r in zip(images, ref))

    for name, k, mask, ref in files:
        m = torch.from_numpy(mask.astype(np.float32))
        zf = zero_filled_rss(k).numpy()
        add("zero-filled RSS", zf, ref)
        for maps_name in ("lowres", "jsense"):
            maps = estimate_coil_maps(k, mask, maps_name)
            w_sense = choose_weight(sense, k, maps, m, SENSE_WEIGHTS, keyword="tikhonov")
            w_tv = choose_weight(cs_tv, k, maps, m, CS_TV_WEIGHTS, keyword="lam", num_iters=200)
            add(f"SENSE ({maps_name} maps, CV weight)", sense(k, maps, m, tikhonov=w_sense).abs()[:, 0].numpy(), ref)
            add(f"CS-TV ({maps_name} maps, CV weight)", cs_tv(k, maps, m, lam=w_tv).abs()[:, 0].numpy(), ref)
            if maps_name == "lowres":
                add("bart SENSE (same maps and weight)", bart_stack(k, maps, "l2", w_sense.tolist()), ref)
                add("bart TV (same maps and weight)", bart_stack(k, maps, "tv", (w_tv * tv_scale(k, maps, m)).tolist()), ref)
        maps = caldir_maps(k, mask)
        add("bart SENSE (caldir maps, validation weight)", bart_stack(k, maps, "l2", [bart_weights["l2"]] * k.shape[0]), ref)
        add("bart TV (caldir maps, validation weight)",
            bart_stack(k, maps, "tv", (bart_weights["tv"] * tv_scale(k, maps, m)).tolist()), ref)
        if dmilo is not None:
            generator, solver = dmilo
            problem = build_problem(k.numpy(), mask, GRID, sense_tikhonov=0.01)
            seeds = [seed_from_name(f"{name}_s{s:03d}", 0) for s in range(k.shape[0])]
            x = solver.solve(problem.y, problem.operator, generator, seed=seeds).x
            add("DMILO (lowres maps, num_inner 20)", problem.magnitude(x.detach()).numpy(), ref)
        print(f"  {name} done", flush=True)
    zf = np.array(rows["zero-filled RSS"])
    for key, values in rows.items():
        below[key] = int((np.array(values) < zf).sum())
    return rows, below


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["data_cache/kspace", "data_cache/kspace32"])
    parser.add_argument("--val_dir", default="data_cache/kspace_val")
    parser.add_argument("--accelerations", type=float, nargs="+", default=[4, 8])
    parser.add_argument("--dmilo", action="store_true")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    dmilo = None
    if args.dmilo:
        from monai_dmilo.priors.loading import build_prior
        from monai_dmilo.solvers import build, load_solver_preset

        preset = load_solver_preset("inpainting_dmilo")
        dmilo = (build_prior(str(REPO / "configs" / "models" / "brain_mri_32.yaml"), num_steps=3),
                 build(preset["solver"], **{**preset["params"], "num_inner": 20}))
    sections, results = [], {}
    start = time.perf_counter()
    for acc in args.accelerations:
        print(f"{acc:g}x: choosing BART's caldir weights on {args.val_dir}", flush=True)
        weights = bart_validation_weights(load(args.val_dir, acc), {"l2": SENSE_WEIGHTS, "tv": CS_TV_WEIGHTS})
        for folder in args.sets:
            files = load(folder, acc)
            central = calibration_width(files[0][2])
            rows, below = evaluate(files, weights, dmilo)
            slices = len(rows["zero-filled RSS"])
            table = markdown_table(["method", "PSNR (dB)", "min", "slices below zero-filled"],
                                   [[k, f"{np.mean(v):.2f}", f"{np.min(v):.2f}", f"{below[k]} / {slices}"]
                                    for k, v in rows.items()])
            title = f"### `{folder}`, {acc:g}x ({slices} slices, {central} calibration columns on the 32 x 32 grid)"
            sections.append(f"{title}\n\nBART caldir weights from validation: l2 {weights['l2']:g}, TV {weights['tv']:g}"
                            f"\n\n{table}")
            results[f"{folder}@{acc:g}"] = {k: float(np.mean(v)) for k, v in rows.items()}
            print(sections[-1], flush=True)
    text = "\n\n".join(sections)
    notes = (f"Total time {time.perf_counter() - start:.0f} s. PSNR after a least-squares intensity scale, per slice, "
             "against the file's fully sampled reference on the same grid.")
    command = "python benchmarks/kspace_bart.py " + " ".join(sys.argv[1:])
    write_report(REPO / "docs" / "benchmarks" / "kspace_bart.md", "k-space references against BART", command.strip(),
                 text, notes)
    (REPO / "docs" / "benchmarks" / "kspace_bart.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
