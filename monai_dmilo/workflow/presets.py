"""Reading the YAML files under ``configs/`` (model, task and solver presets) safely, one way.

A preset is named either by its file stem in a preset folder (``"inpainting"``) or by a path to a
``.yaml``/``.yml`` file. Files are parsed with ``yaml.safe_load`` and must hold a mapping.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

__all__ = ["CONFIG_ROOT", "preset_names", "find_preset", "read_yaml_mapping"]

#: ``configs/`` of the source tree (the repository root is one level above this package).
CONFIG_ROOT = Path(__file__).resolve().parents[2] / "configs"


def preset_names(folder: Path) -> list[str]:
    """Sorted file stems of the ``*.yaml`` presets in ``folder`` (empty when it is absent)."""
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def find_preset(name_or_path: str | os.PathLike, folder: Path, what: str) -> Path:
    """The file of a preset: ``name_or_path`` itself when it ends in ``.yaml``/``.yml``, else
    ``folder/<name>.yaml``. Raises ``ValueError`` naming ``what`` and the available names."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = folder / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ValueError(
            f"{what} {str(name_or_path)!r} not found (looked for {path}); available: {preset_names(folder)}."
        )
    return path


def read_yaml_mapping(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """``yaml.safe_load`` of ``path``, which must hold a mapping (``ValueError`` otherwise)."""
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{what} {str(path)!r} must be a YAML mapping, got {type(data).__name__}.")
    return data
