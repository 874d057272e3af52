"""Task presets (``configs/tasks/<name>.yaml``): the operator, its fixed parameters, how evaluation
simulates per-image parameters and noise, and the solver preset family."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from monai_dmilo.operators import required_batch_keys
from monai_dmilo.workflow.presets import CONFIG_ROOT, find_preset, preset_names, read_yaml_mapping

__all__ = ["TASK_DIR", "DEFAULT_PRIOR", "available_tasks", "load_task", "task_model_config", "simulation_transform"]

logger = logging.getLogger(__name__)

TASK_DIR = CONFIG_ROOT / "tasks"
_TASK_KEYS = {"name", "description", "operator", "operator_params", "simulation", "noise_sigma", "param_keys",
              "solver_task", "prior"}
# the prior of a task preset that names none (configs/models/<name>.yaml)
DEFAULT_PRIOR = "fashion_mnist_32"


def available_tasks() -> list[str]:
    """Names of the task presets in ``configs/tasks``."""
    return preset_names(TASK_DIR)


def load_task(name_or_path: str | Path) -> dict[str, Any]:
    """Read a task preset: a name in ``configs/tasks`` (``"inpainting"``) or a YAML file path.

    A preset holds ``operator`` (registry name), ``operator_params`` (fixed parameters),
    ``simulation`` (how evaluation draws per-image parameters such as masks and kernels),
    ``noise_sigma`` and ``solver_task`` (the ``configs/solvers/<solver_task>_<solver>.yaml``
    family), and optionally ``prior``: the model config the workflows use for this task when none is
    given (a name in ``configs/models`` or a path). The returned record adds ``param_keys``: the per-image parameters every item must
    provide, which the operator class declares (:func:`monai_dmilo.operators.required_batch_keys`);
    a ``param_keys`` entry in the file is ignored.

    Raises:
        ValueError: unknown name, unreadable file, missing or unknown keys.
    """
    path = find_preset(name_or_path, TASK_DIR, "task")
    data = read_yaml_mapping(path, "task preset")
    unknown = sorted(set(data) - _TASK_KEYS)
    if unknown:
        raise ValueError(f"task preset {path} has unknown keys {unknown}; expected keys among {sorted(_TASK_KEYS)}.")
    if not isinstance(data.get("operator"), str):
        raise ValueError(f"task preset {path} must name an 'operator', got {data.get('operator')!r}.")
    if "param_keys" in data:
        logger.warning("task preset %s: 'param_keys' is ignored; the %r operator declares its per-image parameters %s",
                       path, data["operator"], list(required_batch_keys(data["operator"])))
    task = {
        "name": data.get("name", path.stem),
        "description": data.get("description", ""),
        "operator": data["operator"],
        "operator_params": dict(data.get("operator_params") or {}),
        "simulation": dict(data.get("simulation") or {}),
        "noise_sigma": float(data.get("noise_sigma", 0.0)),
        "param_keys": list(required_batch_keys(data["operator"])),
        "solver_task": data.get("solver_task", path.stem),
        "prior": data.get("prior"),
    }
    if task["prior"] is not None and not isinstance(task["prior"], str):
        raise ValueError(f"task preset {path}: prior must be a model config name or path, got {task['prior']!r}.")
    if task["noise_sigma"] < 0:
        raise ValueError(f"task preset {path}: noise_sigma must be >= 0, got {task['noise_sigma']}.")
    return task


def task_model_config(task: dict[str, Any], checkpoint: str | Path | None = None,
                      prior: str | Path | None = None) -> str:
    """The model config a run uses when none is given: ``prior`` (the ``--prior`` a user gave: a
    model YAML, a prior name, a diffusers folder or a MONAI bundle folder), else the one
    ``train.yaml`` wrote next to ``checkpoint`` (``<stem>.yaml``), else the task's ``prior`` (a name
    in ``configs/models`` or a path), else :data:`DEFAULT_PRIOR`; a shipped name is returned as its path."""
    if prior:
        path = Path(str(prior))
        if path.suffix in (".pt", ".pth", ".bin", ".safetensors"):  # a weights file: the model config beside it
            beside = path.with_suffix(".yaml")
            if not beside.is_file():
                raise ValueError(f"--prior {str(prior)!r} is a weights file with no model config beside it ({beside.name}); "
                                 "pass --prior <model YAML> --checkpoint <weights> instead.")
            logger.info("model config %s: the one next to the weights given as --prior", beside)
            return str(beside)
        shipped = CONFIG_ROOT / "models" / f"{prior}.yaml"
        return str(shipped) if shipped.is_file() and not path.exists() else str(prior)
    if checkpoint:
        beside = Path(checkpoint).with_suffix(".yaml")
        if beside.is_file():
            logger.info("model config %s: the one next to the checkpoint", beside)
            return str(beside)
    name = task.get("prior") or DEFAULT_PRIOR
    shipped = CONFIG_ROOT / "models" / f"{name}.yaml"
    return str(shipped) if shipped.is_file() else name


def simulation_transform(
    task: dict[str, Any], *, image_key: str = "image", measurement_key: str = "y", seed_key: str = "seed"
) -> Any:
    """The transforms simulating ``task``'s measurement for one item, seeded by ``data[seed_key]``.

    Each entry ``key: {transform: <name>, **kwargs}`` of the preset's ``simulation`` becomes
    ``monai_dmilo.transforms.<name>(image_key, key, seed_key, **kwargs)`` (a per-image parameter
    such as a mask or a kernel written to ``data[key]``), followed by
    ``SimulateMeasurementd`` (operator + Gaussian noise of ``noise_sigma``) writing ``y``.
    Everything is drawn from the item's seed: an image gets the same measurement in any batch or
    process.

    Raises:
        ValueError: an unknown transform name or bad arguments in the preset.
    """
    from monai.transforms import Compose

    from monai_dmilo import transforms as T

    steps = []
    for key, spec in task["simulation"].items():
        name = spec.get("transform") if isinstance(spec, dict) else None
        factory = getattr(T, str(name), None) if name else None
        if factory is None or not isinstance(factory, type):
            raise ValueError(
                f"task {task['name']!r}: simulation of {key!r} must be a mapping with 'transform' naming a "
                f"monai_dmilo.transforms class (e.g. RandInpaintingMaskd), got {spec!r}."
            )
        kwargs = {k: v for k, v in spec.items() if k != "transform"}
        steps.append(factory(image_key, key, seed_key, **kwargs))
    sigma = task["noise_sigma"]
    steps.append(
        T.SimulateMeasurementd(
            image_key,
            operator=task["operator"],
            operator_params=task["operator_params"],
            param_keys={k: k for k in task["param_keys"]},
            noise="gaussian" if sigma > 0 else "none",
            sigma=sigma,
            measurement_key=measurement_key,
            seed_key=seed_key,
        )
    )
    return Compose(steps)
