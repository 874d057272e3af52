"""Write a shipped MONAI-UNet prior as a MONAI model-zoo bundle folder (the layout other MONAI users share).

The folder holds ``configs/inference.json`` (``network_def`` with ``_target_``
``monai.networks.nets.DiffusionModelUNet``, ``image_size``, ``noise_scheduler`` with the
schedule and ``prediction_type``, ``image_range``), ``configs/metadata.json`` and
``models/model.pt`` (the bare network's state dict; ``--safetensors`` writes
``models/model.safetensors`` instead). ``build_prior(<folder>)`` / ``--prior <folder>`` read it,
and reconstruct exactly what the model YAML gives (``tests/test_monai_bundle_prior.py``)::

    python scripts/export_bundle_layout.py --prior fashion_mnist_32 --out outputs/fashion_mnist_32_bundle
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from monai_dmilo.priors.checkpoints import load_state_dict
from monai_dmilo.priors.loading import load_model_config

#: our parameterization -> MONAI's prediction_type; our schedule names -> MONAI's
PREDICTION_TYPES = {"eps": "epsilon", "v": "v_prediction", "sample": "sample"}
SCHEDULES = {"linear": "linear_beta", "scaled_linear": "scaled_linear_beta", "squaredcos_cap_v2": "cosine"}


def export(prior: str, out: Path, *, safetensors: bool = False) -> Path:
    """Write ``prior`` (a model config name or path with architecture ``monai_unet``) to ``out``."""
    config = load_model_config(prior)
    if config["architecture"] != "monai_unet" or config.get("latent") or config["schedule"]["alphas_cumprod"]:
        raise SystemExit(f"--prior {prior!r}: only pixel MONAI DiffusionModelUNet priors with a named schedule "
                         f"are written as bundles (got architecture {config['architecture']!r}).")
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"--out {str(out)!r} exists and is not empty; choose a new folder.")
    state = load_state_dict(config["checkpoint"], sha256=config["sha256"])
    bare = {k.removeprefix("network."): v for k, v in state.items()}
    schedule = config["schedule"]
    channels, height, width = config["image_shape"]
    inference = {
        "bundle_root": ".",
        "image_size": [channels, height, width],
        "image_range": list(config["intensity_range"]),
        "network_def": {"_target_": "monai.networks.nets.DiffusionModelUNet", **config["params"]},
        "load_path": "$@bundle_root + '/models/model.pt'",
        "noise_scheduler": {"_target_": "monai.networks.schedulers.DDIMScheduler",
                            "num_train_timesteps": schedule["num_train_timesteps"],
                            "beta_start": schedule["beta_start"], "beta_end": schedule["beta_end"],
                            "schedule": SCHEDULES[schedule["beta_schedule"]],
                            "prediction_type": PREDICTION_TYPES[config["parameterization"]],
                            "clip_sample": config["clip_x0"]},
    }
    (out / "configs").mkdir(parents=True, exist_ok=True)
    (out / "models").mkdir(exist_ok=True)
    (out / "configs" / "inference.json").write_text(json.dumps(inference, indent=2) + "\n")
    metadata = {"version": "1.0.0", "name": config["name"], "description": config.get("description", ""),
                "license": config.get("license", "")}
    (out / "configs" / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    if safetensors:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in bare.items()}, str(out / "models" / "model.safetensors"))
    else:
        torch.save(bare, out / "models" / "model.pt")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prior", default="fashion_mnist_32", help="a model config name or path")
    parser.add_argument("--out", type=Path, required=True, help="a new (or empty) folder")
    parser.add_argument("--safetensors", action="store_true", help="write models/model.safetensors")
    args = parser.parse_args()
    print(f"bundle written to {export(args.prior, args.out, safetensors=args.safetensors)}")


if __name__ == "__main__":
    main()
