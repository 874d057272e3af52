"""The k-space workflow: every slice of every ``.h5`` in a folder (fastMRI layout or ISMRMRD / MRD)
reconstructed with a diffusion prior.

For each file (all files are read and checked before any work): retrospective undersampling when
asked (``acceleration``; a file that is already undersampled is taken as it is), the problem on the
prior's grid (:func:`~monai_dmilo.kspace.problem.build_problem`: crop, coil maps, phase, scale),
the classical references (:mod:`.classical`: zero-filled RSS, SENSE and CS-TV on the complex image
with the same maps, their weights by k-space cross-validation unless given) and the solver, all slices of the file in batches with per-slice seeds. Outputs in ``output_dir``:

* ``<file>.nii.gz``: the solver's magnitude volume ``(h, w, slices)`` with the voxel size from the
  header (scaled by the crop); ``references/<file>_<method>.nii.gz`` for the other methods;
* ``dicom/<file>/IM0001.dcm ...``: the solver's volume as a DICOM MR series;
* ``panels/<file>.png``: rows = slices, columns = zero-filled | SENSE | CS-TV | solver | reference;
* ``processing/<file>.json``: what was done (matrix crop, undersampling, coil maps, phase, scale);
* ``kspace_metrics.csv`` (one row per slice and method: PSNR/SSIM against the file's reference,
  brought to the same grid, when the file holds one) and ``kspace_summary.json``.

With ``dicom_destination`` (``HOST:PORT:AET``) each file's DICOM series is sent to that PACS with
C-STORE as soon as the file is finished (:mod:`monai_dmilo.data.pacs`); ``dicom_sent.json`` records
what was stored where. A refused or unreachable destination costs nothing: the files stay on disk,
the run goes on, it ends with one line saying how many series were not sent, and a rerun of the
same command sends them.

A rerun with the same settings skips the files already done; other settings need ``overwrite``.
"""
from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from monai_dmilo.seeds import seed_from_name
from ..handlers import check_output_dir, start_run
from ..operators.mri import MRI
from monai_dmilo.workflow.run_files import save_run_file
from .problem import MagnitudeProblem, build_problem, crop_image_lowpass, undersample
from .reader import KspaceFile, describe_mask, read_kspace_file
from monai_dmilo.checks import as_bool

__all__ = ["check_options", "list_kspace_files", "reconstruct_file", "run_kspace"]

logger = logging.getLogger(__name__)

METRICS_CSV = "kspace_metrics.csv"
SENT_JSON = "dicom_sent.json"
METHODS = ("zero_filled", "sense", "cs_tv")  # the classical references, before the solver
OPTION_DEFAULTS = {"acceleration": None, "center_fraction": 0.08, "pattern": "equispaced", "coil_maps": "lowres",
                   "batch_size": 8, "sense_tikhonov": "auto", "cs_tv_lam": "auto"}


