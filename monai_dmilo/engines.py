"""Glue between data batches and the solver inferer in MONAI/Ignite evaluators.

``InverseProblemPrepareBatch`` turns a collated batch into the ``(inputs, targets, args, kwargs)``
tuple that ``monai.engines.SupervisedEvaluator`` passes on as
``inferer(inputs, network, *args, **kwargs)``: ``inputs`` is the measurement ``y``, ``targets``
the clean image (``None`` for real data) and ``kwargs`` the operator parameters plus per-sample
seeds. The other helpers pick the device, set up ``torch.distributed`` and turn user-input
errors into one clear line before any work starts.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.distributed as dist
from monai.engines.utils import PrepareBatch

from monai_dmilo.errors import exit_on_error
from monai_dmilo.yaml_presets import CONFIG_ROOT, find_preset, preset_names, read_yaml_mapping

__all__ = [
    "InverseProblemPrepareBatch",
    "exit_on_error",
    "select_device",
    "init_distributed",
    "is_distributed",
    "rank_and_world_size",
    "barrier",
    "available_tasks",
    "load_task",
    "run_evaluator",
    "log_run",
    "simulation_transform",
]

logger = logging.getLogger(__name__)


def _to_device(value: Any, device: torch.device | str | None, non_blocking: bool, **kwargs: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device=device, non_blocking=non_blocking, **kwargs)
    return value


class InverseProblemPrepareBatch(PrepareBatch):
    """Prepare a batch for ``SupervisedEvaluator`` + ``SolverInferer``.

    Args:
        measurement_key: the batch key of ``y`` ``(B, ...)``.
        image_key: the batch key of the ground-truth image ``(B, C, H, W)``; ``None`` (or absent
            from the batch) gives ``targets = None``.
        param_keys: batch keys forwarded to the inferer as operator parameters (``mask``,
            ``kernel``, ``coil_maps``...). Keys absent from a batch are skipped.
        seed_key: the batch key of per-sample integer seeds, forwarded as ``seed`` (a list of
            ints, one per sample); ``None`` to forward none.

    Returns (from ``__call__``):
        ``(y, x_or_None, (), {param: tensor, ..., "seed": [int, ...]})`` with tensors on ``device``.
    """

    def __init__(
        self,
        *,
        measurement_key: str = "y",
        image_key: str | None = "image",
        param_keys: Sequence[str] = (),
        seed_key: str | None = "seed",
    ) -> None:
        if isinstance(param_keys, str):
            param_keys = (param_keys,)
        self.measurement_key = measurement_key
        self.image_key = image_key
        self.param_keys = tuple(param_keys)
        self.seed_key = seed_key

    def __call__(
        self,
        batchdata: dict[str, Any],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None, tuple, dict[str, Any]]:
        if not isinstance(batchdata, dict):
            raise TypeError(f"batchdata must be a dict of collated items, got {type(batchdata).__name__}.")
        if self.measurement_key not in batchdata:
            raise KeyError(
                f"measurement_key {self.measurement_key!r} is not in the batch (keys: {sorted(batchdata)})."
            )
        y = _to_device(torch.as_tensor(batchdata[self.measurement_key]), device, non_blocking, **kwargs)
        target = None
        if self.image_key is not None and self.image_key in batchdata:
            target = _to_device(torch.as_tensor(batchdata[self.image_key]), device, non_blocking, **kwargs)
        extras: dict[str, Any] = {}
        for key in self.param_keys:
            if key in batchdata:
                extras[key] = _to_device(batchdata[key], device, non_blocking, **kwargs)
        if self.seed_key is not None and self.seed_key in batchdata:
            seeds = batchdata[self.seed_key]
            extras["seed"] = [int(s) for s in (seeds.tolist() if isinstance(seeds, torch.Tensor) else seeds)]
        return y, target, (), extras


def select_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/``None``: ``cuda:<LOCAL_RANK>`` when CUDA is available, else CPU; or the given device."""
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto' or a torch device string such as 'cpu', got {device!r}.") from None
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r} was asked for but this machine has no CUDA device; use 'cpu' or 'auto'.")
        if chosen.index is not None and chosen.index >= count:
            raise ValueError(f"device {device!r} does not exist: this machine has {count} CUDA device(s).")
    return chosen


