"""Sample quality of a diffusion prior: speckle fraction, classifier Fréchet distance, held-out eps-MSE.

One prior (a model config, optionally another checkpoint of its architecture):

    python benchmarks/prior_quality.py --model_config configs/models/fashion_mnist_32.yaml
    python benchmarks/prior_quality.py --model_config configs/models/brain_mri_32.yaml \\
        --heldout_dir data_cache/brain_mri/heldout --no_fd

Every snapshot of a training study (``benchmarks/training_study.py``), with a table and a plot:

    python benchmarks/prior_quality.py --study runs/training_study --report docs/benchmarks/training.md

Measures (images in [-1, 1]; ``monai_dmilo.priors.quality``):

* speckle fraction: of ``--num_samples`` samples (``--steps`` DDIM steps, seed ``--seed``), the
  fraction whose total variation exceeds the 99th percentile of the held-out images' TV;
* classifier Fréchet distance (Fashion-MNIST only; not FID): Fréchet distance between the
  penultimate features, of a small CNN trained here on the training split
  (``benchmarks/assets/fashion_mnist_classifier.pt``; test accuracy in its ``.json``), of
  ``--fd_samples`` samples (``--fd_steps`` DDIM steps) and of the held-out images;
* held-out eps-MSE: the denoising loss on the first 2,000 held-out images (random t and noise, seed 0).

Results are cached per checkpoint (sha256) in ``<study>/quality.json``, so a rerun only measures
new snapshots.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from monai_dmilo.priors.checkpoints import sha256_of  # noqa: E402
from monai_dmilo.priors import quality as pq  # noqa: E402

FASHION_TEST = REPO / "data_cache" / "fashion_mnist" / "test"
CLASSIFIER = REPO / "benchmarks" / "assets" / "fashion_mnist_classifier.pt"


def load_folder(folder: Path, channels: int, max_items: int | None = None, intensity_window=None) -> torch.Tensor:
    """Images of a folder (PNG or NIfTI stacks) as ``(N, C, H, W)`` in [-1, 1], as training loads them
    (with the prior's intensity window when it has one)."""
    from monai_dmilo.data import LoadImageForPriord, build_datalist

    if not folder.is_dir():
        sys.exit(f"--heldout_dir {folder} does not exist: run `python scripts/prepare_data.py` first.")
    items = build_datalist(dataset_dir=folder, max_items=max_items)
    load = LoadImageForPriord("image", channels=channels, intensity_window=intensity_window)
    return torch.stack([torch.as_tensor(load(item)["image"]).float() for item in items])


def fashion_training_split() -> tuple[torch.Tensor, torch.Tensor]:
    """The 60,000 Fashion-MNIST training images ``(N, 1, 32, 32)`` in [-1, 1] and their labels ``(N,)``."""
    import gzip

    import numpy as np
    from prepare_data import FASHION_DIR, pad_to, read_idx_images

    images = pad_to(read_idx_images(FASHION_DIR / "train-images-idx3-ubyte.gz"), 32)
    with gzip.open(FASHION_DIR / "train-labels-idx1-ubyte.gz", "rb") as f:
        labels = np.frombuffer(f.read()[8:], dtype=np.uint8)
    return torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0)[:, None], torch.from_numpy(labels.astype(np.int64))


def fashion_test_labels() -> torch.Tensor:
    import gzip

    import numpy as np
    from prepare_data import FASHION_DIR

    with gzip.open(FASHION_DIR / "t10k-labels-idx1-ubyte.gz", "rb") as f:
        return torch.from_numpy(np.frombuffer(f.read()[8:], dtype=np.uint8).astype(np.int64))


def load_classifier(heldout: torch.Tensor) -> pq.FeatureClassifier:
    """The committed feature classifier; trained (4 epochs, seed 0) and saved when absent."""
    if not CLASSIFIER.is_file():
        print("training the feature classifier on the Fashion-MNIST training split ...", flush=True)
        start = time.time()
        images, labels = fashion_training_split()
        model = pq.train_classifier(images, labels)
        with torch.no_grad():
            accuracy = float((model(heldout).argmax(1) == fashion_test_labels()).float().mean())
        CLASSIFIER.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), CLASSIFIER)
        CLASSIFIER.with_suffix(".json").write_text(json.dumps(
            {"test_accuracy": accuracy, "epochs": 4, "seed": 0, "train_images": len(images),
             "seconds": round(time.time() - start, 1), "sha256": sha256_of(CLASSIFIER)}, indent=2) + "\n")
        print(f"classifier test accuracy {accuracy:.4f} ({time.time() - start:.0f} s)", flush=True)
    info = json.loads(CLASSIFIER.with_suffix(".json").read_text())
    model = pq.FeatureClassifier()
    from monai_dmilo.priors.checkpoints import load_state_dict

    model.load_state_dict(load_state_dict(CLASSIFIER, sha256=info["sha256"]))
    return model.eval()


