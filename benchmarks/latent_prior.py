"""A latent diffusion prior against the pixel prior, for DMILO at the quality benchmark's budget.

Priors: ``fashion_mnist_32`` (pixel, 32 x 32, N = 3) and ``fashion_latent_16`` (the latent bundle
of ``scripts/train_latent_prior.py``: N latent DDIM steps on ``2 x 16 x 16``, then the decoder as
DMILO's last layer). DMILO runs 5 outer x 20 inner iterations (``quality_bench.settings.DMILO_BUDGET``);
the latent prior at N = 2 costs the pixel prior's NFE at N = 3 (318: two latent steps and the
decoder per pass; the decoder counts as one evaluation), at N = 3 it costs 424. ``lr_z`` is chosen
per prior, task and N on the validation split (``--validation`` images, grid ``LR_Z`` grown by
doubling or halving past a winning edge, at most ``EDGE_STEPS`` times; mean PSNR)
and the choice is reported on the disjoint test split (``--test`` images), as in
``benchmarks/quality.py``. The autoencoder's own reconstruction PSNR of the test images
(encode, decode: the ceiling of any latent-prior estimate) is printed beside.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/latent_prior.py [--validation 6] [--test 16]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from common import REPO, machine, markdown_table, psnr, write_report
from quality_bench.problems import fashion_split, make_problem

from monai_dmilo.priors.loading import build_prior, load_autoencoder, load_model_config  # noqa: E402
from monai_dmilo.solvers import build  # noqa: E402
from monai_dmilo.workflow.tasks import load_task  # noqa: E402

#: label -> (prior, N, inner iterations); the last row spends the pixel prior's wall time (the latent
#: network and decoder are about 3x cheaper per evaluation on this CPU)
CONFIGS = {"pixel (fashion_mnist_32)": ("fashion_mnist_32", 3, 20), "latent (fashion_latent_16)": ("fashion_latent_16", 2, 20),
           "latent, N = 3": ("fashion_latent_16", 3, 20), "latent, 3x inner (equal time)": ("fashion_latent_16", 2, 60)}
TASKS = ["inpainting", "sr4"]
LR_Z = [0.02, 0.04, 0.08]
EDGE_STEPS = 2
BUDGET = {"num_outer": 5, "num_inner": 20}
OUTPUT = REPO / "docs" / "benchmarks" / "latent_prior.md"
CACHE = REPO / "docs" / "benchmarks" / "latent_prior.json"


def run(prior_name: str, steps: int, inner: int, task_name: str, images: torch.Tensor, seeds: list[int],
        lr_z: float) -> dict:
    task = load_task(task_name)
    y, operator = make_problem(task, images, seeds)
    prior = build_prior(prior_name, num_steps=steps)
    solver = build("dmilo", **{**BUDGET, "num_inner": inner}, lr_z=lr_z, lr_nu=1e-3, lambda_nu=0.1, lambda_z=1e-4)
    start = time.perf_counter()
    out = solver.solve(y, operator, prior, seed=seeds)
    seconds = time.perf_counter() - start
    return {"psnr": psnr(out.x, images).tolist(), "nfe": out.nfe, "s_per_image": seconds / len(seeds)}


def measure(cache: dict, key: str, prior_name: str, steps: int, inner: int, task: str, split, seed0: int,
            lr_z: float) -> None:
    names, images = split
    cache[key] = run(prior_name, steps, inner, task, images, list(range(seed0, seed0 + len(names))), lr_z)
    print(f"{key}: {sum(cache[key]['psnr']) / len(names):.2f} dB, NFE {cache[key]['nfe']}, "
          f"{cache[key]['s_per_image']:.1f} s/image", flush=True)
    CACHE.write_text(json.dumps(cache, indent=1) + "\n")


def autoencoder_ceiling(images: torch.Tensor) -> list[float]:
    config = load_model_config("fashion_latent_16")
    autoencoder = load_autoencoder(config)
    with torch.no_grad():
        recon = autoencoder.decode(autoencoder.encode(images)[0]).clamp(-1, 1)
    return psnr(recon, images).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--validation", type=int, default=6)
    parser.add_argument("--test", type=int, default=16)
    parser.add_argument("--report_only", action="store_true")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    cache = json.loads(CACHE.read_text()) if CACHE.is_file() else {}
    splits = {s: fashion_split(s, n) for s, n in (("validation", args.validation), ("test", args.test))}
    for label, (prior_name, steps, inner) in CONFIGS.items():
        for task in TASKS:
            prefix = f"{prior_name}|{steps}|{task}" + ("" if inner == BUDGET["num_inner"] else f"|inner{inner}")
            grid = list(LR_Z)
            while True:  # the validation grid, doubled or halved past a winning edge (at most EDGE_STEPS times)
                for lr_z in grid:
                    if f"{prefix}|validation|{lr_z}" not in cache and not args.report_only:
                        measure(cache, f"{prefix}|validation|{lr_z}", prior_name, steps, inner, task, splits["validation"], 0, lr_z)
                if args.report_only or any(f"{prefix}|validation|{lr}" not in cache for lr in grid):
                    break
                best = max(grid, key=lambda lr: sum(cache[f"{prefix}|validation|{lr}"]["psnr"]))
                if best not in (grid[0], grid[-1]) or len(grid) >= len(LR_Z) + EDGE_STEPS:
                    break
                grid = [best / 2, *grid] if best == grid[0] else [*grid, best * 2]
            done = [lr for lr in grid if f"{prefix}|validation|{lr}" in cache]
            if len(done) == len(grid) and not args.report_only:
                best = max(grid, key=lambda lr: sum(cache[f"{prefix}|validation|{lr}"]["psnr"]))
                if not any(k.startswith(f"{prefix}|test|") for k in cache) or f"{prefix}|test|{best}" not in cache:
                    for stale in [k for k in cache if k.startswith(f"{prefix}|test|")]:
                        del cache[stale]  # chosen before the grid grew
                    measure(cache, f"{prefix}|test|{best}", prior_name, steps, inner, task, splits["test"], 1000, best)
    ceiling = autoencoder_ceiling(splits["test"][1])
    rows = []
    for task in TASKS:
        for label, (prior_name, steps, inner) in CONFIGS.items():
            prefix = f"{prior_name}|{steps}|{task}" + ("" if inner == BUDGET["num_inner"] else f"|inner{inner}")
            test = [(k, v) for k, v in cache.items() if k.startswith(f"{prefix}|test|")]
            if not test:
                continue
            key, value = test[0]
            mean = sum(value["psnr"]) / len(value["psnr"])
            rows.append([task, label, str(steps), f"5 x {inner}", f"lr_z {key.rsplit('|', 1)[1]}", f"{mean:.2f}",
                         str(value["nfe"]), f"{value['s_per_image']:.1f}"])
    table = markdown_table(["task", "prior", "N", "DMILO budget", "validation choice", "test PSNR dB", "NFE",
                            "s / image"], rows)
    notes = (f"Autoencoder ceiling (encode and decode each test image, no measurement): "
             f"{sum(ceiling) / len(ceiling):.2f} dB mean over the {len(ceiling)} test images.\n\n"
             f"DMILO {BUDGET['num_outer']} x {BUDGET['num_inner']}, lr_nu 1e-3, lambda_nu 0.1, lambda_z 1e-4; lr_z from "
             f"{LR_Z} on {args.validation} validation images; {args.test} test images. {machine()}; times on one "
             f"thread while another benchmark used the second core.")
    print(table)
    print(notes)
    write_report(OUTPUT, "A latent prior against the pixel prior (DMILO)",
                 "OMP_NUM_THREADS=1 python benchmarks/latent_prior.py", table, notes)


if __name__ == "__main__":
    main()