def list_kspace_files(dataset_dir: str | Path, max_files: int | None = None) -> list[Path]:
    """The ``.h5`` files of ``dataset_dir`` (sorted).

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: it holds no ``.h5`` file.
    """
    folder = Path(dataset_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset_dir {str(dataset_dir)!r} is not an existing folder.")
    files = sorted(folder.glob("*.h5"))
    if not files:
        raise ValueError(f"dataset_dir {str(dataset_dir)!r} holds no .h5 (fastMRI-layout or ISMRMRD / MRD k-space) files.")
    return files[:max_files] if max_files else files


def _check_item(item: KspaceFile, acceleration: float | None, coil_maps: str) -> None:
    """What the options need from a file: fully sampled k-space for retrospective undersampling,
    a ``sensitivity_maps`` dataset for ``coil_maps='file'``."""
    native, _ = describe_mask(item.mask)
    if acceleration is not None and native > 1.0:
        raise ValueError(
            f"k-space file {item.name!r} is already undersampled (acceleration {native:.2f}); "
            "drop acceleration to reconstruct it as acquired."
        )
    if coil_maps == "file" and item.maps is None:
        raise ValueError(f"coil_maps='file' but k-space file {item.name!r} holds no 'sensitivity_maps' dataset.")


def _prepare_kspace(item: KspaceFile, acceleration: float | None, center_fraction: float, pattern: str,
                    seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """The k-space to reconstruct, its mask and how it was obtained."""
    if acceleration is None:
        return item.kspace, item.mask, f"as acquired (acceleration {describe_mask(item.mask)[0]:.2f})"
    kspace, mask = undersample(item.kspace, acceleration, center_fraction, pattern=pattern,
                               seed=seed_from_name(item.name, seed))
    return kspace, mask, f"retrospective {pattern} {acceleration}x, centre {center_fraction}"


def _solve(problem: MagnitudeProblem, solver: Any, prior: Any, seeds: list[int], batch_size: int) -> torch.Tensor:
    """The solver's images ``(S, 1, h, w)`` in [-1, 1], in batches of slices."""
    device = next(prior.parameters()).device
    out = []
    maps = problem.operator.coil_maps
    for start in range(0, problem.y.shape[0], batch_size):
        chunk = slice(start, start + batch_size)
        operator = MRI(problem.operator.mask.to(device), coil_maps=maps[chunk].to(device))
        result = solver.solve(problem.y[chunk].to(device), operator, prior, seed=seeds[chunk])
        out.append(result.x.detach().cpu())
    return torch.cat(out)


def _metrics(images: np.ndarray, reference: np.ndarray | None) -> list[dict[str, float]]:
    """Per-slice PSNR/SSIM (:mod:`monai_dmilo.metrics`, data range = the reference volume's maximum)."""
    if reference is None:
        return [{} for _ in images]
    from monai_dmilo.metrics import psnr, ssim

    peak = float(reference.max())
    pred = torch.from_numpy(np.asarray(images, np.float32))[:, None]
    ref = torch.from_numpy(np.asarray(reference, np.float32))[:, None]
    values = zip(psnr(pred, ref, data_range=peak), ssim(pred, ref, data_range=peak))
    return [{"psnr": float(p), "ssim": float(s)} for p, s in values]


def _panel(columns: Mapping[str, np.ndarray], scores: Mapping[str, list[dict]], path: Path, output_dir: Path,
           tile: int = 96) -> None:
    """Rows = slices, one column per method, each labelled (with PSNR when known)."""
    from PIL import Image, ImageDraw

    names = list(columns)
    slices = next(iter(columns.values())).shape[0]
    peak = max(float(np.percentile(v, 99.5)) for v in columns.values()) or 1.0
    gap, header = 4, 14
    canvas = Image.new("L", (len(names) * (tile + gap), slices * (tile + header)), 255)
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(names):
        for s in range(slices):
            img = np.clip(columns[name][s] / peak, 0, 1)
            tile_img = Image.fromarray((img * 255).astype(np.uint8)).resize((tile, tile), Image.NEAREST)
            x0, y0 = c * (tile + gap), s * (tile + header)
            canvas.paste(tile_img, (x0, y0 + header))
            score = scores.get(name, [{}] * slices)[s].get("psnr")
            draw.text((x0 + 1, y0 + 1), name if score is None else f"{name} {score:.1f}", fill=0)
    save_run_file(output_dir, path, lambda tmp: canvas.save(tmp, format="PNG"))


def _write_nifti(volume: np.ndarray, spacing: Sequence[float], path: Path, output_dir: Path) -> None:
    import nibabel as nib

    affine = np.diag([*(float(s) for s in spacing), 1.0])
    data = np.ascontiguousarray(np.transpose(volume, (1, 2, 0)), dtype=np.float32)  # (h, w, slices)
    save_run_file(output_dir, path, lambda tmp: nib.save(nib.Nifti1Image(data, affine), str(tmp)))


def reconstruct_file(
    item: KspaceFile, *, prior: Any, solver: Any, solver_name: str, output_dir: str | Path,
    acceleration: float | None = None, center_fraction: float = 0.08, pattern: str = "equispaced",
    coil_maps: str = "lowres", use_phase: bool = True, seed: int = 0, batch_size: int = 8,
    write_dicom: bool = True, sense_tikhonov: float | str = "auto", cs_tv_lam: float | str = "auto",
) -> list[dict[str, Any]]:
    """Reconstruct one file (see the module docstring); returns its metrics rows."""
    output_dir = Path(output_dir)
    start = time.perf_counter()
    size = tuple(prior.image_shape[-2:])
    _check_item(item, acceleration, coil_maps)
    kspace, mask, how = _prepare_kspace(item, acceleration, center_fraction, pattern, seed)
    maps = item.maps if coil_maps == "file" else None
    problem = build_problem(kspace, mask, size, coil_maps=coil_maps, maps=maps, use_phase=use_phase,
                            sense_tikhonov=sense_tikhonov, cs_tv_lam=cs_tv_lam, seed=seed)
    native_acceleration = describe_mask(mask)[0]
    logger.info("%s: %s; on the %dx%d grid acceleration %.2f with %d calibration columns, intensity scale %.4g",
                item.name, how, *size, problem.acceleration, problem.central, problem.scale)
    if coil_maps == "lowres" and problem.central < 5:
        logger.warning("%s: only %d calibration columns on the %dx%d grid: the lowres coil maps are poor; "
                       "coil_maps: jsense refines them with every acquired line (+1.7 dB SENSE, +5 dB CS-TV at 4x with "
                       "3 columns, docs/benchmarks/kspace_bart.md)", item.name, problem.central, *size)
    seeds = [seed_from_name(f"{item.name}_s{k:03d}", seed) for k in range(problem.y.shape[0])]
    images = {"zero_filled": problem.zero_filled.numpy(), "sense": problem.sense.numpy(), "cs_tv": problem.cs_tv.numpy()}
    images[solver_name] = problem.magnitude(_solve(problem, solver, prior, seeds, batch_size)).numpy()
    reference = crop_image_lowpass(item.reference, size) if item.reference is not None else None
    scores = {name: _metrics(v, reference) for name, v in images.items()}
    height, width = kspace.shape[-2:]
    row_mm, col_mm, slice_mm = item.spacing
    spacing = (row_mm * height / size[0] if row_mm else 1.0, col_mm * width / size[1] if col_mm else 1.0,
               slice_mm or 1.0)
    _write_nifti(images[solver_name], spacing, output_dir / f"{item.name}.nii.gz", output_dir)
    for name in METHODS:
        _write_nifti(images[name], spacing, output_dir / "references" / f"{item.name}_{name}.nii.gz", output_dir)
    if reference is not None:
        _write_nifti(reference, spacing, output_dir / "references" / f"{item.name}_reference.nii.gz", output_dir)
    if write_dicom:
        import pydicom

        from .dicom import dicom_series

        description = f"monai_dmilo {solver_name} ({how})"
        for name, ds in dicom_series(images[solver_name], spacing=spacing, description=description,
                                     uid_seed=f"{item.name}|{solver_name}|{seed}", attributes=item.dicom,
                                     patient_id=str(item.attrs.get("patient_id", "anonymous"))):
            save_run_file(output_dir, output_dir / "dicom" / item.name / name,
                          lambda tmp, ds=ds: pydicom.dcmwrite(tmp, ds, enforce_file_format=True))
    record = {
        "kspace": list(item.kspace.shape), "grid": list(size),
        "matrix": (f"centre crop of k-space {height}x{width} -> {size[0]}x{size[1]} (the whole field of view at "
                   f"{height / size[0]:g} x {width / size[1]:g} coarser pixels)") if (height, width) != size else "none",
        "undersampling": how, "mask": item.mask_source, "acceleration_native": native_acceleration,
        "acceleration_grid": problem.acceleration, "calibration_columns": problem.central, "coil_maps": coil_maps,
        "phase": "calibration phase held fixed" if use_phase else "none (real image)",
        "intensity_scale": problem.scale, "voxel_mm": list(spacing), "solver": solver_name, "seeds": seeds,
        "reference_weights": problem.weights, "format": item.attrs.get("format", "fastmri"),
        **({"noise": item.attrs["whitening"]} if "whitening" in item.attrs else {}),
    }
    text = json.dumps(record, indent=2)
    save_run_file(output_dir, output_dir / "processing" / f"{item.name}.json", lambda tmp: tmp.write_text(text))
    columns = dict(images, **({"reference": reference} if reference is not None else {}))
    _panel(columns, scores, output_dir / "panels" / f"{item.name}.png", output_dir)
    rows = []
    for k in range(problem.y.shape[0]):
        parts = [f"{n} {scores[n][k]['psnr']:.2f}" for n in images if scores[n][k]]
        logger.info("%s slice %d: %s", item.name, k, " | ".join(parts) if parts else "no reference")
        for name in images:
            rows.append({"file": item.name, "slice": k, "method": name, **scores[name][k],
                         "acceleration_native": round(native_acceleration, 3),
                         "acceleration_grid": round(problem.acceleration, 3)})
    logger.info("%s done in %.1f s", item.name, time.perf_counter() - start)
    return rows


def _append_rows(output_dir: Path, rows: list[dict[str, Any]]) -> None:
    path = output_dir / METRICS_CSV
    fields = ["file", "slice", "method", "psnr", "ssim", "acceleration_native", "acceleration_grid"]
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def _summary(output_dir: Path) -> dict[str, Any]:
    """Mean +- std PSNR/SSIM per method over every slice in the metrics file."""
    with (output_dir / METRICS_CSV).open() as f:
        rows = list(csv.DictReader(f))
    summary: dict[str, Any] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        entry: dict[str, Any] = {"slices": sum(r["method"] == method for r in rows)}
        for metric in ("psnr", "ssim"):
            values = [float(r[metric]) for r in rows if r["method"] == method and r[metric]]
            if values:
                entry[metric] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
        summary[method] = entry
    text = json.dumps(summary, indent=2)
    save_run_file(output_dir, output_dir / "kspace_summary.json", lambda tmp: tmp.write_text(text))
    return summary


def _send_series(out: Path, names: list[str], destination: str) -> list[str]:
    """C-STORE ``out/dicom/<name>/`` for each name not yet recorded as sent to ``destination``;
    returns the names that could not be sent (each failure logged in one line)."""
    from ..data.pacs import PacsError, send_files

    ledger_path = out / SENT_JSON
    ledger = json.loads(ledger_path.read_text()) if ledger_path.exists() else {}
    sent = ledger.setdefault(destination, [])
    failed = []
    for name in names:
        files = sorted((out / "dicom" / name).glob("*.dcm"))
        if name in sent or not files:
            continue
        try:
            count = send_files(files, destination)
        except PacsError as err:
            logger.warning("%s: DICOM series not sent: %s", name, err)
            failed.append(name)
            continue
        sent.append(name)
        text = json.dumps(ledger, indent=2)
        save_run_file(out, ledger_path, lambda tmp: tmp.write_text(text))
        logger.info("%s: %d DICOM instances stored on %s", name, count, destination)
    return failed


def check_options(*, acceleration: float | None, center_fraction: float, pattern: str, coil_maps: str,
                  batch_size: int, sense_tikhonov: float | str, cs_tv_lam: float | str) -> None:
    """One clear error for a bad workflow option, before any file is read."""
    from ..operators.masks import KSPACE_PATTERNS
    from .classical import check_weight
    from .coils import COIL_MAP_METHODS

    if acceleration is not None and (isinstance(acceleration, bool) or not isinstance(acceleration, (int, float))
                                     or not acceleration > 1):
        raise ValueError(f"acceleration must be a number > 1 or null (as acquired), got {acceleration!r}.")
    if isinstance(center_fraction, bool) or not isinstance(center_fraction, (int, float)) or not 0 < center_fraction <= 1:
        raise ValueError(f"center_fraction must be in (0, 1], got {center_fraction!r}.")
    if pattern not in KSPACE_PATTERNS:
        raise ValueError(f"pattern must be one of {list(KSPACE_PATTERNS)}, got {pattern!r}.")
    if coil_maps not in (*COIL_MAP_METHODS, "file"):
        raise ValueError(f"coil_maps must be one of {[*COIL_MAP_METHODS, 'file']}, got {coil_maps!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    check_weight("sense_tikhonov", sense_tikhonov)
    check_weight("cs_tv_lam", cs_tv_lam)


def run_kspace(
    dataset_dir: str | Path, output_dir: str | Path, *, prior: Any, solver: Any, solver_name: str,
    settings: Mapping[str, Any], overwrite: bool = False, max_files: int | None = None,
    dicom_destination: str | None = None, **options: Any,
) -> dict[str, Any]:
    """Check the options and every file, then reconstruct the files not done yet; returns the
    summary per method."""
    check_options(**{**OPTION_DEFAULTS, **{k: options[k] for k in OPTION_DEFAULTS if k in options}})
    items = [read_kspace_file(p) for p in list_kspace_files(dataset_dir, max_files)]  # all checked first
    for item in items:
        _check_item(item, options.get("acceleration"), options.get("coil_maps", OPTION_DEFAULTS["coil_maps"]))
    overwrite = as_bool("overwrite", overwrite)
    if dicom_destination:
        from ..data.pacs import parse_peer

        dicom_destination = str(parse_peer(dicom_destination))
        if not as_bool("write_dicom", options.get("write_dicom", True)):
            raise ValueError("dicom_destination needs write_dicom: true (the series sent are the ones written).")
    for key in ("use_phase", "write_dicom"):
        if key in options:
            options[key] = as_bool(key, options[key])
    out = Path(check_output_dir(output_dir, settings=settings, overwrite=overwrite))
    start_run(out, settings=settings, overwrite=overwrite)
    if overwrite:
        (out / METRICS_CSV).unlink(missing_ok=True)
    done = set()
    if (out / METRICS_CSV).exists():
        with (out / METRICS_CSV).open() as f:
            done = {r["file"] for r in csv.DictReader(f)}
    todo = [i for i in items if i.name not in done]
    logger.info("%d k-space files, %d already done, %d to reconstruct; outputs in %s", len(items),
                len(items) - len(todo), len(todo), out)
    unsent = _send_series(out, [i.name for i in items if i.name in done], dicom_destination) if dicom_destination else []
    for item in todo:
        try:
            rows = reconstruct_file(item, prior=prior, solver=solver, solver_name=solver_name,
                                    output_dir=out, **options)
        except KeyboardInterrupt:
            logger.warning("interrupted during %s: it has no metrics rows and is redone by the same command; the "
                           "files finished before it are kept.", item.name)
            raise SystemExit(130) from None
        _append_rows(out, rows)
        if dicom_destination:
            unsent += _send_series(out, [item.name], dicom_destination)
    summary = _summary(out)
    for method, entry in summary.items():
        if "psnr" in entry:
            logger.info("%-12s PSNR %.2f +- %.2f dB, SSIM %.3f +- %.3f over %d slices", method,
                        entry["psnr"]["mean"], entry["psnr"]["std"], entry["ssim"]["mean"], entry["ssim"]["std"],
                        entry["slices"])
    if unsent:
        from ..data.pacs import PacsError

        raise PacsError(f"{len(unsent)} DICOM series not sent to {dicom_destination} ({', '.join(unsent)}); they are "
                        f"in {out / 'dicom'}: rerun the same command to send them.")
    return summary
