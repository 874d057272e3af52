"""Per-image metrics (``metrics.csv``) and the run's summary (``summary.json`` / ``summary.md``)."""
from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np
import torch
from ignite.engine import Events
from monai.utils import CommonKeys as Keys

from monai_dmilo.workflow.distributed import barrier, rank_and_world_size
from monai_dmilo.operators.views import to_unit
from monai_dmilo.workflow.run_files import atomic_path
from monai_dmilo.checks import as_bool
from monai_dmilo.metrics import psnr, ssim

from .per_image import batch_value
from monai_dmilo.workflow.run_dir import METRICS_CSV, read_results

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["MetricsCSVWriter", "RunSummary", "load_lpips", "lpips_distance"]

logger = logging.getLogger(__name__)


def load_lpips(device: torch.device) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """LPIPS (AlexNet) if the ``lpips`` package and its weights are available, else ``None``."""
    try:
        import lpips  # type: ignore[import-not-found]
    except ImportError:
        logger.info("LPIPS skipped: the optional 'lpips' package is not installed (pip install lpips).")
        return None
    try:
        model = lpips.LPIPS(net="alex", verbose=False).to(device).eval()
    except (OSError, RuntimeError, ValueError) as err:  # weights missing / not downloadable offline
        logger.warning("LPIPS skipped: its weights could not be loaded (%s).", err)
        return None
    return model


def lpips_distance(model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], a: torch.Tensor,
                   b: torch.Tensor) -> torch.Tensor:
    """Per-sample LPIPS ``(B,)`` of images ``(B, C, H, W)`` in [-1, 1] (one channel is repeated to three)."""
    if a.shape[1] == 1:
        a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
    with torch.no_grad():
        return model(a, b).reshape(-1)


