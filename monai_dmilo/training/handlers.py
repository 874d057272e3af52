"""Ignite handlers a shipped prior needs: the loss log, the exported weights, a grid of samples."""
from __future__ import annotations

import csv
import os
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from monai_dmilo.priors.checkpoints import sha256_of

__all__ = ["LossCSVLogger", "StateDictExporter", "SampleGridSaver", "sample_images", "save_image_grid"]


class LossCSVLogger:
    """Append ``iteration, epoch, loss, elapsed_s, lr`` to a CSV file every ``interval`` iterations.

    The loss written is the mean over the iterations since the previous row. Appends when the file
    exists (so a resumed run continues the same log).
    """

    def __init__(self, path: str | os.PathLike, *, interval: int = 50) -> None:
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}.")
        self.path, self.interval = Path(path), int(interval)
        self._sum, self._count, self._start = 0.0, 0, time.time()

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            with self.path.open("w", newline="") as f:
                csv.writer(f).writerow(["iteration", "epoch", "loss", "elapsed_s", "lr"])
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._on_iteration)
        engine.add_event_handler(Events.COMPLETED, self._flush)

    def _on_iteration(self, engine: Any) -> None:
        self._sum += float(engine.state.output["loss"].detach())
        self._count += 1
        if engine.state.iteration % self.interval == 0:
            self._flush(engine)

    def _flush(self, engine: Any) -> None:
        if self._count == 0:
            return
        with self.path.open("a", newline="") as f:
            csv.writer(f).writerow(
                [engine.state.iteration, engine.state.epoch, f"{self._sum / self._count:.6f}",
                 f"{time.time() - self._start:.1f}", f"{engine.optimizer.param_groups[0]['lr']:.3e}"]
            )
        self._sum, self._count = 0.0, 0



class StateDictExporter:
    """Save ``network.state_dict()`` (plain tensors, CPU) to ``path`` every ``interval`` iterations and
    when training completes. Written to a temporary file and renamed, so readers never see half a file.

    With ``model_config`` (a dict with ``params``, ``image_shape``...), a model config YAML in the
    format of ``configs/models/*.yaml`` is written next to the checkpoint (same stem, ``.yaml``),
    with ``checkpoint`` (relative to the YAML) and ``sha256`` filled in, so that the trained prior
    plugs straight into the evaluate/inference workflows (``--model_config``).

    With ``keep_snapshots``, every save also keeps a copy ``snapshots/<stem>_it<iteration>.pt`` next
    to it, so that sample quality can be measured along the run (``benchmarks/prior_quality.py``).
    """

    def __init__(
        self,
        network: nn.Module,
        path: str | os.PathLike,
        *,
        interval: int = 500,
        model_config: dict[str, Any] | None = None,
        keep_snapshots: bool = False,
    ) -> None:
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}.")
        self.network, self.path, self.interval = network, Path(path), int(interval)
        self.model_config = dict(model_config) if model_config is not None else None
        self.keep_snapshots = bool(keep_snapshots)

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self.save)
        engine.add_event_handler(Events.COMPLETED, self.save)

    def save(self, engine: Any = None) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()}
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)
        if self.keep_snapshots and engine is not None:
            snapshot = self.path.parent / "snapshots" / f"{self.path.stem}_it{engine.state.iteration:07d}.pt"
            snapshot.parent.mkdir(exist_ok=True)
            shutil.copyfile(self.path, snapshot)
        if self.model_config is not None:
            import yaml

            config = {"name": self.path.stem, "architecture": "monai_unet", **self.model_config}
            config.update(checkpoint=self.path.name, sha256=sha256_of(self.path))
            yaml_path = self.path.with_suffix(".yaml")
            yaml_path.write_text(yaml.safe_dump(config, sort_keys=False, default_flow_style=None))
        return self.path


@torch.no_grad()
def sample_images(
    network: nn.Module,
    *,
    num_samples: int,
    image_shape: Sequence[int],
    num_steps: int = 50,
    seed: int = 0,
    num_train_timesteps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
) -> torch.Tensor:
    """DDIM samples ``(num_samples, C, H, W)`` in [-1, 1] from an epsilon-prediction network.

    Uses :class:`monai_dmilo.priors.stepwise.StepwiseDDIM` with evenly spaced timesteps; the network's
    train/eval mode and ``requires_grad`` flags are restored afterwards.
    """
    from monai_dmilo.priors.stepwise import StepwiseDDIM

    param = next(network.parameters())
    was_training = network.training
    flags = [p.requires_grad for p in network.parameters()]
    try:
        gen = StepwiseDDIM(
            network, num_steps=num_steps, schedule="uniform", image_shape=tuple(image_shape),
            num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end,
        )
        z = torch.randn((num_samples, *image_shape), generator=torch.Generator().manual_seed(seed))
        x = gen.sample(z.to(device=param.device, dtype=param.dtype))
    finally:
        network.train(was_training)
        for p, f in zip(network.parameters(), flags):
            p.requires_grad_(f)
    return x.clamp(-1.0, 1.0)


def save_image_grid(images: torch.Tensor, path: str | os.PathLike, *, ncol: int = 8) -> Path:
    """Save ``(N, C, H, W)`` images in [-1, 1] (C = 1 or 3) as one PNG grid with 2-pixel borders."""
    from PIL import Image

    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (N, 1|3, H, W), got {tuple(images.shape)}.")
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    n, c, h, w = x.shape
    ncol = min(ncol, n)
    nrow = -(-n // ncol)
    grid = np.zeros((nrow * (h + 2), ncol * (w + 2), c), dtype=np.uint8)
    for i in range(n):
        r, k = divmod(i, ncol)
        grid[r * (h + 2) + 1 : r * (h + 2) + 1 + h, k * (w + 2) + 1 : k * (w + 2) + 1 + w] = x[i].transpose(1, 2, 0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid[..., 0] if c == 1 else grid).save(path)
    return path


class SampleGridSaver:
    """When training completes, draw ``num_samples`` DDIM samples and save them as a PNG grid."""

    def __init__(
        self,
        network: nn.Module,
        path: str | os.PathLike,
        *,
        image_shape: Sequence[int],
        num_samples: int = 64,
        num_steps: int = 50,
        seed: int = 0,
        ncol: int = 8,
    ) -> None:
        self.network, self.path, self.image_shape = network, Path(path), tuple(image_shape)
        self.num_samples, self.num_steps, self.seed, self.ncol = num_samples, num_steps, seed, ncol

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.COMPLETED, self.save)

    def save(self, engine: Any = None) -> Path:
        x = sample_images(
            self.network, num_samples=self.num_samples, image_shape=self.image_shape,
            num_steps=self.num_steps, seed=self.seed,
        )
        return save_image_grid(x, self.path, ncol=self.ncol)
