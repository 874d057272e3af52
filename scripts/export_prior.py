"""Ship a trained prior: copy its exported state_dict into bundle/models, write its sha256 into
configs/models/<name>.yaml and draw the model card's sample grid.

    python scripts/export_prior.py --run_dir runs/fashion_mnist_32 --name fashion_mnist_32

Prints the checkpoint's size, parameter count, sha256 and the last row of the run's loss log.
"""
from __future__ import annotations

import argparse
import csv
import re
import shutil
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    from monai_dmilo.networks.priors import build_generator
    from monai_dmilo.training import file_sha256, save_image_grid

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_dir", required=True, type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--grid_steps", type=int, default=50)
    parser.add_argument("--num_samples", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    source = args.run_dir / f"{args.name}.pt"
    target = ROOT / "bundle" / "models" / f"{args.name}.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    state = torch.load(source, weights_only=True)  # validate: a plain state_dict
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{source} is not a plain state_dict of tensors.")
    shutil.copyfile(source, target)
    digest = file_sha256(target)

    config_path = ROOT / "configs" / "models" / f"{args.name}.yaml"
    text = config_path.read_text()
    text, n = re.subn(r"(?m)^sha256:.*$", f"sha256: {digest}", text)
    if n != 1:
        raise ValueError(f"{config_path} must have exactly one top-level 'sha256:' line, found {n}.")
    config_path.write_text(text)
    yaml.safe_load(text)

    gen = build_generator(config_path, num_steps=args.grid_steps, schedule="uniform")
    shape = gen.image_shape
    z = torch.randn((args.num_samples, *shape), generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        x = gen.sample(z)
    grid = save_image_grid(x, ROOT / "bundle" / "docs" / "images" / f"{args.name}_samples.png")

    with (args.run_dir / "loss.csv").open() as f:
        rows = list(csv.DictReader(f))
    params = sum(v.numel() for v in state.values())
    print(f"checkpoint {target} ({target.stat().st_size} bytes, {params} parameters)")
    print(f"sha256 {digest}")
    print(f"grid {grid}; sample mean {x.mean():.3f} std {x.std():.3f}")
    print(f"last loss row {rows[-1] if rows else None}")


if __name__ == "__main__":
    main()
