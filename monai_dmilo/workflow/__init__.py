"""The bundle workflows' run-time machinery (what ``bundle/configs/*.yaml`` call), not the library API:

* :mod:`~monai_dmilo.workflow.presets`: reading the YAML presets of ``configs/``;
* :mod:`~monai_dmilo.workflow.tasks`: task presets (operator, simulation, noise, solver family);
* :mod:`~monai_dmilo.workflow.preflight`: every check before anything is written;
* :mod:`~monai_dmilo.workflow.provenance`: what a measurement datalist records (task, prior);
* :mod:`~monai_dmilo.workflow.run_dir`: the run folder (settings, resume, finished items);
* :mod:`~monai_dmilo.workflow.run_files`: atomic writes of run files;
* :mod:`~monai_dmilo.workflow.errors`: one-line messages instead of tracebacks for user errors;
* :mod:`~monai_dmilo.workflow.distributed`: device selection and torchrun helpers.

Submodules are imported on first use (``monai_dmilo.workflow.errors`` in a config expression).
"""
from __future__ import annotations

import importlib
import pkgutil

_SUBMODULES = {m.name for m in pkgutil.iter_modules(__path__)}


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