@torch.no_grad()
def draw_samples(generator, count: int, seed: int, batch_size: int = 250) -> torch.Tensor:
    z = torch.randn((count, *generator.image_shape), generator=torch.Generator().manual_seed(seed))
    return torch.cat([generator.sample(chunk).clamp(-1, 1) for chunk in z.split(batch_size)])


def measure(model_config: Path, checkpoint: Path | None, heldout: torch.Tensor, args,
            classifier: pq.FeatureClassifier | None, reference_features: torch.Tensor | None) -> dict:
    """The three measures of one prior (a dict of numbers and seconds)."""
    from monai_dmilo.priors.loading import build_prior

    start = time.time()
    generator = build_prior(model_config, checkpoint=checkpoint, num_steps=args.steps, schedule="uniform")
    samples = draw_samples(generator, args.num_samples, args.seed)
    speckle, threshold = pq.speckle_fraction(samples, heldout)
    row = {"speckle_fraction": speckle, "tv_threshold": threshold,
           "eps_mse": pq.heldout_eps_mse(generator.network, heldout[:2000], generator.alphas_cumprod, seed=0)}
    if classifier is not None:
        fd_generator = build_prior(model_config, checkpoint=checkpoint, num_steps=args.fd_steps,
                                       schedule="uniform")
        fd_samples = draw_samples(fd_generator, args.fd_samples, args.seed + 1)
        row["classifier_fd"] = pq.frechet_distance(pq.classifier_features(classifier, fd_samples),
                                                   reference_features)
    row["seconds"] = round(time.time() - start, 1)
    return row, samples


def run_model_config(run_dir: Path) -> Path:
    """The model config a training run exported (``<model_name>.yaml`` next to its checkpoint)."""
    configs = sorted(p for p in run_dir.glob("*.yaml"))
    if len(configs) != 1:
        raise SystemExit(f"{run_dir} should hold exactly one exported model config (*.yaml), found {len(configs)}.")
    return configs[0]


def study_rows(study: Path, args, heldout, classifier, reference_features) -> list[dict]:
    """Measure every snapshot of every run under ``study`` (cached by sha256 in quality.json)."""
    from training_study import RECIPES

    cache_path = study / "quality.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    rows = []
    for run_dir in sorted(p for p in study.iterdir() if (p / "snapshots").is_dir()):
        recipe = run_dir.name
        if args.recipes and recipe not in args.recipes:
            continue
        batch = int(RECIPES.get(recipe, {}).get("batch_size", 32))
        with (run_dir / "loss.csv").open() as f:
            log = [(int(r["iteration"]), float(r["elapsed_s"]), float(r["loss"])) for r in csv.DictReader(f)]
        snapshots = sorted((run_dir / "snapshots").glob("*.pt"))
        for k, snap in enumerate(snapshots):
            iteration = int(snap.stem.rsplit("_it", 1)[1])
            last = k == len(snapshots) - 1
            key = f"{sha256_of(snap)}:{args.num_samples}:{args.steps}:{args.seed}"
            fd_wanted = classifier is not None and (last or args.fd_all or iteration * batch in args.fd_images)
            if args.last_only and not last and key not in cache:
                continue                                  # not measured yet: left for a full run
            if key not in cache or (fd_wanted and "classifier_fd" not in cache[key]):
                row, _ = measure(run_model_config(run_dir), snap, heldout, args,
                                 classifier if fd_wanted else None, reference_features)
                cache[key] = row
                cache_path.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
            elapsed = next((e for i, e, _ in log if i >= iteration), log[-1][1] if log else float("nan"))
            rows.append({"recipe": recipe, "iteration": iteration, "images_seen": iteration * batch,
                         "elapsed_s": elapsed, **cache[key]})
            print(_row_text(rows[-1]), flush=True)
    return rows


def _row_text(row: dict) -> str:
    fd = f"{row['classifier_fd']:.2f}" if "classifier_fd" in row else "-"
    return (f"{row.get('recipe', 'prior')} it {row.get('iteration', '-')} images {row.get('images_seen', '-')}: "
            f"speckle {row['speckle_fraction']:.3f}, classifier FD {fd}, eps-MSE {row['eps_mse']:.4f}")