class MetricsCSVWriter:
    """Per-image metrics and run info appended to ``metrics.csv`` (one row per image).

    PSNR and SSIM (:mod:`monai_dmilo.metrics`: MONAI's metrics with their defaults) on images
    rescaled from [-1, 1] to [0, 1] (data range 1); LPIPS (AlexNet, inputs in [-1, 1]) is added only when the ``lpips``
    package and its weights are present. Without ground truth only ``nfe``, ``seconds`` and
    ``seed`` are written. NFE and the solve time come from ``engine.state.output["nfe"]`` and
    ``["seconds"]`` (:class:`~monai_dmilo.engines.InverseProblemEvaluator`; empty when absent).
    Also logs one line per image.

    Args:
        output_dir: the run directory.
        use_lpips: try LPIPS (``"auto"``: when available) or never (``False``).
    """

    def __init__(self, output_dir: str | Path, *, use_lpips: bool | str = "auto") -> None:
        self.output_dir = Path(output_dir)
        self.use_lpips = "auto" if str(use_lpips).lower() == "auto" else as_bool("use_lpips", use_lpips)
        self._lpips: Any = None
        self._lpips_tried = False
        self._count = 0
        self._total = 0

    @property
    def csv_path(self) -> Path:
        rank, world = rank_and_world_size()
        return self.output_dir / (METRICS_CSV if world == 1 else f"metrics.rank{rank}.csv")

    def attach(self, engine: Engine) -> None:
        if not engine.has_event_handler(self, Events.ITERATION_COMPLETED):
            engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.STARTED, self._on_started)

    def _on_started(self, engine: Engine) -> None:
        self._count = 0
        loader = engine.state.dataloader
        try:  # this process's share: the sampler's length (a DistributedSampler's shard)
            sampler = getattr(loader, "sampler", None)
            self._total = len(sampler) if sampler is not None else len(loader.dataset)  # type: ignore[arg-type]
        except (AttributeError, TypeError):
            self._total = 0

    def compute(self, pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample metrics ``{name: (B,)}`` of ``pred`` against ``target`` (both in [-1, 1])."""
        p, t = to_unit(pred), to_unit(target)
        values = {
            "psnr": psnr(p, t, data_range=1.0),
            "ssim": ssim(p, t, data_range=1.0),
        }
        if self.use_lpips and not self._lpips_tried:
            self._lpips_tried = True
            self._lpips = load_lpips(pred.device)
        if self._lpips is not None:
            values["lpips"] = lpips_distance(self._lpips, p * 2 - 1, t * 2 - 1)
        return values

    def __call__(self, engine: Engine) -> None:
        batch, output = engine.state.batch, engine.state.output
        pred = output[Keys.PRED].detach()
        target = output.get(Keys.LABEL)
        metrics = self.compute(pred, target.to(pred.device)) if target is not None else {}
        nfe, seconds = output.get("nfe"), output.get("seconds")
        per_image = None if seconds is None else float(seconds) / pred.shape[0]
        rows = []
        for b in range(pred.shape[0]):
            row: dict[str, Any] = {"name": str(batch_value(batch, "name", b))}
            row.update({k: f"{float(v[b]):.6f}" for k, v in metrics.items()})
            row["nfe"] = "" if nfe is None else int(nfe)
            row["seconds"] = "" if per_image is None else f"{per_image:.3f}"
            seed = batch_value(batch, "seed", b, "")
            row["seed"] = int(seed) if seed != "" else ""
            rows.append(row)
            self._count += 1
            shown = " ".join(f"{k.upper()} {float(v[b]):.3f}" for k, v in metrics.items())
            of = f"/{self._total}" if self._total else ""
            logger.info("image %d%s %s: %s NFE %s, %.1f s", self._count, of, row["name"], shown, row["nfe"], per_image or 0.0)
        self._append(rows)

    def _append(self, rows: list[dict[str, Any]]) -> None:
        """Add ``rows`` by rewriting the whole file under a temporary name and renaming it: an
        interrupt leaves the previous table or the new one, never a half-written row."""
        path = self.csv_path
        path.parent.mkdir(parents=True, exist_ok=True)
        old: list[dict[str, str]] = []
        fields = list(rows[0])
        if path.is_file() and path.stat().st_size > 0:
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                old = list(reader)
                fields = list(reader.fieldnames or []) + [k for k in fields if k not in (reader.fieldnames or [])]
        with atomic_path(path) as tmp:
            with tmp.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
                writer.writeheader()
                writer.writerows([*old, *rows])


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


class RunSummary:
    """At the end of a run: gather per-rank rows into ``metrics.csv`` (rank 0) and write
    ``summary.json`` and ``summary.md`` (mean ± std per metric, solver, task, seed, NFE, time).

    Args:
        output_dir: the run directory.
        settings: what to record about the run (task, solver, model, seed, device...).
    """

    def __init__(self, output_dir: str | Path, *, settings: Mapping[str, Any] | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.settings = dict(settings or {})
        self._start = time.perf_counter()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._on_started)
        engine.add_event_handler(Events.COMPLETED, self)

    def _on_started(self, engine: Engine) -> None:
        self._start = time.perf_counter()

    def __call__(self, engine: Engine | None = None) -> dict[str, Any] | None:
        elapsed = time.perf_counter() - self._start
        barrier()
        summary = None
        if rank_and_world_size()[0] == 0:
            self.merge_results()
            summary = self.write(elapsed)
        barrier()
        return summary

    def merge_results(self) -> Path:
        """Fold ``metrics.rank*.csv`` into ``metrics.csv`` (sorted by name) and delete them."""
        path = self.output_dir / METRICS_CSV
        partials = sorted(self.output_dir.glob("metrics.rank*.csv"))
        if not partials:
            return path
        rows = read_results(self.output_dir)
        fields: list[str] = []
        for row in rows:
            fields += [k for k in row if k not in fields]
        rows.sort(key=lambda r: r["name"])
        tmp = path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(path)
        for p in partials:
            p.unlink()
        return path

    def write(self, elapsed: float) -> dict[str, Any]:
        rows = read_results(self.output_dir)
        metrics: dict[str, dict[str, float]] = {}
        for key in ("psnr", "ssim", "lpips", "nfe", "seconds"):
            vals = [float(r[key]) for r in rows if r.get(key) not in (None, "")]
            if vals:
                mean, std = _mean_std(vals)
                metrics[key] = {"mean": mean, "std": std}
        summary = {
            **self.settings,
            "num_images": len(rows),
            "metrics": metrics,
            "wall_time_this_run_s": round(elapsed, 2),
        }
        with atomic_path(self.output_dir / "summary.json") as tmp:
            tmp.write_text(json.dumps(summary, indent=2, default=str))
        lines = ["| setting | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in self.settings.items()]
        lines += [f"| images | {len(rows)} |", f"| wall time of this run | {elapsed:.1f} s |", ""]
        if metrics:
            lines += ["| metric | mean ± std |", "|---|---|"]
            lines += [f"| {k.upper() if k != 'seconds' else 'seconds / image'} | {v['mean']:.4f} ± {v['std']:.4f} |" for k, v in metrics.items()]
        with atomic_path(self.output_dir / "summary.md") as tmp:
            tmp.write_text("\n".join(lines) + "\n")
        logger.info("summary of %d images written to %s", len(rows), self.output_dir / "summary.md")
        for key, v in metrics.items():
            logger.info("  %s: %.4f ± %.4f", key, v["mean"], v["std"])
        return summary
