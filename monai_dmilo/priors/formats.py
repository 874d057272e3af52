"""Priors in other projects' formats, read as this project's model configs.

* a diffusers ``UNet2DModel`` folder (``config.json`` + ``diffusion_pytorch_model.safetensors`` or
  ``.bin``) with its ``scheduler_config.json`` beside it, or a diffusers pipeline folder
  (``model_index.json``, ``unet/``, ``scheduler/``): the scheduler's ``beta_schedule`` (or
  ``trained_betas``), ``num_train_timesteps``, ``prediction_type`` and ``clip_sample`` become the
  model config's ``schedule``, ``parameterization`` and ``clip_x0``;
* a MONAI model-zoo bundle (``configs/inference.json`` or ``.yaml`` with a ``network_def`` of
  ``DiffusionModelUNet``, weights in ``models/model.pt``), e.g. ``mednist_ddpm``; with an
  ``autoencoder_def`` (``AutoencoderKL``, weights ``models/model_autoencoder.pt``) and a numeric
  ``scale_factor`` it is a latent prior (``brats_mri_axial_slices_generative_diffusion``). The
  config is read as data, never executed: ``_target_`` must be one of the allow-listed network
  classes, ``@key`` references to plain values are resolved, ``$`` expressions in the network's
  parameters are refused. The noise scheduler's ``schedule`` / ``prediction_type`` /
  ``clip_sample`` and a ``ScaleIntensityRanged`` (``b_min``, ``b_max``) give the schedule and the
  prior's intensity range. Weights written by MONAI Generative (older key names) are converted
  with MONAI's ``load_old_state_dict``.

:func:`folder_model_config` turns such a folder into a model config mapping (architecture
``diffusers_unet2d`` or ``monai_unet``), so ``--prior <folder>`` and ``build_prior(<folder>)`` take
it like a YAML file. diffusers is an optional extra (``pip install -e ".[diffusers]"``); weights are read with
safetensors or a weights-only ``torch.load``, strictly. Conditioned networks are refused in one line.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

__all__ = ["folder_model_config", "diffusers_model_config", "bundle_model_config", "is_prior_folder", "diffusers_unet2d"]

logger = logging.getLogger(__name__)
_logged: set[str] = set()


def _log_format(message: str, *args: Any) -> None:
    """Log a folder's detected format once per process (a workflow reads its config several times)."""
    text = message % args
    if text not in _logged:
        _logged.add(text)
        logger.info(text)

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


def _bundle_config_file(folder: Path) -> Path | None:
    return next((folder / "configs" / f"inference.{ext}" for ext in ("json", "yaml", "yml")
                 if (folder / "configs" / f"inference.{ext}").is_file()), None)


def is_prior_folder(path: Path) -> bool:
    """Whether ``path`` is a folder in a format :func:`folder_model_config` reads."""
    return path.is_dir() and ((path / "model_index.json").is_file() or (path / "config.json").is_file()
                              or _bundle_config_file(path) is not None)


def folder_model_config(folder: str | Path, *, scale_factor: float | None = None) -> dict[str, Any]:
    """A model config mapping for a diffusers folder or a MONAI model-zoo bundle folder
    (:func:`diffusers_model_config`, :func:`bundle_model_config`; ``scale_factor``: a latent
    bundle's, given by a model YAML over the folder)."""
    folder = Path(folder)
    if _bundle_config_file(folder) is not None:
        return bundle_model_config(folder, scale_factor=scale_factor)
    return diffusers_model_config(folder)


def diffusers_model_config(folder: str | Path) -> dict[str, Any]:
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
    _log_format("prior format: diffusers UNet2DModel (%s, %s, %s schedule)", unet_dir, prediction,
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


# -- MONAI model-zoo bundles ------------------------------------------------------------------------
#: ``_target_`` values a bundle's network definitions may name (MONAI, and MONAI Generative before
#: its networks moved into MONAI 1.4); nothing else is ever built from a bundle config.
_UNET_TARGETS = {"DiffusionModelUNet", "monai.networks.nets.DiffusionModelUNet",
                 "monai.networks.nets.diffusion_model_unet.DiffusionModelUNet",
                 "generative.networks.nets.DiffusionModelUNet",
                 "generative.networks.nets.diffusion_model_unet.DiffusionModelUNet"}
_AUTOENCODER_TARGETS = {"AutoencoderKL", "monai.networks.nets.AutoencoderKL",
                        "monai.networks.nets.autoencoderkl.AutoencoderKL",
                        "generative.networks.nets.AutoencoderKL",
                        "generative.networks.nets.autoencoderkl.AutoencoderKL"}
#: MONAI's scheduler ``schedule`` names (and MONAI Generative's ``beta_schedule``) -> ours
_MONAI_SCHEDULES = {"linear_beta": "linear", "linear": "linear", "scaled_linear_beta": "scaled_linear",
                    "scaled_linear": "scaled_linear", "cosine": "squaredcos_cap_v2",
                    "squaredcos_cap_v2": "squaredcos_cap_v2"}
#: MONAI Generative's parameter names that MONAI renamed
_RENAMED_PARAMS = {"num_channels": "channels"}


def _read_bundle_config(path: Path) -> dict[str, Any]:
    if path.suffix == ".json":
        return _read_json(path)
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{path} is not a readable YAML file ({type(err).__name__}).") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a mapping, got {type(data).__name__}.")
    return data


