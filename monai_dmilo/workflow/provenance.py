"""What a set of saved measurements was made with, and how inference uses it.

``evaluate`` writes ``measurements/datalist.json`` with a ``provenance`` record next to its
``data``: the task (operator, its fixed parameters, the per-image parameter keys, the noise level),
the prior (model config, checkpoint, sha256 of the weights) and the image shape. ``inference``
with ``--task`` / ``--model_config`` left unset takes them from there, and refuses a ``--task``
whose operator differs from the recorded one. A datalist without provenance (real data) needs
``--task``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["measurement_provenance", "read_provenance", "inference_task", "inference_prior"]

logger = logging.getLogger(__name__)


def measurement_provenance(task: Mapping[str, Any], model_config: str | Path, checkpoint: str | Path | None,
                           image_shape: Sequence[int]) -> dict[str, Any]:
    """The provenance record of simulated measurements (plain JSON types)."""
    from monai_dmilo.priors.checkpoints import sha256_of
    from monai_dmilo.priors.loading import load_model_config

    config = load_model_config(model_config)
    weights = Path(checkpoint) if checkpoint else (Path(config["checkpoint"]) if config["checkpoint"] else None)
    record = {
        "task": {k: task[k] for k in ("name", "operator", "operator_params", "param_keys", "noise_sigma",
                                       "solver_task", "simulation", "description") if k in task},
        "prior": {
            "model_config": str(Path(model_config).resolve()) if Path(str(model_config)).is_file() else str(model_config),
            "checkpoint": str(weights.resolve()) if weights is not None else None,
            "sha256": sha256_of(weights) if weights is not None and weights.is_file() else None,
        },
        "image_shape": [int(v) for v in image_shape],
    }
    return json.loads(json.dumps(record, default=str))


def read_provenance(datalist_file: str | Path | None) -> dict[str, Any] | None:
    """The ``provenance`` record of a datalist JSON file, or None when it has none."""
    if not datalist_file or not Path(datalist_file).is_file():
        return None
    try:
        data = json.loads(Path(datalist_file).read_text())
    except json.JSONDecodeError:
        return None  # read_datalist_file reports the file itself
    record = data.get("provenance") if isinstance(data, dict) else None
    return record if isinstance(record, dict) else None


def inference_task(task: str | None, provenance: Mapping[str, Any] | None) -> dict[str, Any]:
    """The task preset for inference: ``task`` when given (checked against the record), else the recorded one.

    Raises:
        ValueError: no task given and none recorded; or the given task's operator is not the one the
            measurements were made with.
    """
    from monai_dmilo.workflow.tasks import available_tasks, load_task

    recorded = (provenance or {}).get("task")
    if task is None:
        if not recorded:
            raise ValueError(
                "the datalist records no task (it was not written by evaluate): pass --task NAME, one of "
                f"{available_tasks()} or a task YAML path."
            )
        logger.info("task %r (operator %r) from the measurements' provenance", recorded["name"], recorded["operator"])
        return load_task(recorded["name"]) if recorded["name"] in available_tasks() else _task_from_record(recorded)
    chosen = load_task(task)
    if recorded and chosen["operator"] != recorded["operator"]:
        raise ValueError(
            f"--task {task!r} uses the {chosen['operator']!r} operator but the measurements were made for task "
            f"{recorded['name']!r} ({recorded['operator']!r}); drop --task to use the recorded one."
        )
    return chosen


def _task_from_record(recorded: Mapping[str, Any]) -> dict[str, Any]:
    from monai_dmilo.operators import required_batch_keys

    return {
        "name": recorded["name"], "description": recorded.get("description", ""),
        "operator": recorded["operator"], "operator_params": dict(recorded.get("operator_params") or {}),
        "simulation": dict(recorded.get("simulation") or {}), "noise_sigma": float(recorded.get("noise_sigma", 0.0)),
        "param_keys": list(required_batch_keys(recorded["operator"])), "solver_task": recorded.get("solver_task", recorded["name"]),
    }


def inference_prior(model_config: str | None, checkpoint: str | None,
                    provenance: Mapping[str, Any] | None, task: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{"model_config", "checkpoint"}`` for inference: the given ones, else the recorded prior, else
    the task's default prior (:func:`~monai_dmilo.workflow.tasks.task_model_config`)."""
    recorded = (provenance or {}).get("prior") or {}
    if model_config is None:
        if recorded.get("model_config") and Path(recorded["model_config"]).is_file():
            model_config = recorded["model_config"]
            checkpoint = checkpoint if checkpoint is not None else recorded.get("checkpoint")
            logger.info("prior %s from the measurements' provenance", model_config)
        else:
            from monai_dmilo.workflow.tasks import task_model_config

            model_config = task_model_config(task or {}, checkpoint=checkpoint)
            logger.info("no prior recorded with the measurements: using the default %s", model_config)
    elif recorded.get("model_config") and Path(str(model_config)).resolve() != Path(recorded["model_config"]):
        logger.info("reconstructing with prior %s; the measurements were simulated with %s",
                    model_config, recorded["model_config"])
    return {"model_config": str(model_config), "checkpoint": checkpoint}
