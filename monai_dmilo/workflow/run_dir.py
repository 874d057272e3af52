"""The run directory: its checks before a run, its creation, and which images are done (resume)."""
from __future__ import annotations

import csv
import json
import logging
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

from monai_dmilo.checks import as_bool
from monai_dmilo.workflow.distributed import barrier, rank_and_world_size
from monai_dmilo.workflow.run_files import atomic_path, remove_run_files

__all__ = ["METRICS_CSV", "SETTINGS_JSON", "SLICES_DIR", "check_output_dir", "start_run", "read_results", "pending_items"]

logger = logging.getLogger(__name__)

METRICS_CSV = "metrics.csv"
SETTINGS_JSON = "run_settings.json"
SLICES_DIR = ".slices"
_OUR_FOLDERS = ("reconstructions", "panels", "measurements")


def check_output_dir(output_dir: str | Path, *, settings: Mapping[str, Any], overwrite: bool = False) -> str:
    """Check that ``output_dir`` can take this run; writes nothing (see :func:`start_run`).

    * a new or empty folder, or one from a run with the same settings (it resumes): accepted;
    * a folder from a run with other settings, or a non-empty folder that is not a run directory:
      ``ValueError`` unless ``overwrite``.

    Returns:
        ``output_dir`` as a string.
    """
    out = Path(output_dir)
    overwrite = as_bool("overwrite", overwrite)
    settings = json.loads(json.dumps(dict(settings), default=str))
    settings_file = out / SETTINGS_JSON
    if out.exists() and not out.is_dir():
        raise ValueError(f"output_dir {str(output_dir)!r} exists and is not a folder.")
    if overwrite:
        return str(out)
    existing = json.loads(settings_file.read_text()) if settings_file.is_file() else None
    if existing is not None and existing != settings:
        changed = sorted(k for k in set(existing) | set(settings) if existing.get(k) != settings.get(k))
        raise ValueError(
            f"output_dir {str(output_dir)!r} holds a run with other settings (differs in {changed}); "
            "choose another output_dir or pass --overwrite true."
        )
    if existing is None and out.is_dir() and any(out.iterdir()):
        raise ValueError(
            f"output_dir {str(output_dir)!r} is not empty and is not a monai_dmilo run directory; "
            "choose another output_dir or pass --overwrite true."
        )
    return str(out)


def start_run(output_dir: str | Path, *, settings: Mapping[str, Any], overwrite: bool = False) -> str:
    """Create the run directory and write ``run_settings.json``, after every check has passed.

    With ``overwrite``, the previous run's outputs are deleted first: its fixed-name files
    (``metrics.csv``, summaries, settings), its slice cache and the files its manifest lists
    (:mod:`monai_dmilo.workflow.run_files`); files a user put in ``reconstructions/`` etc. stay.
    """
    out = Path(output_dir)
    overwrite = as_bool("overwrite", overwrite)
    rank, _ = rank_and_world_size()
    settings = json.loads(json.dumps(dict(settings), default=str))
    if overwrite and rank == 0 and out.is_dir():
        for name in (METRICS_CSV, "summary.json", "summary.md", SETTINGS_JSON, *[p.name for p in out.glob("metrics.rank*.csv")]):
            (out / name).unlink(missing_ok=True)
        if (out / SLICES_DIR).is_dir():
            shutil.rmtree(out / SLICES_DIR)
        removed = remove_run_files(out, folders=_OUR_FOLDERS)
        logger.info("overwrite: removed %d files of the previous run in %s", removed, out)
    barrier()
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / SETTINGS_JSON) as tmp:
            tmp.write_text(json.dumps(settings, indent=2, sort_keys=True))
    barrier()
    return str(out)


def read_results(output_dir: str | Path) -> list[dict[str, str]]:
    """Rows of ``metrics.csv`` and of any per-rank partial files (resumed distributed runs)."""
    out = Path(output_dir)
    rows: dict[str, dict[str, str]] = {}
    for path in [out / METRICS_CSV, *sorted(out.glob("metrics.rank*.csv"))]:
        if path.is_file():
            with path.open(newline="") as f:
                for row in csv.DictReader(f):
                    rows[row["name"]] = row
    return list(rows.values())


def pending_items(items: Sequence[Mapping[str, Any]], output_dir: str | Path, *, overwrite: bool = False) -> list[dict]:
    """The items whose ``name`` has no row yet in the run's results (resume support); all with ``overwrite``."""
    done = set() if as_bool("overwrite", overwrite) else {row["name"] for row in read_results(output_dir)}
    todo = [dict(i) for i in items if i["name"] not in done]
    if done:
        logger.info("resuming in %s: %d of %d images already done", output_dir, len(items) - len(todo), len(items))
    return todo
