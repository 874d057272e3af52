"""Compare prior-training recipes on Fashion-MNIST at an equal number of images seen.

Each recipe is a set of ``bundle/configs/train.yaml`` overrides; every run goes through the bundle
(``python -m monai.bundle run``), keeps a snapshot of its EMA weights every ``--snapshot_images``
images, and lives in ``runs/training_study/<recipe>/``. A finished run is skipped and an
interrupted one resumes from its latest checkpoint, so the study can be stopped and restarted.
``benchmarks/prior_quality.py --study runs/training_study`` then measures every snapshot.

    OMP_NUM_THREADS=1 nohup python benchmarks/training_study.py --recipes baseline cosine_ema \\
        > runs/training_study_a.log 2>&1 &

Recipes (equal images seen: ``--images`` per run; the iterations follow from the batch size):

* ``baseline``: today's shipped recipe: constant lr 8e-4, EMA 0.995, plain MSE, batch 32, width (32, 64, 64);
* ``cosine_ema``: lr warm-up (100 it) then cosine to 0, EMA 0.999;
* ``cosine_ema_minsnr``: ``cosine_ema`` + Min-SNR-5 loss weighting;
* ``cosine_ema_batch64``: ``cosine_ema`` with batch 64 (half the iterations);
* ``cosine_ema_wide``: ``cosine_ema`` with width (64, 128, 128);
* ``v_ema``: ``parameterization: v`` (the UNet predicts v inside a module that outputs eps, trained
  with the v-MSE), constant lr 4e-4 after 100 warm-up iterations, EMA 0.999.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COSINE_EMA = {"lr_schedule": "cosine", "lr_warmup": 100, "ema_decay": 0.999}
RECIPES: dict[str, dict] = {
    "baseline": {},
    "cosine_ema": dict(COSINE_EMA),
    "cosine_ema_minsnr": {**COSINE_EMA, "min_snr_gamma": 5.0},
    "cosine_ema_batch64": {**COSINE_EMA, "batch_size": 64},
    "cosine_ema_wide": {**COSINE_EMA, "channels": "[64, 128, 128]"},
    # v-prediction inside an eps-output module (monai_dmilo/priors/parameterization.py), constant lr
    "v_ema": {"parameterization": "v", "lr": 0.0004, "ema_decay": 0.999, "lr_warmup": 100},
}


def run_command(recipe: str, *, images: int, snapshot_images: int, data_dir: Path, out_dir: Path) -> list[str]:
    """The ``monai.bundle run`` command line of one recipe (resuming when a checkpoint exists)."""
    overrides = {"batch_size": 32, **RECIPES[recipe]}
    batch = int(overrides["batch_size"])
    if images % batch or snapshot_images % batch:
        raise ValueError(f"--images and --snapshot_images must be multiples of the batch size {batch}.")
    iterations, interval = images // batch, snapshot_images // batch
    overrides.update(
        dataset_dir=str(data_dir), output_dir=str(out_dir), model_name="prior", device="cpu",
        epoch_length=interval, max_epochs=iterations // interval, checkpoint_interval=interval,
        log_interval=min(50, interval), keep_snapshots="true", seed=0,
    )
    checkpoints = sorted((out_dir / "checkpoint").glob("checkpoint_iteration=*.pt"),
                         key=lambda p: int(p.stem.split("=")[1]))
    if checkpoints:
        overrides["resume_from"] = str(checkpoints[-1])
    else:
        overrides["overwrite"] = "true"    # a run that never reached its first checkpoint starts again
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "bundle/configs/train.yaml"]
    for key, value in overrides.items():
        command += [f"--{key}", str(value)]
    return command


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--images", type=int, default=48_000, help="images seen per run")
    parser.add_argument("--snapshot_images", type=int, default=8_000, help="images between snapshots")
    parser.add_argument("--data_dir", type=Path, default=ROOT / "data_cache" / "fashion_mnist" / "train")
    parser.add_argument("--study_dir", type=Path, default=ROOT / "runs" / "training_study")
    args = parser.parse_args(argv)
    if not args.data_dir.is_dir():
        raise SystemExit(f"--data_dir {args.data_dir} does not exist: run `python scripts/prepare_data.py` first.")
    for recipe in args.recipes:
        out_dir = args.study_dir / recipe
        batch = int(RECIPES[recipe].get("batch_size", 32))
        # finished = the last snapshot exists (checkpoint_final.pt is also written when a run fails)
        if (out_dir / "snapshots" / f"prior_it{args.images // batch:07d}.pt").is_file():
            print(f"{recipe}: finished earlier, skipped", flush=True)
            continue
        command = run_command(recipe, images=args.images, snapshot_images=args.snapshot_images,
                              data_dir=args.data_dir, out_dir=out_dir)
        print(f"{recipe}: {' '.join(command)}", flush=True)
        start = time.time()
        subprocess.run(command, cwd=ROOT, check=True)
        print(f"{recipe}: done in {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
