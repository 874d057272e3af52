"""Named solver presets: ``configs/solvers/<name>.yaml`` holding ``{solver: <name>, params: {...}}``.

The paper's per-task settings (ALGORITHMS.md, section 7) live there as data, not as code constants.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = ["PRESET_DIR", "available_presets", "load_solver_preset"]

#: ``configs/solvers`` of the source tree (the repository root is two levels above this package).
PRESET_DIR = Path(__file__).resolve().parents[2] / "configs" / "solvers"


def available_presets() -> list[str]:
    """Names of the presets shipped in :data:`PRESET_DIR`."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_solver_preset(name_or_path: str | Path) -> dict[str, Any]:
    """Read a preset: a name in ``configs/solvers`` (``"inpainting_dmilo"``) or a YAML file path.

    Returns:
        ``{"solver": str, "params": dict}``; build it with
        ``monai_dmilo.solvers.build(p["solver"], **p["params"])``.
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ValueError(
            f"solver preset {str(name_or_path)!r} not found (looked for {path}); "
            f"available: {available_presets()}."
        )
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict) or not isinstance(data.get("solver"), str):
        raise ValueError(f"solver preset {path} must be a mapping with a 'solver' name, got {data!r}.")
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise ValueError(f"'params' of solver preset {path} must be a mapping, got {params!r}.")
    return {"solver": data["solver"], "params": dict(params)}
