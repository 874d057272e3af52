"""Train one of the shipped priors on the datasets built by ``scripts/prepare_data.py``.

    python scripts/prepare_data.py
    python scripts/train_prior.py --dataset fashion_mnist --max_epochs 20 --output_dir runs/fashion_mnist_32
    python scripts/train_prior.py --dataset brain_mri --max_epochs 400 --output_dir runs/brain_mri_32

The network hyperparameters are read from ``configs/models/<dataset>_32.yaml`` (``params``), so the
shipped checkpoint and its config cannot disagree. ``--resume`` continues from the last checkpoint.
For images of your own, use the bundle instead: ``python -m monai.bundle run --config_file
bundle/configs/train.yaml --dataset_dir ... --output_dir ...``.
"""
from __future__ import annotations

import argparse
import glob
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def brain_augmentation():
    """Random geometry (rotation, scale, shift, left-right flip) and intensity (gamma, scale)."""
    from monai.transforms import Compose, RandAdjustContrastd, RandAffined, RandFlipd, RandScaleIntensityd

    return Compose([
        RandAffined(keys="image", prob=0.9, rotate_range=0.15, scale_range=0.1, translate_range=2.0,
                    padding_mode="zeros", mode="bilinear"),
        RandFlipd(keys="image", prob=0.5, spatial_axis=1),
        RandAdjustContrastd(keys="image", prob=0.5, gamma=(0.7, 1.5)),
        RandScaleIntensityd(keys="image", prob=0.5, factors=0.15),
    ])


DATASETS = {
    # name: (training array, stored intensity range, augmentation factory)
    "fashion_mnist": ("fashion_mnist/train_32.npy", (0.0, 255.0), None),
    "brain_mri": ("brain_mri/train_32.npy", (0.0, 1.0), brain_augmentation),
}


def main(argv: list[str] | None = None) -> None:
    from monai_dmilo.training import ArrayImageDataset, build_diffusion_unet, create_prior_trainer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=sorted(DATASETS))
    parser.add_argument("--cache_dir", default=str(ROOT / "data_cache"))
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--max_epochs", type=int, default=10)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--ema_decay", type=float, default=0.999)
    parser.add_argument("--checkpoint_interval", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from output_dir/checkpoint")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    cfg = yaml.safe_load((ROOT / "configs" / "models" / f"{args.dataset}_32.yaml").read_text())
    array_file, scale, augmentation = DATASETS[args.dataset]
    images = np.load(Path(args.cache_dir) / array_file)
    dataset = ArrayImageDataset(images, scale=scale, transform=augmentation() if augmentation else None)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=0,
        generator=torch.Generator().manual_seed(args.seed),
    )
    resume_from = None
    if args.resume:
        found = sorted(glob.glob(str(Path(args.output_dir) / "checkpoint" / "*.pt")), key=lambda p: Path(p).stat().st_mtime)
        resume_from = found[-1] if found else None
    if augmentation is not None:
        dataset.transform.set_random_state(seed=args.seed)
    network = build_diffusion_unet(**cfg["params"])
    print(f"{args.dataset}: {len(dataset)} images, {sum(p.numel() for p in network.parameters())} parameters, "
          f"{len(loader)} iterations/epoch, resume_from={resume_from}", flush=True)
    schedule = cfg.get("schedule", {})
    trainer = create_prior_trainer(
        network=network, train_data_loader=loader, max_epochs=args.max_epochs, output_dir=args.output_dir,
        image_shape=cfg["image_shape"], lr=args.lr, ema_decay=args.ema_decay,
        checkpoint_interval=args.checkpoint_interval, resume_from=resume_from,
        export_name=f"{cfg['name']}.pt", seed=args.seed, **schedule,
    )
    start = time.time()
    trainer.run()
    print(f"done: {trainer.state.iteration} iterations in {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
