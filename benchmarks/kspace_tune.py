"""Choose the k-space workflow's settings on validation files (never on the files the README reports).

For each acceleration, every validation file is undersampled and turned into the magnitude problem
exactly as ``bundle/configs/kspace.yaml`` does; each candidate setting is scored by the mean PSNR over
all validation slices against the file's reference; the best is printed per acceleration, and the
rule is: the setting best on average over the accelerations. Grid: DMILO's ``num_inner`` (the rest
of its ``inpainting_dmilo`` preset unchanged). The classical references need no tuning here: their
weights are chosen per slice by k-space cross-validation (``monai_dmilo.kspace.classical``).

Usage::

    python scripts/make_kspace_data.py --out_dir data_cache/kspace_val --slice_range 0.1 0.2 --slices 3 --seed 100
    python benchmarks/kspace_tune.py [--dataset_dir data_cache/kspace_val] [--solver dmilo] [--accelerations 4 8]
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from common import REPO, markdown_table, write_report

from monai_dmilo.seeds import seed_from_name  # noqa: E402
from monai_dmilo.kspace.problem import build_problem, crop_image_lowpass, undersample  # noqa: E402
from monai_dmilo.kspace.reader import read_kspace_file  # noqa: E402
from monai_dmilo.kspace.workflow import list_kspace_files  # noqa: E402
from monai_dmilo.priors.loading import build_prior  # noqa: E402
from monai_dmilo.solvers import build, load_solver_preset  # noqa: E402

GRIDS = {"dmilo": ("inpainting_dmilo", "num_inner", [10, 20, 50])}


def psnr(images: np.ndarray, reference: np.ndarray) -> list[float]:
    """Per-slice PSNR, peak = the reference volume's maximum (:func:`monai_dmilo.metrics.psnr`)."""
    from monai_dmilo.metrics import psnr as psnr_of

    pred, ref = (torch.from_numpy(np.asarray(a, np.float64))[:, None] for a in (images, reference))
    return psnr_of(pred, ref, data_range=float(reference.max())).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset_dir", default="data_cache/kspace_val")
    parser.add_argument("--solver", choices=sorted(GRIDS), default="dmilo")
    parser.add_argument("--accelerations", type=float, nargs="+", default=[4, 8])
    parser.add_argument("--model_config", default=str(REPO / "configs" / "models" / "brain_mri_32.yaml"))
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    preset_name, key, grid = GRIDS[args.solver]
    preset = load_solver_preset(preset_name)
    generator = build_prior(args.model_config, num_steps=3)
    items = [read_kspace_file(p) for p in list_kspace_files(REPO / args.dataset_dir)]
    scores: dict[float, dict] = {}
    for acc in args.accelerations:
        scores[acc] = {}
        for value in grid:
            solver = build(preset["solver"], **{**preset["params"], key: value})
            values = []
            for item in items:
                kspace, mask = undersample(item.kspace, acc, 0.08, seed=seed_from_name(item.name, 0))
                problem = build_problem(kspace, mask, tuple(generator.image_shape[-2:]))
                seeds = [seed_from_name(f"{item.name}_s{k:03d}", 0) for k in range(problem.y.shape[0])]
                x = solver.solve(problem.y, problem.operator, generator, seed=seeds).x
                reference = crop_image_lowpass(item.reference, tuple(generator.image_shape[-2:]))
                values += psnr(problem.magnitude(x).numpy(), reference)
            scores[acc][value] = float(np.mean(values))
            print(f"{acc}x {key}={value}: {scores[acc][value]:.2f} dB over {len(values)} slices", flush=True)
    mean = {v: float(np.mean([scores[a][v] for a in args.accelerations])) for v in grid}
    best = max(mean, key=mean.get)
    rows = [[f"{v:g}", *[f"{scores[a][v]:.2f}" for a in args.accelerations], f"{mean[v]:.2f}",
             "**chosen**" if v == best else ""] for v in grid]
    table = markdown_table([key, *[f"{a:g}x PSNR" for a in args.accelerations], "mean", ""], rows)
    text = (f"Validation files `{args.dataset_dir}` ({sum(i.kspace.shape[0] for i in items)} slices), "
            f"`{preset_name}` with `{key}` varied; rule: best mean PSNR over the accelerations.\n\n{table}")
    print(text)
    command = "python benchmarks/kspace_tune.py " + " ".join(sys.argv[1:])
    write_report(REPO / "docs" / "benchmarks" / f"kspace_tune_{args.solver}.md", f"k-space workflow: {key} of "
                 f"{args.solver} chosen on validation files", command.strip(), text)
    print(json.dumps({"chosen": {key: best}}))


if __name__ == "__main__":
    main()