def _resolve(value: Any, config: Mapping[str, Any], where: str, key: str, depth: int = 0) -> Any:
    """``value`` with ``@name`` references to the config's plain values resolved; ``$`` refused."""
    if depth > 8:
        raise ValueError(f"{where}: {key!r} has references nested too deep.")
    if isinstance(value, str) and value.startswith("@"):
        name = value[1:]
        if name not in config:
            raise ValueError(f"{where}: {key!r} refers to {value!r}, which the config does not define.")
        return _resolve(config[name], config, where, key, depth + 1)
    if isinstance(value, str) and value.startswith("$"):
        raise ValueError(f"{where}: {key!r} is the expression {value!r}; only plain values and @references are "
                         "read (nothing in a bundle config is executed).")
    if isinstance(value, list):
        return [_resolve(v, config, where, key, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, config, where, f"{key}.{k}", depth + 1) for k, v in value.items()}
    return value


def _network_params(config: Mapping[str, Any], key: str, targets: set[str], where: str) -> dict[str, Any]:
    definition = config.get(key)
    if not isinstance(definition, Mapping):
        raise ValueError(f"{where} has no {key!r} mapping.")
    target = definition.get("_target_")
    if target not in targets:
        name = sorted(t for t in targets if "." not in t)[0]
        raise ValueError(f"{where}: {key} _target_ {target!r} is not supported; {name} is "
                         "(an allow-list: nothing else is built from a bundle config).")
    params = {_RENAMED_PARAMS.get(k, k): _resolve(v, config, where, f"{key}.{k}")
              for k, v in definition.items() if not k.startswith("_")}
    if params.get("spatial_dims") != 2:
        raise ValueError(f"{where}: {key} has spatial_dims {params.get('spatial_dims')!r}; 3D networks are not "
                         "supported, 2D ones are.")
    if key == "network_def" and (params.get("with_conditioning") or params.get("num_class_embeds") is not None):
        feature = "text / cross-attention conditioning" if params.get("with_conditioning") else "class conditioning"
        raise ValueError(f"{where}: {feature} is not supported; an unconditional DiffusionModelUNet is.")
    return params


def _bundle_scheduler(config: Mapping[str, Any], where: str) -> tuple[dict[str, Any], str, bool]:
    """``(schedule, parameterization, clip_x0)`` from the bundle's noise scheduler definition."""
    scheduler = next((config[k] for k in ("noise_scheduler", "scheduler")
                      if isinstance(config.get(k), Mapping) and "Scheduler" in str(config[k].get("_target_", ""))), None)
    if scheduler is None:
        raise ValueError(f"{where} has no noise_scheduler / scheduler definition: the noise schedule is needed.")
    values = {k: _resolve(v, config, where, f"scheduler.{k}") for k, v in scheduler.items() if not k.startswith("_")}
    name = values.get("schedule", values.get("beta_schedule", "linear_beta"))
    if name not in _MONAI_SCHEDULES:
        raise ValueError(f"{where}: the scheduler's schedule {name!r} is not supported; one of "
                         f"{sorted(_MONAI_SCHEDULES)} is.")
    prediction = values.get("prediction_type", "epsilon")
    if prediction not in PREDICTION_TYPES:
        raise ValueError(f"{where}: prediction_type {prediction!r} is not one of {sorted(PREDICTION_TYPES)}.")
    schedule = {"num_train_timesteps": int(values.get("num_train_timesteps", 1000)),
                "beta_start": float(values.get("beta_start", 1e-4)), "beta_end": float(values.get("beta_end", 0.02)),
                "beta_schedule": _MONAI_SCHEDULES[name]}
    return schedule, PREDICTION_TYPES[prediction], bool(values.get("clip_sample", True))


