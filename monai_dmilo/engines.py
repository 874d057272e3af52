"""Glue between data batches and the solver inferer in MONAI/Ignite evaluators.

``InverseProblemPrepareBatch`` turns a collated batch into the ``(inputs, targets, args, kwargs)``
tuple that ``monai.engines.SupervisedEvaluator`` passes on as
``inferer(inputs, network, *args, **kwargs)``: ``inputs`` is the measurement ``y``, ``targets``
the clean image (``None`` for real data) and ``kwargs`` the batch's operator (built once, here)
plus per-sample seeds. ``InverseProblemEvaluator`` puts that operator and the solver's NFE and
time into ``engine.state.output`` for the handlers. :func:`run_evaluator` runs it (Ctrl-C: exit status 130, nothing half-saved) and
:func:`log_run` says what a run will do. Devices and ``torch.distributed``:
:mod:`monai_dmilo.workflow.distributed`; task presets: :mod:`monai_dmilo.workflow.tasks`.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
from monai.engines import SupervisedEvaluator
from monai.engines.utils import PrepareBatch

from monai_dmilo.operators import batch_keys, build_from_batch

__all__ = ["InverseProblemPrepareBatch", "InverseProblemEvaluator", "run_evaluator", "log_run"]

logger = logging.getLogger(__name__)


def _to_device(value: Any, device: torch.device | str | None, non_blocking: bool, **kwargs: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device=device, non_blocking=non_blocking, **kwargs)
    return value


class InverseProblemPrepareBatch(PrepareBatch):
    """Prepare a batch for :class:`InverseProblemEvaluator` + ``SolverInferer``: the operator is
    built here, once per batch, from the task's fixed parameters and the per-sample parameters its
    class declares (``batch_keys``: mask, kernel, coil maps, angles), and handed to the inferer.

    Args:
        operator: the operator's registry name, or ``None`` for blind solvers that build their own.
        operator_params: its fixed parameters (batch values override them).
        measurement_key: the batch key of ``y`` ``(B, ...)``.
        image_key: the batch key of the ground-truth image ``(B, C, H, W)``; ``None`` (or absent
            from the batch) gives ``targets = None``.
        seed_key: the batch key of per-sample integer seeds, forwarded as ``seed`` (a list of
            ints, one per sample); ``None`` to forward none.

    Returns (from ``__call__``):
        ``(y, x_or_None, (), {"operator": A, "seed": [int, ...]})`` with tensors and ``A`` on ``device``.
    """

    def __init__(
        self,
        *,
        operator: str | None = None,
        operator_params: dict[str, Any] | None = None,
        measurement_key: str = "y",
        image_key: str | None = "image",
        seed_key: str | None = "seed",
    ) -> None:
        if operator is not None and not isinstance(operator, str):
            raise TypeError(f"operator must be a registry name or None, got {type(operator).__name__}.")
        self.operator = operator
        self.operator_params = dict(operator_params or {})
        self.measurement_key = measurement_key
        self.image_key = image_key
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
        if self.operator is not None:  # its per-sample parameters on the device once, not at every call
            params = {k: _to_device(batchdata[k], device, non_blocking, **kwargs)
                      for k in batch_keys(self.operator) if k in batchdata}
            extras["operator"] = build_from_batch(self.operator, self.operator_params, params)
        if self.seed_key is not None and self.seed_key in batchdata:
            seeds = batchdata[self.seed_key]
            extras["seed"] = [int(s) for s in (seeds.tolist() if isinstance(seeds, torch.Tensor) else seeds)]
        return y, target, (), extras


class InverseProblemEvaluator(SupervisedEvaluator):
    """MONAI's ``SupervisedEvaluator`` whose ``engine.state.output`` also holds what handlers need
    from the solve: ``"operator"`` (the batch's ``A``), ``"nfe"`` (network evaluations per image)
    and ``"seconds"`` (the batch's solve time), taken from the ``SolverInferer``'s last call.
    Use it with ``decollate=False`` (handlers read batched tensors)."""

    def _iteration(self, engine: Any, batchdata: dict[str, Any]) -> dict:
        output = super()._iteration(engine, batchdata)
        solve = getattr(self.inferer, "last_output", None)
        output["operator"] = getattr(self.inferer, "last_operator", None)
        output["nfe"] = getattr(solve, "nfe", None)
        output["seconds"] = getattr(solve, "wall_time", None)
        return output


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
