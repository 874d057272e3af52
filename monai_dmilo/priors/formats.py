"""Priors in other projects' formats, read as this project's model configs.

* a diffusers ``UNet2DModel`` folder (``config.json`` + ``diffusion_pytorch_model.safetensors`` or
  ``.bin``) with its ``scheduler_config.json`` beside it, or a diffusers pipeline folder
  (``model_index.json``, ``unet/``, ``scheduler/``): the scheduler's ``beta_schedule`` (or
  ``trained_betas``), ``num_train_timesteps``, ``prediction_type`` and ``clip_sample`` become the
  model config's ``schedule``, ``parameterization`` and ``clip_x0``.

:func:`folder_model_config` turns such a folder into a model config mapping (architecture
``diffusers_unet2d``), so ``--model_config <folder>`` and ``build_prior(<folder>)`` take it like a
YAML file. diffusers is an optional extra (``pip install -e ".[diffusers]"``); weights are read with
safetensors or a weights-only ``torch.load``, strictly. Conditioned networks are refused in one line.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

__all__ = ["folder_model_config", "is_prior_folder", "diffusers_unet2d"]

logger = logging.getLogger(__name__)

#: diffusers' ``prediction_type`` -> this project's ``parameterization``
PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "sample"}
_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable JSON file ({type(err).__name__}: {err}).") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}.")
    return data


def _unet_and_scheduler(folder: Path) -> tuple[Path, Path]:
    """The UNet folder and the scheduler config of a diffusers UNet folder or pipeline folder."""
    if (folder / "model_index.json").is_file():
        return folder / "unet", folder / "scheduler" / "scheduler_config.json"
    for candidate in (folder / "scheduler_config.json", folder.parent / "scheduler" / "scheduler_config.json"):
        if candidate.is_file():
            return folder, candidate
    return folder, folder / "scheduler_config.json"


def is_prior_folder(path: Path) -> bool:
    """Whether ``path`` is a folder in a format :func:`folder_model_config` reads."""
    return path.is_dir() and ((path / "model_index.json").is_file() or (path / "config.json").is_file())


def folder_model_config(folder: str | Path) -> dict[str, Any]:
    """A model config mapping for a diffusers ``UNet2DModel`` or pipeline folder.

    Raises:
        ValueError: one line naming what is missing or not supported (another network class,
            class or text conditioning, an unknown prediction type or schedule).
    """
    folder = Path(folder)
    unet_dir, scheduler_path = _unet_and_scheduler(folder)
    where = f"diffusers folder {str(folder)!r}"
    if not (unet_dir / "config.json").is_file():
        raise ValueError(f"{where} has no {unet_dir.name}/config.json: not a diffusers UNet2DModel or pipeline folder.")
    unet = _read_json(unet_dir / "config.json")
    kind = unet.get("_class_name")
    if kind != "UNet2DModel":
        feature = "text conditioning" if kind == "UNet2DConditionModel" else f"the network class {kind!r}"
        raise ValueError(f"{where}: {feature} is not supported; an unconditional UNet2DModel is.")
    if unet.get("num_class_embeds") is not None or unet.get("class_embed_type") is not None:
        raise ValueError(f"{where}: class conditioning (class_embed_type / num_class_embeds) is not supported; "
                         "an unconditional UNet2DModel is.")
    weights = next((unet_dir / name for name in _WEIGHTS if (unet_dir / name).is_file()), None)
    if weights is None:
        raise ValueError(f"{where} has none of {', '.join(_WEIGHTS)} in {str(unet_dir)!r}.")
    if not scheduler_path.is_file():
        raise ValueError(f"{where} has no scheduler_config.json (beside config.json, or scheduler/ of a pipeline): "
                         "the noise schedule and prediction type are needed.")
    scheduler = _read_json(scheduler_path)
    prediction = scheduler.get("prediction_type", "epsilon")
    if prediction not in PREDICTION_TYPES:
        raise ValueError(f"{where}: prediction_type {prediction!r} is not one of {sorted(PREDICTION_TYPES)}.")
    schedule: dict[str, Any] = {
        "num_train_timesteps": int(scheduler.get("num_train_timesteps", 1000)),
        "beta_start": float(scheduler.get("beta_start", 1e-4)),
        "beta_end": float(scheduler.get("beta_end", 0.02)),
        "beta_schedule": scheduler.get("beta_schedule", "linear"),
    }
    if scheduler.get("trained_betas") is not None:
        betas = torch.as_tensor(scheduler["trained_betas"], dtype=torch.float64)
        schedule["alphas_cumprod"] = torch.cumprod(1.0 - betas, dim=0).tolist()
    size = unet.get("sample_size")
    height, width = (size, size) if isinstance(size, int) else tuple(size or (None, None))
    if not (isinstance(height, int) and isinstance(width, int)):
        raise ValueError(f"{where}: config.json's sample_size {size!r} is not an image size.")
    params = {k: v for k, v in unet.items() if not k.startswith("_")}
    logger.info("prior format: diffusers UNet2DModel (%s, %s, %s schedule)", unet_dir, prediction,
                schedule["beta_schedule"] if "alphas_cumprod" not in schedule else "trained_betas")
    return {
        "name": folder.name,
        "architecture": "diffusers_unet2d",
        "params": params,
        "image_shape": [int(unet.get("in_channels", 3)), height, width],
        "checkpoint": str(weights.resolve()),
        "schedule": schedule,
        "parameterization": PREDICTION_TYPES[prediction],
        "clip_x0": bool(scheduler.get("clip_sample", True)),
        "format": "diffusers",
        "source": str(folder),
    }


def diffusers_unet2d(params: Mapping[str, Any]) -> nn.Module:
    """A diffusers ``UNet2DModel`` built from its ``config.json`` values, called as ``network(x, t) -> out``
    (the tensor, not diffusers' output record); its state dict keys are diffusers' own."""
    try:
        from diffusers import UNet2DModel
    except ImportError:
        raise ValueError("a diffusers prior needs the diffusers package: pip install -e \".[diffusers]\"") from None

    class TensorUNet2DModel(UNet2DModel):
        def forward(self, sample: torch.Tensor, timestep: torch.Tensor, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
            return super().forward(sample, timestep, return_dict=False)[0]

    return TensorUNet2DModel.from_config(dict(params))
