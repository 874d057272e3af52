"""The prior trainer: MONAI's ``SupervisedTrainer`` with the recipe's options and the handlers wired."""
from __future__ import annotations

import os
import shutil
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from monai_dmilo.priors.parameterization import PARAMETERIZATIONS, wrap_network

from .factory import build_ddpm_scheduler
from .handlers import LossCSVLogger, SampleGridSaver, StateDictExporter
from .recipe import LR_SCHEDULES, WeightedDiffusionInferer, WeightedPrepareBatch, lr_factor
from monai_dmilo.checks import as_bool

__all__ = ["create_prior_trainer", "train_prior"]


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
    lr_decay_start: int | None = None,
    min_snr_gamma: float | None = None,
    parameterization: str = "eps",
    keep_snapshots: bool = False,
    checkpoint_interval: int = 500,
    log_interval: int = 50,
    resume_from: str | os.PathLike | None = None,
    overwrite: bool = False,
    export_name: str = "model.pt",
    network_params: dict[str, Any] | None = None,
    intensity_window: Sequence[float] | None = None,
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
            (:func:`monai_dmilo.training.recipe.lr_factor`); the total is ``max_epochs`` epochs.
        lr_decay_start: iteration at which the decay begins (None: right after the warm-up); the
            rate is constant before it, e.g. to end a resumed constant-rate run with a cool-down.
        min_snr_gamma: Min-SNR-gamma loss weighting (None: the parameterization's plain MSE); see
            :mod:`monai_dmilo.training.recipe`.
        parameterization: ``"eps"`` (``network`` predicts eps) or ``"v"``: ``network`` predicts v
            inside :class:`monai_dmilo.priors.parameterization.VPredictionEps`, which outputs eps,
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
        intensity_window: the fixed ``(lo, hi)`` window the data loader mapped to [-1, 1] (None:
            min-max per image); recorded in the exported model config so that the workflows
            window their inputs the same way.
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
    total_iterations = max_epochs * (epoch_length if epoch_length is not None else len(train_data_loader))
    if lr_decay_start is not None and (
        not isinstance(lr_decay_start, int) or not 0 <= lr_decay_start < total_iterations
    ):
        raise ValueError(
            f"lr_decay_start must be None or an integer iteration in [0, {total_iterations}) "
            f"(max_epochs x epoch_length), got {lr_decay_start!r}."
        )
    if lr_decay_start is not None and lr_schedule == "constant":
        raise ValueError("lr_decay_start needs lr_schedule cosine or linear; with constant there is no decay.")
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be one of {sorted(PARAMETERIZATIONS)}, got {parameterization!r}.")

    output_dir = Path(output_dir)
    overwrite, keep_snapshots = as_bool("overwrite", overwrite), as_bool("keep_snapshots", keep_snapshots)
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

        lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, partial(lr_factor, schedule=lr_schedule, warmup=lr_warmup, total=total_iterations,
                               decay_start=lr_decay_start)
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
            "params": _yaml_value(network_params),
            "image_shape": [int(v) for v in image_shape],
            "schedule": {"num_train_timesteps": int(num_train_timesteps), "beta_start": float(beta_start),
                         "beta_end": float(beta_end)},
            "intensity": "images scaled to [-1, 1]",
        }
        if intensity_window is not None:
            lo, hi = (float(v) for v in intensity_window)
            model_config["intensity_window"] = [lo, hi]
            model_config["intensity"] = f"stored intensities [{lo:g}, {hi:g}] mapped to [-1, 1], outside clipped"
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


def _yaml_value(value: Any) -> Any:
    """Config values as plain YAML types (tuples -> lists, resolved bundle objects -> builtins)."""
    if isinstance(value, dict):
        return {str(k): _yaml_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_yaml_value(v) for v in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    raise TypeError(f"network_params values must be plain numbers, strings or lists, got {value!r}.")


def train_prior(**kwargs: Any) -> Any:
    """:func:`create_prior_trainer` followed by ``trainer.run()``; returns the trainer."""
    trainer = create_prior_trainer(**kwargs)
    trainer.run()
    return trainer
