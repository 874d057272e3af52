"""Solvers: the algorithms only (docs/algorithms.md, sections 3-9). No I/O, no metrics, no ground truth.

``build(name, **hyperparameters)`` makes a solver by registry name (:data:`SOLVERS`, filled by
the ``@register(name)`` decorator of each solver module: ``dmilo``, ``dmilo_pgd``,
``dmplug``, ``dps``, ``ddrm``, ``daps``, ``diffpir``, ``pigdm``, ``reddiff``; ``tv``: TV-regularised least squares and
``pseudo_inverse``: ``clip(A^+ y)``, neither using the network; ``adjoint`` is its former name); ``build_from_preset(name_or_path, **overrides)`` makes one from a
``configs/solvers`` preset. Every solver has
``solve(y, operator, prior, *, seed=None, z_init=None) -> SolverOutput``.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Any

from .base import RENAMED_SOLVERS, SOLVERS, Solver, SolverOutput, current_solver_name, register
from .daps import DAPS
from .ddrm import DDRM
from .diffpir import DiffPIR
from .dmilo import DMILO
from .dmilo_pgd import DMILOPGD, FIDELITY_STEPS
from .dmplug import DMPlug
from .dps import DPS
from .numerics import per_sample_mean_square, per_sample_sum_square
from .pigdm import PiGDM
from .pseudo_inverse import PseudoInverse
from .presets import (available_presets, load_solver_preset, resolve_solver_preset, run_solver_preset,
                      task_solver_preset, validated_solver_preset)
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
    "PseudoInverse",
    "RENAMED_SOLVERS",
    "current_solver_name",
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
    "run_solver_preset",
    "validated_solver_preset",
    "solver_parameters",
    "per_sample_mean_square",
    "per_sample_sum_square",
]


def check_solver_name(name: str) -> None:
    """``ValueError`` listing the registry unless ``name`` is a registered solver (or a former name)."""
    if name not in SOLVERS and name not in RENAMED_SOLVERS:
        raise ValueError(f"solver name must be one of {sorted(SOLVERS)}, got {name!r}.")


def solver_parameters(name: str) -> list[str]:
    """The keyword hyperparameters the solver ``name`` takes (its class's and its bases')."""
    check_solver_name(name)
    name = RENAMED_SOLVERS.get(name, name) if name not in SOLVERS else name
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
    check_solver_name(name)
    name = current_solver_name(name)
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


def __getattr__(name: str) -> Any:
    if name == "Adjoint":  # the class's name before 0.5
        import warnings

        warnings.warn("monai_dmilo.solvers.Adjoint is now PseudoInverse.", FutureWarning, stacklevel=2)
        return PseudoInverse
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
