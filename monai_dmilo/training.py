"""Train a small unconditional diffusion prior with MONAI and Ignite components.

The pieces are MONAI's own: a ``DiffusionModelUNet`` (epsilon prediction), a ``DDPMScheduler``
(linear betas, 1000 steps), a ``DiffusionInferer`` and ``DiffusionPrepareBatch`` inside a
``monai.engines.SupervisedTrainer``. This module adds the handlers a prior needs to be shipped:

* :class:`LossCSVLogger`: ``iteration, epoch, loss, elapsed_s, lr`` rows in a CSV file;
* :class:`StateDictExporter`: the network's plain ``state_dict`` (the EMA copy when one is kept),
  written atomically every ``interval`` iterations and at the end (this is the file that ships);
* :class:`SampleGridSaver`: a PNG grid of DDIM samples when training completes;
* MONAI's ``CheckpointSaver`` / ``CheckpointLoader`` for a resumable training checkpoint
  (network, optimizer, EMA network and engine state; loaded with ``weights_only=True``).

:func:`create_prior_trainer` wires them; :func:`train_prior` also runs it. The bundle's
``train.yaml`` builds the same objects through ``_target_``.
"""
from __future__ import annotations

import csv
import os
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from monai.transforms import MapTransform, RandomizableTransform
from torch import nn

from monai_dmilo.checkpoints import sha256_of
from monai_dmilo.networks.parameterization import PARAMETERIZATIONS, wrap_network
from monai_dmilo.training_recipe import LR_SCHEDULES, WeightedDiffusionInferer, WeightedPrepareBatch, lr_factor

__all__ = [
    "build_diffusion_unet",
    "build_ddpm_scheduler",
    "ArrayImageDataset",
    "RandScaleFromFloord",
    "LossCSVLogger",
    "StateDictExporter",
    "SampleGridSaver",
    "create_prior_trainer",
    "train_prior",
    "sample_images",
    "save_image_grid",
]


def build_diffusion_unet(
    *,
    spatial_dims: int = 2,
    in_channels: int = 1,
    out_channels: int = 1,
    channels: Sequence[int] = (32, 64, 64),
    attention_levels: Sequence[bool] = (False, False, True),
    num_res_blocks: int = 1,
    num_head_channels: int = 32,
    norm_num_groups: int = 32,
    **kwargs: Any,
) -> nn.Module:
    """A MONAI ``DiffusionModelUNet`` with small defaults (about 2M parameters at 32x32)."""
    from monai.networks.nets import DiffusionModelUNet

    if len(channels) != len(attention_levels):
        raise ValueError(
            f"channels and attention_levels must have the same length, got {list(channels)} and "
            f"{list(attention_levels)}."
        )
    if not all(isinstance(a, bool) for a in attention_levels):
        raise TypeError(
            f"attention_levels must be booleans, got {list(attention_levels)} (on a command line write "
            f"[False, True], not [false, true])."
        )
    return DiffusionModelUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        channels=tuple(channels),
        attention_levels=tuple(attention_levels),
        num_res_blocks=num_res_blocks,
        num_head_channels=num_head_channels,
        norm_num_groups=norm_num_groups,
        **kwargs,
    )


def build_ddpm_scheduler(
    *, num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> Any:
    """MONAI ``DDPMScheduler`` with the DDPM linear beta schedule and epsilon prediction."""
    from monai.networks.schedulers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        schedule="linear_beta",
        beta_start=beta_start,
        beta_end=beta_end,
        prediction_type="epsilon",
    )


class ArrayImageDataset(torch.utils.data.Dataset):
    """In-memory images as ``{"image": (C, H, W) float tensor}`` items, with optional MONAI transforms.

    Args:
        images: array/tensor ``(N, H, W)`` or ``(N, C, H, W)``.
        scale: ``(lo, hi)`` of the stored intensities, mapped linearly to [-1, 1] after ``transform``.
        transform: a MONAI dictionary transform applied to ``{"image": (C, H, W) in [lo, hi]}``.
    """

    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        *,
        scale: Sequence[float] = (0.0, 1.0),
        transform: Any = None,
    ) -> None:
        data = torch.as_tensor(np.asarray(images))
        if data.ndim == 3:
            data = data[:, None]
        if data.ndim != 4:
            raise ValueError(f"images must have shape (N, H, W) or (N, C, H, W), got {tuple(data.shape)}.")
        lo, hi = (float(s) for s in scale)
        if not hi > lo:
            raise ValueError(f"scale must be (lo, hi) with hi > lo, got {tuple(scale)}.")
        self.data, self.lo, self.hi, self.transform = data, lo, hi, transform

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.data[index].float()
        if self.transform is not None:
            image = torch.as_tensor(self.transform({"image": image})["image"]).float()
            if hasattr(image, "as_tensor"):
                image = image.as_tensor()
        image = (image.clamp(self.lo, self.hi) - self.lo) / (self.hi - self.lo) * 2.0 - 1.0
        return {"image": image}


