"""Named solver presets: ``configs/solvers/<name>.yaml`` holding ``{solver: <name>, params: {...}}``.

The paper's per-task settings (docs/algorithms.md, section 7) live there as data, not as code constants.
The quality benchmark's validation-selected settings for the shipped priors live in
``configs/solvers/validated/<prior name>/<task>_<solver>.yaml`` (written by
``python benchmarks/quality.py --write_presets``, with the prior's sha256): a run on that very prior
uses them (:func:`run_solver_preset`), any other prior the paper's family preset.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

from monai_dmilo.workflow.presets import CONFIG_ROOT, find_preset, preset_names, read_yaml_mapping

__all__ = ["PRESET_DIR", "VALIDATED_DIR", "available_presets", "load_solver_preset", "resolve_solver_preset",
           "run_solver_preset", "task_solver_preset", "validated_solver_preset"]

logger = logging.getLogger(__name__)

#: ``configs/solvers`` of the source tree.
PRESET_DIR = CONFIG_ROOT / "solvers"
#: the validation-selected presets of the shipped priors: ``<prior name>/<task>_<solver>.yaml``
VALIDATED_DIR = PRESET_DIR / "validated"


def available_presets() -> list[str]:
    """Names of the presets shipped in :data:`PRESET_DIR`."""
    return preset_names(PRESET_DIR)


def load_solver_preset(name_or_path: str | Path) -> dict[str, Any]:
    """Read a preset: a name in ``configs/solvers`` (``"inpainting_dmilo"``) or a YAML file path.

    Returns:
        ``{"solver": str, "params": dict}``; build it with
        ``monai_dmilo.solvers.build(p["solver"], **p["params"])``.
    """
    path = find_preset(name_or_path, PRESET_DIR, "solver preset")
    data = read_yaml_mapping(path, "solver preset")
    if not isinstance(data.get("solver"), str):
        raise ValueError(f"solver preset {path} must be a mapping with a 'solver' name, got {data!r}.")
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError(f"'params' of solver preset {path} must be a mapping, got {params!r}.")
    from monai_dmilo.solvers import check_solver_name, current_solver_name

    check_solver_name(data["solver"])
    return {"solver": current_solver_name(data["solver"]), "params": dict(params)}


def task_solver_preset(solver_task: str, solver: str) -> str:
    """The preset a task runs ``solver`` with: ``<solver_task>_<solver>`` (tuned for that family of
    tasks) when shipped, else the solver's generic preset ``<solver>`` (e.g. ``dps``, ``pseudo_inverse``).

    Raises:
        ValueError: an unregistered solver, or neither preset exists (both names and the available
            presets are listed).
    """
    from monai_dmilo.solvers import check_solver_name, current_solver_name

    check_solver_name(solver)
    solver = current_solver_name(solver)
    available = available_presets()
    for name in (f"{solver_task}_{solver}", solver):
        if name in available:
            return name
    raise ValueError(
        f"solver {solver!r} has no preset for solver task {solver_task!r}: looked for "
        f"{solver_task}_{solver}.yaml and {solver}.yaml in {PRESET_DIR}; available: {available}. "
        f"Name one with --solver_preset."
    )


def validated_solver_preset(task: str, solver: str, prior_name: str | None, prior_sha256: str | None) -> Path | None:
    """The quality benchmark's validated preset of ``solver`` on the shipped task ``task`` for the prior
    ``prior_name``, when one ships and was selected with these very weights (its ``prior_sha256``
    equals ``prior_sha256``); else None."""
    if not prior_name or not prior_sha256:
        return None
    path = VALIDATED_DIR / str(prior_name) / f"{task}_{solver}.yaml"
    if not path.is_file():
        return None
    recorded = read_yaml_mapping(path, "solver preset").get("prior_sha256")
    if recorded != prior_sha256:
        logger.warning("validated preset %s was selected for other weights of %s (sha256 %s..., these %s...); "
                       "using the paper's preset", path, prior_name, str(recorded)[:12], prior_sha256[:12])
        return None
    return path


def run_solver_preset(task: Mapping[str, Any], solver: str, model_config: Any,
                      checkpoint: str | Path | None = None, workflow: str | None = None) -> str:
    """The preset a workflow runs ``solver`` with on ``task``: the validated preset for the prior of
    ``model_config`` when the task is a shipped one unchanged and the weights (``checkpoint`` where
    given, else the config's) are the ones it was selected with (by sha256); else
    :func:`task_solver_preset` (the papers' settings for the task family). The choice is logged.

    Args:
        task: the loaded task (``monai_dmilo.workflow.tasks.load_task``).
        solver: the solver's registry name.
        model_config: the prior's model config (path or mapping, as ``load_model_config`` takes).
        checkpoint: weights replacing the config's (their sha256 decides).
        workflow: a workflow with validated presets of its own (``"kspace"``: chosen on its validation
            files, ``<prior>/kspace_<solver>.yaml``), tried before the task's.
    """
    from monai_dmilo.priors.loading import load_model_config
    from monai_dmilo.solvers import current_solver_name
    from monai_dmilo.workflow.tasks import load_task

    family = task_solver_preset(task["solver_task"], solver)
    solver = current_solver_name(solver)
    name = str(task.get("name", ""))
    shipped = (CONFIG_ROOT / "tasks" / f"{name}.yaml").is_file() and load_task(name) == dict(task)
    validated = None
    if shipped and model_config is not None:
        config = load_model_config(model_config)
        if checkpoint is not None:
            from monai_dmilo.priors.checkpoints import sha256_of

            digest = sha256_of(checkpoint) if Path(checkpoint).is_file() else None
        else:
            digest = config.get("sha256")
        for candidate in ([workflow] if workflow else []) + [name]:
            validated = validated_solver_preset(candidate, solver, config.get("name"), digest)
            if validated is not None:
                name = candidate
                break
    if validated is None:
        logger.info("solver preset %s (the papers' settings for %s tasks)", family, task["solver_task"])
        return family
    how = f"on the {name} workflow's validation files" if name == workflow else f"on {name} by the quality benchmark"
    logger.info("solver preset %s (selected for this prior %s)", validated, how)
    return str(validated)


def resolve_solver_preset(
    preset: str | Path,
    overrides: Mapping[str, Any] | str | None = None,
    *,
    defaults: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The solver name and parameters of a run: a preset with overrides, checked before any work.

    Args:
        preset: a ``configs/solvers`` preset name or YAML path.
        overrides: parameters replacing the preset's (a mapping; ``{}`` keeps the preset); ``None``
            takes ``defaults[<the preset's solver>]`` (e.g. the bundle's shrunken default run).
        defaults: per-solver default overrides, keyed by registry name.

    Returns:
        ``{"solver": name, "params": {...}}``.

    Raises:
        ValueError: an unknown preset, overrides that are not a mapping, or keys the solver does not
            take (the valid ones are listed).
    """
    from monai_dmilo.solvers import solver_parameters

    spec = load_solver_preset(preset)
    if overrides is None:
        overrides = dict((defaults or {}).get(spec["solver"], {}))
    if isinstance(overrides, str):
        raise ValueError(
            f"solver_overrides must be a mapping, e.g. --solver_overrides \"{{num_inner: 20}}\" (with braces); "
            f"got the string {overrides!r}."
        )
    if not isinstance(overrides, Mapping):
        raise ValueError(f"solver_overrides must be a mapping or null, got {overrides!r}.")
    valid = solver_parameters(spec["solver"])
    unknown = sorted(set(map(str, overrides)) - set(valid))
    if unknown:
        raise ValueError(
            f"solver_overrides {unknown} do not apply to solver {spec['solver']!r} (preset {str(preset)!r}); "
            f"its parameters are {sorted(valid)}."
        )
    return {"solver": spec["solver"], "params": {**spec["params"], **dict(overrides)}}
