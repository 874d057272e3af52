"""Ship a prior trained by ``bundle/configs/train.yaml``: copy its exported state_dict into
bundle/models, write its sha256 into configs/models/<name>.yaml, draw the model card's sample grid
and measure the denoising loss on held-out images.

    python scripts/export_prior.py --run_dir runs/fashion_mnist_32 --name fashion_mnist_32 \
        --heldout_dir data_cache/fashion_mnist/test

Prints the checkpoint's size, parameter count, sha256, the last row of the run's loss log and the
held-out epsilon MSE (random t and noise from ``--seed``; the training loss on unseen images).
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
    from monai_dmilo.priors.loading import build_prior
    from monai_dmilo.priors.checkpoints import sha256_of
    from monai_dmilo.training import save_image_grid

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_dir", required=True, type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--grid_steps", type=int, default=50)
    parser.add_argument("--num_samples", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--heldout_dir", type=Path, default=None, help="folder of held-out images")
    parser.add_argument("--max_heldout", type=int, default=2000)
    args = parser.parse_args(argv)

    source = args.run_dir / f"{args.name}.pt"
    target = ROOT / "bundle" / "models" / f"{args.name}.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    state = torch.load(source, weights_only=True)  # validate: a plain state_dict
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{source} is not a plain state_dict of tensors.")
    shutil.copyfile(source, target)
    digest = sha256_of(target)

    config_path = ROOT / "configs" / "models" / f"{args.name}.yaml"
    text = config_path.read_text()
    text, n = re.subn(r"(?m)^sha256:.*$", f"sha256: {digest}", text)
    if n != 1:
        raise ValueError(f"{config_path} must have exactly one top-level 'sha256:' line, found {n}.")
    text = match_run_config(text, args.run_dir / f"{args.name}.yaml", config_path)
    config_path.write_text(text)
    yaml.safe_load(text)

    gen = build_prior(config_path, num_steps=args.grid_steps, schedule="uniform")
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
    marks = {50, 100, 200, 500, 1000, 2000, 3000, 4000, int(rows[-1]["iteration"]) if rows else 0}
    print("| iteration | loss (mean of the last 50) | elapsed s |\n|---|---|---|")
    for row in rows:
        if int(row["iteration"]) in marks:
            print(f"| {row['iteration']} | {float(row['loss']):.4f} | {float(row['elapsed_s']):.0f} |")
    if args.heldout_dir is not None:
        window = yaml.safe_load(text).get("intensity_window")
        mse, n = heldout_eps_mse(gen, args.heldout_dir, max_items=args.max_heldout, seed=args.seed,
                                 intensity_window=window)
        print(f"held-out eps MSE {mse:.4f} on {n} images of {args.heldout_dir}")


def _with_defaults(params: dict) -> dict:
    """MONAI ``DiffusionModelUNet`` params with every unset argument at its default (lists kept as lists)."""
    import inspect

    from monai.networks.nets import DiffusionModelUNet

    defaults = {k: p.default for k, p in inspect.signature(DiffusionModelUNet.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    full = {**defaults, **params}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in full.items()}


def match_run_config(text: str, run_config: Path, config_path: Path) -> str:
    """``text`` (the shipped model config) with the run's ``parameterization``; refuses other params.

    The run's exported model config (``<name>.yaml`` next to its weights) says how the weights are
    read; the shipped config must agree, or the weights would load into the wrong module.
    """
    if not run_config.is_file():
        return text
    run = yaml.safe_load(run_config.read_text())
    shipped = yaml.safe_load(text)
    if _with_defaults(run.get("params") or {}) != _with_defaults(shipped.get("params") or {}):
        raise ValueError(f"{run_config} has network params {run.get('params')} but {config_path} has "
                         f"{shipped.get('params')}: edit the shipped config's params first.")
    if run.get("intensity_window") != shipped.get("intensity_window"):
        raise ValueError(f"{run_config} was trained with intensity_window {run.get('intensity_window')} but "
                         f"{config_path} has {shipped.get('intensity_window')}: they must agree.")
    wanted = run.get("parameterization", "eps")
    text = re.sub(r"(?m)^parameterization:.*\n", "", text)
    if wanted != "eps":
        text, n = re.subn(r"(?m)^(schedule:.*\n)", rf"\1parameterization: {wanted}\n", text)
        if n != 1:
            raise ValueError(f"{config_path} must have exactly one top-level 'schedule:' line, found {n}.")
    return text


def heldout_eps_mse(generator, heldout_dir: Path, *, max_items: int, seed: int,
                    intensity_window=None) -> tuple[float, int]:
    """Held-out epsilon MSE of ``generator``'s network on the images of ``heldout_dir``, loaded and
    scaled exactly as the training config does (``LoadImageForPriord``, with the prior's intensity
    window when it has one); see :func:`monai_dmilo.priors.quality.heldout_eps_mse`."""
    from monai_dmilo.data import LoadImageForPriord, build_datalist
    from monai_dmilo.priors.quality import heldout_eps_mse as eps_mse

    items = build_datalist(dataset_dir=heldout_dir, max_items=max_items)
    load = LoadImageForPriord("image", channels=generator.image_shape[0], intensity_window=intensity_window)
    images = torch.stack([torch.as_tensor(load(item)["image"]) for item in items])
    with torch.no_grad():
        return eps_mse(generator.network, images, generator.alphas_cumprod, seed=seed), len(images)


if __name__ == "__main__":
    main()