class RandScaleFromFloord(MapTransform, RandomizableTransform):
    """Random intensity scaling that keeps the background: ``floor + (x - floor) * (1 + f)``.

    ``f ~ U(-factor, factor)`` per call (with probability ``prob``), result clipped to
    ``[floor, ceiling]``. For images already in [-1, 1] with background -1 this is MONAI's
    ``RandScaleIntensity`` applied to the [0, 2] offset image, so the background stays at -1.

    Args:
        keys: keys of ``(C, H, W)`` tensors to scale (the same factor for all keys of one item).
        prob: probability of scaling an item.
        factor: largest relative change, in [0, 1).
        floor, ceiling: the intensity range (default [-1, 1]).
    """

    def __init__(
        self, keys: Any, *, prob: float = 0.5, factor: float = 0.15, floor: float = -1.0, ceiling: float = 1.0
    ) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        if not 0.0 <= float(factor) < 1.0:
            raise ValueError(f"factor must be in [0, 1), got {factor!r}.")
        if not float(ceiling) > float(floor):
            raise ValueError(f"ceiling must exceed floor, got floor={floor!r}, ceiling={ceiling!r}.")
        self.factor, self.floor, self.ceiling = float(factor), float(floor), float(ceiling)
        self._scale = 1.0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._scale = 1.0 + self.R.uniform(-self.factor, self.factor)

    def __call__(self, data: dict) -> dict:
        self.randomize()
        d = dict(data)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            x = torch.as_tensor(d[key])
            d[key] = (self.floor + (x - self.floor) * self._scale).clamp(self.floor, self.ceiling)
        return d


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

    Uses :class:`monai_dmilo.generator.StepwiseDDIM` with evenly spaced timesteps; the network's
    train/eval mode and ``requires_grad`` flags are restored afterwards.
    """
    from monai_dmilo.generator import StepwiseDDIM

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


def create_prior_trainer(
    *,
    network: nn.Module,
    train_data_loader: Any,
    max_epochs: int,
    output_dir: str | os.PathLike,
    image_shape: Sequence[int],
    epoch_length: int | None = None,
    device: str | torch.device | None = None,
    lr: float = 5e-4,
    weight_decay: float = 0.0,
    num_train_timesteps: int = 1000,
    beta_start: float = 1e-4,
    beta_end: float = 0.02,
    ema_decay: float | None = 0.999,
    lr_schedule: str = "constant",
    lr_warmup: int = 0,
    min_snr_gamma: float | None = None,
    parameterization: str = "eps",
    keep_snapshots: bool = False,
    checkpoint_interval: int = 500,
    log_interval: int = 50,
    resume_from: str | os.PathLike | None = None,
    overwrite: bool = False,
    export_name: str = "model.pt",
    network_params: dict[str, Any] | None = None,
    sample_grid: bool = True,
    num_grid_samples: int = 64,
    grid_steps: int = 50,
    seed: int = 0,
) -> Any:
    """Build a ``SupervisedTrainer`` that trains an epsilon-prediction DDPM prior.

    Each iteration draws ``t ~ U{0..T-1}`` and ``noise ~ N(0, I)`` (``DiffusionPrepareBatch``),
    the ``DiffusionInferer`` returns ``network(sqrt(abar_t) x + sqrt(1 - abar_t) noise, t)`` and the
    loss is the MSE to ``noise``. Batches are ``{"image": (B, C, H, W)}`` in [-1, 1].

    Files written under ``output_dir``: ``loss.csv``; ``checkpoint/`` (MONAI ``CheckpointSaver``:
    network, optimizer, EMA network, engine state — for ``resume_from``); ``export_name`` (plain
    ``state_dict`` of the EMA network, or the network when ``ema_decay`` is None); and
    ``samples.png`` at the end when ``sample_grid``.

    Args:
        network: the denoiser ``network(x, timesteps) -> eps``.
        train_data_loader: yields ``{"image": (B, C, H, W)}`` batches in [-1, 1].
        max_epochs: number of epochs.
        epoch_length: iterations per epoch (None: one pass over the loader); with a large dataset,
            ``max_epochs * epoch_length`` sets the total number of iterations.
        output_dir: where logs and checkpoints go.
        image_shape: ``(C, H, W)`` of generated images (sample grid).
        device: training device; defaults to the network's.
        lr, weight_decay: AdamW settings.
        num_train_timesteps, beta_start, beta_end: the DDPM linear schedule.
        ema_decay: decay of the exponential moving average of the weights (None: no EMA); warmed
            up as ``min(ema_decay, (1 + t) / (10 + t))`` at iteration ``t``.
        lr_schedule, lr_warmup: ``"constant"``, ``"cosine"`` or ``"linear"`` decay to 0 at the last
            iteration after ``lr_warmup`` linear warm-up iterations
            (:func:`monai_dmilo.training_recipe.lr_factor`); the total is ``max_epochs`` epochs.
        min_snr_gamma: Min-SNR-gamma loss weighting (None: the parameterization's plain MSE); see
            :mod:`monai_dmilo.training_recipe`.
        parameterization: ``"eps"`` (``network`` predicts eps) or ``"v"``: ``network`` predicts v
            inside :class:`monai_dmilo.networks.parameterization.VPredictionEps`, which outputs eps,
            trained with the v-MSE. The trained and exported module is the wrapper, so every consumer
            still reads eps; the exported model config records ``parameterization``.
        keep_snapshots: keep a copy of every export under ``snapshots/`` (quality along the run).
        checkpoint_interval: iterations between checkpoints and exports.
        log_interval: iterations between loss rows.
        resume_from: a checkpoint written by a previous run (``checkpoint/*.pt``); the run continues
            it and appends to its ``loss.csv``.
        overwrite: replace a previous run's files in ``output_dir``. Without it (and without
            ``resume_from``) an ``output_dir`` holding a run is refused, so nothing is lost.
        export_name: file name of the exported plain state_dict.
        network_params: the network's constructor arguments; when given, a model config YAML
            (``configs/models`` format) is written next to the exported state_dict.
        sample_grid, num_grid_samples, grid_steps: the final sample grid.
        seed: seeds the global RNGs (noise and timesteps are drawn by MONAI from torch's global RNG).

    Returns:
        the trainer; ``trainer.ema_network`` is the averaged network (or the network itself).
    """
    from monai.engines import SupervisedTrainer
    from monai.engines.utils import DiffusionPrepareBatch
    from monai.handlers import CheckpointLoader, CheckpointSaver
    from monai.utils import set_determinism

    if not isinstance(network, nn.Module):
        raise TypeError(f"network must be a torch.nn.Module, got {type(network).__name__}.")
    if not isinstance(max_epochs, int) or max_epochs < 1:
        raise ValueError(f"max_epochs must be a positive integer, got {max_epochs!r}.")
    if epoch_length is not None and (not isinstance(epoch_length, int) or epoch_length < 1):
        raise ValueError(f"epoch_length must be a positive integer or None, got {epoch_length!r}.")
    if len(tuple(image_shape)) != 3:
        raise ValueError(f"image_shape must be (C, H, W), got {tuple(image_shape)}.")
    if ema_decay is not None and not 0.0 < ema_decay < 1.0:
        raise ValueError(f"ema_decay must be in (0, 1) or None, got {ema_decay!r}.")
    if checkpoint_interval < 1:
        raise ValueError(f"checkpoint_interval must be >= 1, got {checkpoint_interval}.")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {lr_schedule!r}.")
    if not isinstance(lr_warmup, int) or lr_warmup < 0:
        raise ValueError(f"lr_warmup must be a non-negative integer, got {lr_warmup!r}.")
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be one of {sorted(PARAMETERIZATIONS)}, got {parameterization!r}.")

    output_dir = Path(output_dir)
    _claim_output_dir(output_dir, export_name, resume_from=resume_from, overwrite=overwrite)
    set_determinism(seed=seed)
    output_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device) if device is not None else next(network.parameters()).device
    schedule = {"num_train_timesteps": num_train_timesteps, "beta_start": beta_start, "beta_end": beta_end}
    network = wrap_network(network, parameterization, **schedule).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = build_ddpm_scheduler(
        num_train_timesteps=num_train_timesteps, beta_start=beta_start, beta_end=beta_end
    )
    if min_snr_gamma is None and parameterization == "eps":
        prepare_batch = DiffusionPrepareBatch(num_train_timesteps=num_train_timesteps)
    else:
        prepare_batch = WeightedPrepareBatch(
            num_train_timesteps, alphas_cumprod=scheduler.alphas_cumprod, min_snr_gamma=min_snr_gamma,
            parameterization=parameterization,
        )
    trainer = SupervisedTrainer(
        device=device,
        max_epochs=max_epochs,
        epoch_length=epoch_length,
        train_data_loader=train_data_loader,
        network=network,
        optimizer=optimizer,
        loss_function=torch.nn.MSELoss(),
        inferer=WeightedDiffusionInferer(scheduler),
        prepare_batch=prepare_batch,
        amp=False,
        decollate=False,
    )

    save_dict: dict[str, Any] = {"network": network, "optimizer": optimizer, "trainer": trainer}
    if lr_schedule != "constant" or lr_warmup > 0:
        from monai.handlers import LrScheduleHandler

        total = max_epochs * (epoch_length if epoch_length is not None else len(train_data_loader))
        lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, partial(lr_factor, schedule=lr_schedule, warmup=lr_warmup, total=total)
        )
        LrScheduleHandler(lr_scheduler, print_lr=False, epoch_level=False).attach(trainer)
        save_dict["lr_scheduler"] = lr_scheduler
    ema_network = network
    if ema_decay is not None:
        from ignite.engine import Events
        from ignite.handlers import EMAHandler

        ema = EMAHandler(network, momentum=1.0 - ema_decay)
        # Warm-up: decay_t = min(ema_decay, (1 + t) / (10 + t)), so that short runs are not dominated
        # by the random initial weights. Registered first: it runs before the EMA update.
        trainer.add_event_handler(Events.ITERATION_COMPLETED, _ema_warmup, ema_decay)
        ema.attach(trainer, name="ema_momentum", warn_if_exists=False)
        ema_network = ema.ema_model
        save_dict["ema_network"] = ema_network
    trainer.ema_network = ema_network

    if resume_from is not None:
        if not Path(resume_from).is_file():
            raise ValueError(f"resume_from must be an existing checkpoint file, got {str(resume_from)!r}.")
        CheckpointLoader(load_path=str(resume_from), load_dict=save_dict, map_location=device).attach(trainer)
    CheckpointSaver(
        save_dir=str(output_dir / "checkpoint"), save_dict=save_dict, save_interval=checkpoint_interval,
        epoch_level=False, n_saved=1, save_final=True, final_filename="checkpoint_final.pt",
    ).attach(trainer)
    LossCSVLogger(output_dir / "loss.csv", interval=log_interval).attach(trainer)
    model_config = None
    if network_params is not None:
        model_config = {
            "params": _plain(network_params),
            "image_shape": [int(v) for v in image_shape],
            "schedule": {"num_train_timesteps": int(num_train_timesteps), "beta_start": float(beta_start),
                         "beta_end": float(beta_end)},
            "intensity": "images scaled to [-1, 1]",
        }
        if parameterization != "eps":
            model_config["parameterization"] = parameterization
    StateDictExporter(
        ema_network, output_dir / export_name, interval=checkpoint_interval, model_config=model_config,
        keep_snapshots=keep_snapshots,
    ).attach(trainer)
    if sample_grid:
        SampleGridSaver(
            ema_network, output_dir / "samples.png", image_shape=image_shape,
            num_samples=num_grid_samples, num_steps=grid_steps, seed=seed,
        ).attach(trainer)
    return trainer


def _claim_output_dir(output_dir: Path, export_name: str, *, resume_from: Any, overwrite: bool) -> None:
    """Refuse to write over a previous training run unless resuming it or told to overwrite."""
    export = output_dir / export_name
    ours = [output_dir / "loss.csv", output_dir / "checkpoint", export, export.with_suffix(".yaml"),
            output_dir / "samples.png", output_dir / "snapshots"]
    found = [p for p in ours if p.exists()]
    if not found or resume_from is not None:
        return
    if not overwrite:
        raise ValueError(
            f"output_dir {str(output_dir)!r} holds a training run ({', '.join(p.name for p in found)}); "
            "pass --resume_from <its checkpoint> to continue it, --overwrite true to replace it, or another output_dir."
        )
    for p in found:
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


def _ema_warmup(engine: Any, ema_decay: float) -> None:
    it = engine.state.iteration
    engine.state.ema_momentum = 1.0 - min(ema_decay, (1.0 + it) / (10.0 + it))


def _plain(value: Any) -> Any:
    """Config values as plain YAML types (tuples -> lists, resolved bundle objects -> builtins)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    raise TypeError(f"network_params values must be plain numbers, strings or lists, got {value!r}.")


def train_prior(**kwargs: Any) -> Any:
    """:func:`create_prior_trainer` followed by ``trainer.run()``; returns the trainer."""
    trainer = create_prior_trainer(**kwargs)
    trainer.run()
    return trainer
