"""Named solver presets: ``configs/solvers/<name>.yaml`` holding ``{solver: <name>, params: {...}}``.

The paper's per-task settings (docs/algorithms.md, section 7) live there as data, not as code constants.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from monai_dmilo.workflow.presets import CONFIG_ROOT, find_preset, preset_names, read_yaml_mapping

__all__ = ["PRESET_DIR", "available_presets", "load_solver_preset", "resolve_solver_preset", "task_solver_preset"]

#: ``configs/solvers`` of the source tree.
PRESET_DIR = CONFIG_ROOT / "solvers"


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