def _bundle_intensity_range(config: Mapping[str, Any]) -> list[float]:
    """``image_range``, else the ``b_min``/``b_max`` of a ``ScaleIntensityRanged`` among the config's
    transform lists, else [-1, 1]."""
    given = config.get("image_range")
    if isinstance(given, list) and len(given) == 2:
        return [float(given[0]), float(given[1])]
    for value in config.values():
        for item in value if isinstance(value, list) else []:
            if (isinstance(item, Mapping) and str(item.get("_target_", "")).endswith("ScaleIntensityRanged")
                    and isinstance(item.get("b_min"), (int, float)) and isinstance(item.get("b_max"), (int, float))):
                return [float(item["b_min"]), float(item["b_max"])]
    return [-1.0, 1.0]


def _bundle_weights(folder: Path, names: tuple[str, ...], where: str) -> Path:
    found = next((folder / "models" / n for n in names if (folder / "models" / n).is_file()), None)
    if found is None:
        raise ValueError(f"{where} has none of {', '.join('models/' + n for n in names)}.")
    return found


def bundle_model_config(folder: str | Path, *, scale_factor: float | None = None) -> dict[str, Any]:
    """A model config mapping for a MONAI model-zoo bundle folder (pixel or latent diffusion);
    ``scale_factor`` replaces the config's (bundles compute it at training time).

    Raises:
        ValueError: one line naming what is missing or not supported (a network class off the
            allow-list, conditioning, 3D, an expression where a value is needed, a scale factor
            computed at training time).
    """
    folder = Path(folder)
    path = _bundle_config_file(folder)
    where = f"MONAI bundle {str(folder)!r}"
    if path is None:
        raise ValueError(f"{where} has no configs/inference.json or configs/inference.yaml.")
    config = _read_bundle_config(path)
    params = _network_params(config, "network_def", _UNET_TARGETS, where)
    schedule, parameterization, clip_x0 = _bundle_scheduler(config, where)
    channels = int(params.get("in_channels", 1))
    result: dict[str, Any] = {
        "name": folder.name,
        "architecture": "monai_unet",
        "params": params,
        "checkpoint": str(_bundle_weights(folder, ("model.pt", "model.safetensors", "model.pth"), where).resolve()),
        "schedule": schedule,
        "parameterization": parameterization,
        "clip_x0": clip_x0,
        "intensity_range": _bundle_intensity_range(config),
        "format": "monai_bundle",
        "source": str(folder),
    }
    if "autoencoder_def" in config:
        autoencoder = _network_params(config, "autoencoder_def", _AUTOENCODER_TARGETS, where)
        scale = config.get("scale_factor") if scale_factor is None else scale_factor
        if isinstance(scale, str) and scale.startswith("@"):
            scale = _resolve(scale, config, where, "scale_factor")
        if not isinstance(scale, (int, float)) or isinstance(scale, bool):
            raise ValueError(f"{where}: scale_factor {scale!r} is not a number (bundles that compute it at "
                             "training time: write the printed value into a model YAML with prior_folder and "
                             "latent: {scale_factor: ...}).")
        latent_shape = _resolve(config.get("latent_shape"), config, where, "latent_shape")
        if not (isinstance(latent_shape, list) and len(latent_shape) == 3):
            raise ValueError(f"{where}: latent_shape {latent_shape!r} is not [C, H, W].")
        factor = 2 ** (len(autoencoder.get("channels", (32, 64, 64, 64))) - 1)
        result["image_shape"] = [int(autoencoder.get("out_channels", 1)), int(latent_shape[1]) * factor,
                                 int(latent_shape[2]) * factor]
        result["latent"] = {
            "params": autoencoder,
            "checkpoint": str(_bundle_weights(folder, ("model_autoencoder.pt", "autoencoder.pt", "autoencoder.pth",
                                                       "model_autoencoder.safetensors"), where).resolve()),
            "scale_factor": float(scale),
            "latent_shape": [int(v) for v in latent_shape],
        }
        kind = "latent diffusion"
    else:
        size = _resolve(config.get("image_size", config.get("image_shape")), config, where, "image_size")
        if isinstance(size, list) and len(size) == 2:
            size = [channels, *size]
        if not (isinstance(size, list) and len(size) == 3 and all(isinstance(v, int) for v in size)):
            raise ValueError(f"{where}: image_size {size!r} is not [C, H, W] or [H, W]; give the image shape with "
                             "image_shape in a model YAML with prior_folder.")
        result["image_shape"] = [int(v) for v in size]
        kind = "pixel diffusion"
    _log_format("prior format: MONAI model-zoo bundle (%s, %s, %s, %s schedule, intensity range %s)", folder, kind,
                parameterization, schedule["beta_schedule"], result["intensity_range"])
    return result
