"""Solvers: the algorithms only (ALGORITHMS.md, sections 3-9). No I/O, no metrics, no ground truth.

``build(name, **hyperparameters)`` makes a solver by registry name (``dmilo``, ``dmilo_pgd``,
``dmplug``, ``dps``); ``build_from_preset(name_or_path, **overrides)`` makes one from a
``configs/solvers`` preset. Every solver has
``solve(y, operator, generator, *, seed=None, z_init=None) -> SolverOutput``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .base import Solver, SolverOutput, per_sample_mean_square, per_sample_sum_square
from .dmilo import DMILO
from .dmilo_pgd import DMILOPGD, FIDELITY_STEPS
from .dmplug import DMPlug
from .dps import DPS
from .presets import available_presets, load_solver_preset
from .selection import SELECTION_RULES, SelectionRule, build_selection

__all__ = [
    "SOLVERS",
    "DMILO",
    "DMILOPGD",
    "DMPlug",
    "DPS",
    "FIDELITY_STEPS",
    "SELECTION_RULES",
    "SelectionRule",
    "Solver",
    "SolverOutput",
    "available_presets",
    "build",
    "build_from_preset",
    "build_selection",
    "load_solver_preset",
    "per_sample_mean_square",
    "per_sample_sum_square",
]

SOLVERS: dict[str, Callable[..., Solver]] = {
    "dmilo": DMILO,
    "dmilo_pgd": DMILOPGD,
    "dmplug": DMPlug,
    "dps": DPS,
}


def build(name: str, **hyperparameters: Any) -> Solver:
    """A solver by registry name with its keyword hyperparameters."""
    if name not in SOLVERS:
        raise ValueError(f"solver name must be one of {sorted(SOLVERS)}, got {name!r}.")
    return SOLVERS[name](**hyperparameters)


def build_from_preset(name_or_path: str | Path, **overrides: Any) -> Solver:
    """A solver from a ``configs/solvers`` preset, with keyword overrides of its parameters."""
    preset = load_solver_preset(name_or_path)
    return build(preset["solver"], **{**preset["params"], **overrides})
