"""Ignite handlers that write what an evaluation or inference run produces.

All results of one run live under one ``output_dir``:

* ``reconstructions/``: the estimate of each image in its input format (PNG -> PNG in [0, 255];
  NIfTI -> NIfTI with the source affine and header, volumes reassembled from their slices);
* ``panels/<name>.png``: measurement | reconstruction | ground truth | error (evaluation) or
  measurement | reconstruction (inference);
* ``metrics.csv``: one row per image (PSNR, SSIM, optional LPIPS, NFE, seconds, seed). A row is
  written last, after the image's files, so it marks the image as finished: a resumed run skips
  the names already there (:func:`pending_items`);
* ``summary.json`` / ``summary.md``: mean ± std per metric and the run's settings;
* ``run_settings.json``: the settings a resumed run must match.

Attach order matters: savers first, then :class:`MetricsCSVWriter`, then :class:`RunSummary`.
Under ``torch.distributed`` each rank writes ``metrics.rank<r>.csv``; :class:`RunSummary` merges
them into ``metrics.csv`` on rank 0 at the end (the gather), reassembles volumes and summarises.
"""
from __future__ import annotations

from .metrics import MetricsCSVWriter, RunSummary
from .panels import PanelSaver
from monai_dmilo.workflow.run_dir import METRICS_CSV, check_output_dir, pending_items, read_results, start_run
from .savers import MeasurementSaver, ReconstructionSaver

__all__ = [
    "METRICS_CSV",
    "check_output_dir",
    "start_run",
    "pending_items",
    "read_results",
    "ReconstructionSaver",
    "PanelSaver",
    "MetricsCSVWriter",
    "RunSummary",
    "MeasurementSaver",
]
