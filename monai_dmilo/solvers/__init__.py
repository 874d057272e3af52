"""Solvers: the algorithms only (docs/algorithms.md, sections 3-9). No I/O, no metrics, no ground truth.

``build(name, **hyperparameters)`` makes a solver by registry name (:data:`SOLVERS`, filled by
the ``@register(name)`` decorator of each solver module: ``dmilo``, ``dmilo_pgd``,
``dmplug``, ``dps``, ``ddrm``, ``daps``, ``diffpir``, ``pigdm``, ``reddiff``; ``tv``: TV-regularised least squares and ``adjoint``:
``clip(A^+ y)``, neither using the network); ``build_from_preset(name_or_path, **overrides)`` makes one from a
``configs/solvers`` preset. Every solver has
``solve(y, operator, generator, *, seed=None, z_init=None) -> SolverOutput``.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Any

from .adjoint import Adjoint
from .base import SOLVERS, Solver, SolverOutput, register
from .daps import DAPS
from .ddrm import DDRM
from .diffpir import DiffPIR
from .dmilo import DMILO
from .dmilo_pgd import DMILOPGD, FIDELITY_STEPS
from .dmplug import DMPlug
from .dps import DPS
from .numerics import per_sample_mean_square, per_sample_sum_square
from .pigdm import PiGDM
from .presets import available_presets, load_solver_preset, resolve_solver_preset, task_solver_preset
from .reddiff import REDDiff
from .selection import SELECTION_RULES, SelectionRule, build_selection
from .tv import TV

# every module of this package is imported, so a new solver module registers itself (@register)
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "SOLVERS",
    "register",
    "DMILO",
    "DMILOPGD",
    "DMPlug",
    "DiffPIR",
    "DPS",
    "DDRM",
    "DAPS",
    "PiGDM",
    "REDDiff",
    "Adjoint",
    "TV",
    "FIDELITY_STEPS",
    "SELECTION_RULES",
    "SelectionRule",
    "Solver",
    "SolverOutput",
    "available_presets",
    "build",
    "build_from_preset",
    "build_selection",
    "check_solver_name",
    "load_solver_preset",
    "resolve_solver_preset",
    "task_solver_preset",
    "solver_parameters",
    "per_sample_mean_square",
    "per_sample_sum_square",
]


def check_solver_name(name: str) -> None:
    """``ValueError`` listing the registry unless ``name`` is a registered solver."""
    if name not in SOLVERS:
        raise ValueError(f"solver name must be one of {sorted(SOLVERS)}, got {name!r}.")


def solver_parameters(name: str) -> list[str]:
    """The keyword hyperparameters the solver ``name`` takes (its class's and its bases')."""
    check_solver_name(name)
    names: list[str] = []
    for cls in getattr(SOLVERS[name], "__mro__", (SOLVERS[name],)):
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        for p in inspect.signature(init).parameters.values():
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name != "self" and p.name not in names:
                names.append(p.name)
    return names


def build(name: str, **hyperparameters: Any) -> Solver:
    """A solver by registry name with its keyword hyperparameters.

    Raises:
        ValueError: an unknown solver name, or hyperparameters the solver does not take (the
            valid names are listed).
    """
    valid = solver_parameters(name)
    unknown = sorted(set(hyperparameters) - set(valid))
    if unknown:
        raise ValueError(
            f"solver {name!r} takes no parameter {', '.join(map(repr, unknown))}; its parameters are {sorted(valid)}."
        )
    return SOLVERS[name](**hyperparameters)


def build_from_preset(name_or_path: str | Path, **overrides: Any) -> Solver:
    """A solver from a ``configs/solvers`` preset, with keyword overrides of its parameters."""
    preset = load_solver_preset(name_or_path)
    return build(preset["solver"], **{**preset["params"], **overrides})