def init_distributed(device: torch.device | str | None = None) -> int:
    """Initialise the default process group from ``torchrun``'s environment; return the rank.

    Backend: NCCL when ``device`` is CUDA, gloo otherwise. A no-op (rank 0) outside torchrun.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    if "WORLD_SIZE" not in os.environ:
        return 0
    device = select_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    logger.info("initialised torch.distributed (%s): rank %d of %d", backend, dist.get_rank(), dist.get_world_size())
    return dist.get_rank()


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world_size() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside ``torch.distributed``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """``dist.barrier()`` when distributed, else nothing."""
    if is_distributed():
        dist.barrier()


TASK_DIR = CONFIG_ROOT / "tasks"
_TASK_KEYS = {"name", "description", "operator", "operator_params", "simulation", "noise_sigma", "param_keys", "solver_task"}


def available_tasks() -> list[str]:
    """Names of the task presets in ``configs/tasks``."""
    return preset_names(TASK_DIR)


def load_task(name_or_path: str | Path) -> dict[str, Any]:
    """Read a task preset: a name in ``configs/tasks`` (``"inpainting"``) or a YAML file path.

    A preset holds ``operator`` (registry name), ``operator_params`` (fixed parameters),
    ``simulation`` (how evaluation draws per-image parameters such as masks and kernels),
    ``noise_sigma``, ``param_keys`` (per-image parameters the inferer receives) and
    ``solver_task`` (the ``configs/solvers/<solver_task>_<solver>.yaml`` family).

    Raises:
        ValueError: unknown name, unreadable file, missing or unknown keys.
    """
    path = find_preset(name_or_path, TASK_DIR, "task")
    data = read_yaml_mapping(path, "task preset")
    unknown = sorted(set(data) - _TASK_KEYS)
    if unknown:
        raise ValueError(f"task preset {path} has unknown keys {unknown}; expected keys among {sorted(_TASK_KEYS)}.")
    if not isinstance(data.get("operator"), str):
        raise ValueError(f"task preset {path} must name an 'operator', got {data.get('operator')!r}.")
    task = {
        "name": data.get("name", path.stem),
        "description": data.get("description", ""),
        "operator": data["operator"],
        "operator_params": dict(data.get("operator_params") or {}),
        "simulation": dict(data.get("simulation") or {}),
        "noise_sigma": float(data.get("noise_sigma", 0.0)),
        "param_keys": list(data.get("param_keys") or []),
        "solver_task": data.get("solver_task", path.stem),
    }
    if task["noise_sigma"] < 0:
        raise ValueError(f"task preset {path}: noise_sigma must be >= 0, got {task['noise_sigma']}.")
    return task


def run_evaluator(evaluator: Any) -> None:
    """Run an Ignite evaluator; with nothing to do (a finished run, or an empty shard of a
    distributed run) fire ``STARTED`` and ``COMPLETED`` so that end-of-run handlers (volume
    assembly, merging, summary, their barriers) still run.

    Ctrl-C (a ``KeyboardInterrupt``, also the one :class:`~monai_dmilo.inferers.SolverInferer`
    raises for an interrupted solve) ends the run with exit status 130; the unfinished batch has no
    files and no metrics row, so a rerun redoes exactly it and what came after."""
    from ignite.engine import Events

    loader = evaluator.data_loader
    if len(loader) > 0:
        try:
            evaluator.run()
        except KeyboardInterrupt:
            logger.warning("interrupted: nothing of the unfinished batch was saved; images already finished are "
                           "kept. Run the same command again to do the rest.")
            raise SystemExit(130) from None
        return
    logger.info("no images left to process in this run")
    evaluator.fire_event(Events.STARTED)
    evaluator.fire_event(Events.COMPLETED)


def log_run(all_items: Sequence[Any], pending: Sequence[Any], output_dir: str) -> int:
    """Log what this run will do (the bundles call it in ``initialize``, which also runs every
    check before any work starts); return the number of images to process."""
    done = len(all_items) - len(pending)
    logger.info(
        "%d images in the datalist, %d already done, %d to process; outputs in %s",
        len(all_items), done, len(pending), output_dir,
    )
    return len(pending)




def simulation_transform(
    task: dict[str, Any], *, image_key: str = "image", measurement_key: str = "y", seed_key: str = "seed"
) -> Any:
    """The transforms simulating ``task``'s measurement for one item, seeded by ``data[seed_key]``.

    Each entry ``key: {transform: <name>, **kwargs}`` of the preset's ``simulation`` becomes
    ``monai_dmilo.transforms.<name>(image_key, key, seed_key, **kwargs)`` (a per-image parameter
    such as a mask or a kernel written to ``data[key]``), followed by
    ``SimulateMeasurementd`` (operator + Gaussian noise of ``noise_sigma``) writing ``y``.
    Everything is drawn from the item's seed: an image gets the same measurement in any batch or
    process.

    Raises:
        ValueError: an unknown transform name or bad arguments in the preset.
    """
    from monai.transforms import Compose

    from monai_dmilo import transforms as T

    steps = []
    for key, spec in task["simulation"].items():
        name = spec.get("transform") if isinstance(spec, dict) else None
        factory = getattr(T, str(name), None) if name else None
        if factory is None or not isinstance(factory, type):
            raise ValueError(
                f"task {task['name']!r}: simulation of {key!r} must be a mapping with 'transform' naming a "
                f"monai_dmilo.transforms class (e.g. RandInpaintingMaskd), got {spec!r}."
            )
        kwargs = {k: v for k, v in spec.items() if k != "transform"}
        steps.append(factory(image_key, key, seed_key, **kwargs))
    sigma = task["noise_sigma"]
    steps.append(
        T.SimulateMeasurementd(
            image_key,
            operator=task["operator"],
            operator_params=task["operator_params"],
            param_keys={k: k for k in task["param_keys"]},
            noise="gaussian" if sigma > 0 else "none",
            sigma=sigma,
            measurement_key=measurement_key,
            seed_key=seed_key,
        )
    )
    return Compose(steps)
