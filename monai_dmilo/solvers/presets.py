"""Named solver presets: ``configs/solvers/<name>.yaml`` holding ``{solver: <name>, params: {...}}``.

The paper's per-task settings (ALGORITHMS.md, section 7) live there as data, not as code constants.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from monai_dmilo.yaml_presets import CONFIG_ROOT, find_preset, preset_names, read_yaml_mapping

__all__ = ["PRESET_DIR", "available_presets", "load_solver_preset"]

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
    return {"solver": data["solver"], "params": dict(params)}