def write_report(rows: list[dict], report: Path, args) -> None:
    """Markdown table of each recipe at ``--equal_images`` images seen (and at its last snapshot when it ran
    longer) and a plot of the measures against images seen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recipes = sorted({r["recipe"] for r in rows})
    lines = ["| recipe | images seen | wall s (1 thread) | speckle fraction | classifier FD | held-out eps-MSE |",
             "|---|---|---|---|---|---|"]
    for recipe in recipes:
        runs = [r for r in rows if r["recipe"] == recipe]
        equal = [r for r in runs if r["images_seen"] == args.equal_images]
        for row in equal + ([runs[-1]] if runs[-1] not in equal else []):
            fd = f"{row['classifier_fd']:.2f}" if "classifier_fd" in row else "-"
            lines.append(f"| {recipe} | {row['images_seen']:,} | {row['elapsed_s']:.0f} | "
                         f"{row['speckle_fraction']:.3f} | {fd} | {row['eps_mse']:.4f} |")
    table = "\n".join(lines)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for recipe in recipes:
        rs = [r for r in rows if r["recipe"] == recipe]
        seen = [r["images_seen"] for r in rs]
        axes[0].plot(seen, [r["speckle_fraction"] for r in rs], marker="o", label=recipe)
        axes[1].plot(seen, [r["eps_mse"] for r in rs], marker="o", label=recipe)
    axes[0].set_ylabel(f"speckle fraction ({args.num_samples} samples, {args.steps} steps)")
    axes[1].set_ylabel("held-out eps-MSE (2,000 test images)")
    for ax in axes:
        ax.set_xlabel("images seen")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    plot = report.with_suffix(".png")
    fig.savefig(plot, dpi=110)
    report.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    text = report.read_text() if report.is_file() else ""
    begin, end = "<!-- study-table -->", "<!-- /study-table -->"
    block = f"{begin}\n{table}\n\n![measures against images seen]({plot.name})\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text + ("\n" if text else "") + block + "\n"
    report.write_text(text)
    print(table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--model_config", type=Path, help="a prior's model config (configs/models/*.yaml)")
    target.add_argument("--study", type=Path, help="a training study folder (benchmarks/training_study.py)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="other weights of the config's architecture")
    parser.add_argument("--heldout_dir", type=Path, default=FASHION_TEST)
    parser.add_argument("--num_samples", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fd_samples", type=int, default=2000)
    parser.add_argument("--fd_steps", type=int, default=20)
    parser.add_argument("--fd_all", action="store_true", help="Fréchet distance of every snapshot, not the last")
    parser.add_argument("--fd_images", type=int, nargs="*", default=[48_000],
                        help="with --study: also the Fréchet distance of the snapshots at these images seen")
    parser.add_argument("--equal_images", type=int, default=48_000,
                        help="with --report: the images seen at which recipes are compared")
    parser.add_argument("--no_fd", action="store_true", help="skip the classifier Fréchet distance")
    parser.add_argument("--grid", type=Path, default=None, help="save the speckle samples as a PNG grid")
    parser.add_argument("--report", type=Path, default=None, help="with --study: markdown report to update")
    parser.add_argument("--recipes", nargs="*", default=None, help="with --study: only these runs")
    parser.add_argument("--last_only", action="store_true",
                        help="with --study: measure only each run's last snapshot (earlier ones from the cache)")
    args = parser.parse_args(argv)

    from monai_dmilo.priors.loading import load_model_config

    config_for_shape = args.model_config if args.model_config else next(args.study.glob("*/*.yaml"))
    shape_config = load_model_config(config_for_shape)
    channels = int(shape_config["image_shape"][0])
    heldout = load_folder(args.heldout_dir, channels, intensity_window=shape_config["intensity_window"])
    classifier = reference = None
    if not args.no_fd:
        if tuple(heldout.shape[1:]) != (1, 32, 32):
            sys.exit(f"the classifier Fréchet distance is for 1 x 32 x 32 Fashion-MNIST; held-out images are "
                     f"{tuple(heldout.shape[1:])}: pass --no_fd.")
        classifier = load_classifier(heldout)
        reference = pq.classifier_features(classifier, heldout)
    if args.study is not None:
        rows = study_rows(args.study, args, heldout, classifier, reference)
        if args.report is not None:
            write_report(rows, args.report, args)
        return
    row, samples = measure(args.model_config, args.checkpoint, heldout, args, classifier, reference)
    print(f"{args.model_config}{' + ' + str(args.checkpoint) if args.checkpoint else ''}: {len(heldout)} held-out images "
          f"of {args.heldout_dir}")
    print(f"speckle fraction {row['speckle_fraction']:.3f} ({args.num_samples} samples, {args.steps} DDIM steps, "
          f"seed {args.seed}; TV threshold {row['tv_threshold']:.4f} = 99th percentile of held-out TV)")
    if "classifier_fd" in row:
        accuracy = json.loads(CLASSIFIER.with_suffix(".json").read_text())["test_accuracy"]
        print(f"classifier Fréchet distance {row['classifier_fd']:.3f} ({args.fd_samples} samples, {args.fd_steps} "
              f"DDIM steps, against {len(heldout)} held-out images; classifier test accuracy {accuracy:.4f})")
    print(f"held-out eps-MSE {row['eps_mse']:.4f} (first {min(2000, len(heldout))} held-out images)")
    print(f"{row['seconds']:.0f} s")
    if args.grid is not None:
        from monai_dmilo.training import save_image_grid

        print(f"grid {save_image_grid(samples, args.grid)}")


if __name__ == "__main__":
    main()
