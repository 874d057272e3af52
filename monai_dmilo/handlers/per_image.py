"""What the per-image handlers share: reading one sample's value from a collated batch, and a
base class that calls ``write`` for every sample of an iteration."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import torch
from ignite.engine import Events
from monai.utils import CommonKeys as Keys

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["batch_value", "PerImageHandler"]


def batch_value(batch: Mapping[str, Any], key: str, index: int, default: Any = None) -> Any:
    if key not in batch:
        return default
    value = batch[key]
    if isinstance(value, (torch.Tensor, np.ndarray)):
        item = value[index]
        return item.item() if getattr(item, "ndim", 1) == 0 else item
    if isinstance(value, (list, tuple)):
        return value[index]
    return value


class PerImageHandler:
    """Base: runs :meth:`write` for every sample of every iteration."""

    def __init__(self, output_dir: str | Path, *, image_key: str = "image") -> None:
        self.output_dir = Path(output_dir)
        self.image_key = image_key

    def attach(self, engine: Engine) -> None:
        if not engine.has_event_handler(self, Events.ITERATION_COMPLETED):
            engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        batch = engine.state.batch
        output = engine.state.output
        pred = output[Keys.PRED]
        target = output.get(Keys.LABEL)
        for b in range(pred.shape[0]):
            self.write(engine, batch, b, pred[b : b + 1], None if target is None else target[b : b + 1])

    def write(self, engine: Engine, batch: Mapping, b: int, pred: torch.Tensor, target: torch.Tensor | None) -> None:
        raise NotImplementedError
