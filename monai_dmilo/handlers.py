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

import csv
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Events
from monai.utils import CommonKeys as Keys

from monai_dmilo.data import image_format, read_dicom
from monai_dmilo.engines import barrier, rank_and_world_size
from monai_dmilo.run_files import atomic_path, remove_run_files, save_run_file

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = [
    "METRICS_CSV",
    "check_output_dir",
    "start_run",
    "prepare_output_dir",
    "pending_items",
    "read_results",
    "MEASUREMENT_VIEWS",
    "measurement_view",
    "ReconstructionSaver",
    "PanelSaver",
    "MetricsCSVWriter",
    "RunSummary",
    "MeasurementSaver",
]

logger = logging.getLogger(__name__)

METRICS_CSV = "metrics.csv"
SETTINGS_JSON = "run_settings.json"
SLICES_DIR = ".slices"
_OUR_FOLDERS = ("reconstructions", "panels", "measurements")


# --------------------------------------------------------------------------- run directory


def check_output_dir(output_dir: str | Path, *, settings: Mapping[str, Any], overwrite: bool = False) -> str:
    """Check that ``output_dir`` can take this run; writes nothing (see :func:`start_run`).

    * a new or empty folder, or one from a run with the same settings (it resumes): accepted;
    * a folder from a run with other settings, or a non-empty folder that is not a run directory:
      ``ValueError`` unless ``overwrite``.

    Returns:
        ``output_dir`` as a string.
    """
    out = Path(output_dir)
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
    (:mod:`monai_dmilo.run_files`); files a user put in ``reconstructions/`` etc. stay.
    """
    out = Path(output_dir)
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


def prepare_output_dir(output_dir: str | Path, *, settings: Mapping[str, Any], overwrite: bool = False) -> str:
    """:func:`check_output_dir` then :func:`start_run` (for scripts without separate checks)."""
    check_output_dir(output_dir, settings=settings, overwrite=overwrite)
    return start_run(output_dir, settings=settings, overwrite=overwrite)


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
    done = set() if overwrite else {row["name"] for row in read_results(output_dir)}
    todo = [dict(i) for i in items if i["name"] not in done]
    if done:
        logger.info("resuming in %s: %d of %d images already done", output_dir, len(items) - len(todo), len(items))
    return todo


# --------------------------------------------------------------------------- per-sample access


def _batch_value(batch: Mapping[str, Any], key: str, index: int, default: Any = None) -> Any:
    if key not in batch:
        return default
    value = batch[key]
    if isinstance(value, (torch.Tensor, np.ndarray)):
        item = value[index]
        return item.item() if getattr(item, "ndim", 1) == 0 else item
    if isinstance(value, (list, tuple)):
        return value[index]
    return value


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clipped."""
    return ((x.detach().float() + 1.0) / 2.0).clamp(0.0, 1.0)


def _minmax(x: torch.Tensor) -> torch.Tensor:
    x = x.detach().float()
    dims = tuple(range(1, x.ndim))
    lo = x.amin(dim=dims, keepdim=True)
    hi = x.amax(dim=dims, keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-12)


# --------------------------------------------------------------------------- measurement display


def _resize_to(x: torch.Tensor, size: Sequence[int], mode: str) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    return F.interpolate(x, size=tuple(size), mode=mode, **kwargs)


def _view_image_domain(y: torch.Tensor, operator: Any, shape: Sequence[int]) -> torch.Tensor:
    """y already lives in image space (inpainting: masked image; blur: blurred image)."""
    return _to_unit(_resize_to(y.real if y.is_complex() else y, shape[-2:], "nearest"))


def _view_upsampled(y: torch.Tensor, operator: Any, shape: Sequence[int]) -> torch.Tensor:
    """Super-resolution: the low-resolution image shown at full size (nearest neighbour)."""
    return _to_unit(_resize_to(y, shape[-2:], "nearest"))


def _view_zero_filled(y: torch.Tensor, operator: Any, shape: Sequence[int]) -> torch.Tensor:
    """MRI: real part of the zero-filled reconstruction ``A^* y``, min-max scaled.

    The images are real and in [-1, 1] with a dark background at -1; a magnitude would fold that
    background to bright, the real part keeps the image's contrast (plus its aliasing).
    """
    x = operator.adjoint(y)
    x = x.real if x.is_complex() else x
    return _minmax(x)


def _view_sinogram(y: torch.Tensor, operator: Any, shape: Sequence[int]) -> torch.Tensor:
    """CT: the sinogram, resized to the image's size and min-max scaled."""
    y = y.real if y.is_complex() else y
    if y.ndim == 3:
        y = y.unsqueeze(1)
    return _minmax(_resize_to(y.float(), shape[-2:], "bilinear"))


def _view_default(y: torch.Tensor, operator: Any, shape: Sequence[int]) -> torch.Tensor:
    if tuple(y.shape[-2:]) == tuple(shape[-2:]) and not y.is_complex():
        return _to_unit(y)
    if getattr(operator, "linear", False):
        return _view_zero_filled(y, operator, shape)
    return _view_sinogram(y.abs() if y.is_complex() else y, operator, shape)


MEASUREMENT_VIEWS: dict[str, Callable[[torch.Tensor, Any, Sequence[int]], torch.Tensor]] = {
    "inpainting": _view_image_domain,
    "blur": _view_image_domain,
    "super_resolution": _view_upsampled,
    "mri": _view_zero_filled,
    "ct": _view_sinogram,
}


def measurement_view(y: torch.Tensor, operator_name: str, operator: Any, shape: Sequence[int]) -> torch.Tensor:
    """An image ``(B, C', H, W)`` in [0, 1] showing the measurement ``y`` for a panel.

    ``C'`` is 1 or the image's channel count. Unknown operators: ``y`` itself when it has the
    image's size, else ``|A^* y|`` for linear operators, else ``|y|`` resized.
    """
    view = MEASUREMENT_VIEWS.get(operator_name, _view_default)(y, operator, shape)
    if view.ndim == 3:
        view = view.unsqueeze(1)
    return view


# --------------------------------------------------------------------------- handlers


class _PerImageHandler:
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


def _to_original_range(x: torch.Tensor, lo: float, hi: float) -> np.ndarray:
    """``(1, C, H, W)`` in [-1, 1] -> ``(C, H, W)`` float32 in ``[lo, hi]``."""
    return (_to_unit(x)[0] * (hi - lo) + lo).cpu().numpy().astype(np.float32)


def _save_png(array: np.ndarray, path: Path) -> None:
    """Save ``(C, H, W)`` (C = 1 or 3) values in [0, 255] as an 8-bit PNG."""
    from PIL import Image

    img = np.clip(np.rint(array), 0, 255).astype(np.uint8)
    img = img[0] if img.shape[0] == 1 else np.moveaxis(img, 0, -1)
    Image.fromarray(img).save(path)


def _write_nifti(data: np.ndarray, source: str, path: Path) -> None:
    """Save ``data`` with the affine and header of ``source``, reshaped to the source's shape
    (a DICOM source: its series' RAS affine from MONAI's reader)."""
    import nibabel as nib

    if image_format(source) == "dicom":
        volume, affine = read_dicom(source)
        nib.Nifti1Image(data.reshape(volume.shape).astype(np.float32), affine).to_filename(str(path))
        return
    src = nib.load(source)
    header = src.header.copy()
    header.set_data_dtype(np.float32)
    img = nib.Nifti1Image(data.reshape(src.shape).astype(np.float32), src.affine, header=header)
    img.to_filename(str(path))


class ReconstructionSaver(_PerImageHandler):
    """Save each reconstruction in its input's format and intensity range.

    PNG inputs -> ``reconstructions/<name>.png``; 2D NIfTI -> ``<name>.nii.gz`` (affine/header kept);
    slices of a 3D volume -> ``.slices/<volume>/`` until :meth:`assemble_volumes` (called by
    :class:`RunSummary`, or at the end of the run) writes ``<volume>.nii.gz`` from all its slices.
    """

    def attach(self, engine: Engine) -> None:
        super().attach(engine)
        if not engine.has_event_handler(self._on_completed, Events.COMPLETED):
            engine.add_event_handler(Events.COMPLETED, self._on_completed)

    def write(self, engine: Engine, batch: Mapping, b: int, pred: torch.Tensor, target: torch.Tensor | None) -> None:
        name = str(_batch_value(batch, "name", b))
        fmt = str(_batch_value(batch, "format", b, "png"))
        lo = float(_batch_value(batch, "intensity_min", b, -1.0))
        hi = float(_batch_value(batch, "intensity_max", b, 1.0))
        source = str(_batch_value(batch, "image_path", b, ""))
        out = self.output_dir / "reconstructions"
        out.mkdir(parents=True, exist_ok=True)
        data = _to_original_range(pred, lo, hi)
        if fmt == "png":
            save_run_file(self.output_dir, out / f"{name}.png", lambda tmp: _save_png(data, tmp))
            return
        if fmt not in ("nifti", "dicom"):
            save_run_file(self.output_dir, out / f"{name}.npy", lambda tmp: np.save(tmp, data))
            return
        volume = str(_batch_value(batch, "volume", b, ""))
        if not volume:
            save_run_file(self.output_dir, out / f"{name}.nii.gz", lambda tmp: _write_nifti(data[0], source, tmp))
            return
        folder = self.output_dir / SLICES_DIR / volume
        folder.mkdir(parents=True, exist_ok=True)
        k = int(_batch_value(batch, "slice", b))
        with atomic_path(folder / f"s{k:05d}.npy") as tmp:
            np.save(tmp, data[0])
        meta = folder / "volume.json"
        if not meta.is_file():
            with atomic_path(meta) as tmp:
                tmp.write_text(json.dumps({"source": source, "num_slices": int(_batch_value(batch, "num_slices", b))}))

    def _on_completed(self, engine: Engine) -> None:
        barrier()
        if rank_and_world_size()[0] == 0:
            self.assemble_volumes()
        barrier()

    def assemble_volumes(self) -> list[Path]:
        """Write every volume whose slices are all saved; return the files written."""
        written = []
        root = self.output_dir / SLICES_DIR
        for folder in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else ():
            meta = json.loads((folder / "volume.json").read_text())
            slices = [folder / f"s{k:05d}.npy" for k in range(meta["num_slices"])]
            if not all(s.is_file() for s in slices):
                continue
            data = np.stack([np.load(s) for s in slices], axis=-1)
            target = self.output_dir / "reconstructions" / f"{folder.name}.nii.gz"
            save_run_file(self.output_dir, target, lambda tmp: _write_nifti(data, meta["source"], tmp))
            written.append(target)
        return written


class PanelSaver(_PerImageHandler):
    """Save ``panels/<name>.png``: measurement | reconstruction | ground truth | error.

    Without ground truth (inference) the panel is measurement | reconstruction. The error tile is
    ``|x - x_true|`` on the [0, 1] scale, multiplied by ``error_gain`` and clipped.

    Args:
        output_dir: the run directory.
        operator: the operator's registry name (picks how ``y`` is shown, see
            :data:`MEASUREMENT_VIEWS`).
        operator_params: the operator's fixed parameters (as given to the inferer).
        param_keys: batch keys holding per-sample operator parameters.
        measurement_key: the batch key of ``y``.
        error_gain: contrast of the error tile.
        min_tile_size: tiles are upscaled (nearest) to at least this many pixels.
    """

    def __init__(
        self,
        output_dir: str | Path,
        *,
        operator: str,
        operator_params: Mapping[str, Any] | None = None,
        param_keys: Sequence[str] = (),
        measurement_key: str = "y",
        error_gain: float = 2.0,
        min_tile_size: int = 128,
        image_key: str = "image",
    ) -> None:
        super().__init__(output_dir, image_key=image_key)
        self.operator = operator
        self.operator_params = dict(operator_params or {})
        self.param_keys = tuple(param_keys)
        self.measurement_key = measurement_key
        self.error_gain = float(error_gain)
        self.min_tile_size = int(min_tile_size)

    def __call__(self, engine: Engine) -> None:
        from monai_dmilo import operators

        batch = engine.state.batch
        pred = engine.state.output[Keys.PRED].detach()
        target = engine.state.output.get(Keys.LABEL)
        y = torch.as_tensor(batch[self.measurement_key]).to(pred.device)
        params = {k: torch.as_tensor(batch[k]).to(pred.device) for k in self.param_keys if k in batch}
        op = operators.build(self.operator, **self.operator_params, **params).to(pred.device)
        views = measurement_view(y, self.operator, op, pred.shape[1:])
        folder = self.output_dir / "panels"
        folder.mkdir(parents=True, exist_ok=True)
        for b in range(pred.shape[0]):
            tiles = [views[b], _to_unit(pred[b])]
            labels = ["measurement", "reconstruction"]
            if target is not None:
                truth = _to_unit(target[b])
                tiles += [truth, ((tiles[1] - truth).abs() * self.error_gain).clamp(0, 1)]
                labels += ["ground truth", "error"]
            name = str(_batch_value(batch, "name", b))
            self._save(tiles, labels, folder / f"{name}.png")

    def write(self, engine, batch, b, pred, target):  # pragma: no cover - __call__ is batched
        raise NotImplementedError

    def _save(self, tiles: list[torch.Tensor], labels: list[str], path: Path) -> None:
        from PIL import Image, ImageDraw

        height = tiles[1].shape[-2]
        scale = max(1, math.ceil(self.min_tile_size / height))
        rgb = []
        for t in tiles:
            t = t.float().cpu()
            t = t.expand(3, -1, -1) if t.shape[0] == 1 else t[:3]
            t = F.interpolate(t[None], scale_factor=scale, mode="nearest")[0]
            rgb.append((t.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
        gap, header = 4, 16
        h, w = rgb[0].shape[:2]
        canvas = Image.new("RGB", (len(rgb) * w + (len(rgb) - 1) * gap, h + header), "white")
        draw = ImageDraw.Draw(canvas)
        for i, (tile, label) in enumerate(zip(rgb, labels)):
            x0 = i * (w + gap)
            canvas.paste(Image.fromarray(tile), (x0, header))
            draw.text((x0 + 2, 2), label, fill="black")
        save_run_file(self.output_dir, path, lambda tmp: canvas.save(tmp, format="PNG"))


def _load_lpips(device: torch.device) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
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


class MetricsCSVWriter:
    """Per-image metrics and run info appended to ``metrics.csv`` (one row per image).

    PSNR and SSIM are MONAI's ``PSNRMetric``/``SSIMMetric`` on images rescaled from [-1, 1] to
    [0, 1] (data range 1); LPIPS (AlexNet, inputs in [-1, 1]) is added only when the ``lpips``
    package and its weights are present. Without ground truth only ``nfe``, ``seconds`` and
    ``seed`` are written. Also logs one line per image.

    Args:
        output_dir: the run directory.
        inferer: the ``SolverInferer`` (its ``last_output`` gives NFE and wall time), or ``None``.
        use_lpips: try LPIPS (``"auto"``: when available) or never (``False``).
    """

    def __init__(self, output_dir: str | Path, *, inferer: Any = None, use_lpips: bool | str = "auto") -> None:
        from monai.metrics import PSNRMetric, SSIMMetric

        self.output_dir = Path(output_dir)
        self.inferer = inferer
        self.use_lpips = use_lpips
        self._psnr = PSNRMetric(max_val=1.0, reduction="none")
        self._ssim = SSIMMetric(spatial_dims=2, data_range=1.0, reduction="none")
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
        p, t = _to_unit(pred), _to_unit(target)
        values = {
            "psnr": self._psnr(p, t).reshape(-1),
            "ssim": self._ssim(p, t).reshape(-1),
        }
        if self.use_lpips and not self._lpips_tried:
            self._lpips_tried = True
            self._lpips = _load_lpips(pred.device)
        if self._lpips is not None:
            with torch.no_grad():
                a, b = p * 2 - 1, t * 2 - 1
                if a.shape[1] == 1:
                    a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
                values["lpips"] = self._lpips(a, b).reshape(-1)
        return values

    def __call__(self, engine: Engine) -> None:
        batch = engine.state.batch
        pred = engine.state.output[Keys.PRED].detach()
        target = engine.state.output.get(Keys.LABEL)
        metrics = self.compute(pred, target.to(pred.device)) if target is not None else {}
        solver_out = getattr(self.inferer, "last_output", None)
        nfe = getattr(solver_out, "nfe", None)
        seconds = getattr(solver_out, "wall_time", None)
        per_image = None if seconds is None else float(seconds) / pred.shape[0]
        rows = []
        for b in range(pred.shape[0]):
            row: dict[str, Any] = {"name": str(_batch_value(batch, "name", b))}
            row.update({k: f"{float(v[b]):.6f}" for k, v in metrics.items()})
            row["nfe"] = "" if nfe is None else int(nfe)
            row["seconds"] = "" if per_image is None else f"{per_image:.3f}"
            seed = _batch_value(batch, "seed", b, "")
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


class MeasurementSaver:
    """Save each simulated measurement and its per-image operator parameters as ``.npy`` under
    ``measurements/``, with ``measurements/datalist.json`` listing them for the inference
    workflow (the clean image is named as ``reference`` for the output format and geometry) and,
    when given, the ``provenance`` record of what made them (:mod:`monai_dmilo.provenance`).

    Args:
        output_dir: the run directory.
        param_keys: batch keys of per-image operator parameters.
        measurement_key: the batch key of ``y``.
        provenance: the task, prior and image shape the measurements were made with.
    """

    def __init__(self, output_dir: str | Path, *, param_keys: Sequence[str] = (), measurement_key: str = "y",
                 provenance: Mapping[str, Any] | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.param_keys = tuple(param_keys)
        self.measurement_key = measurement_key
        self.provenance = dict(provenance) if provenance is not None else None

    @property
    def folder(self) -> Path:
        return self.output_dir / "measurements"

    def attach(self, engine: Engine) -> None:
        if not engine.has_event_handler(self, Events.ITERATION_COMPLETED):
            engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self._on_completed)

    def __call__(self, engine: Engine) -> None:
        batch = engine.state.batch
        for b in range(len(batch["name"])):
            name = str(_batch_value(batch, "name", b))
            entry: dict[str, Any] = {"name": name}
            for key in (self.measurement_key, *self.param_keys):
                if key not in batch:
                    continue
                value = torch.as_tensor(batch[key])[b].detach().cpu().numpy()
                save_run_file(self.output_dir, self.folder / f"{name}_{key}.npy", lambda tmp, v=value: np.save(tmp, v))
                entry[key] = f"{name}_{key}.npy"
            source = _batch_value(batch, "image_path", b, "")
            if source:
                entry["reference"] = str(Path(source).resolve())
                volume = str(_batch_value(batch, "volume", b, ""))
                if volume:
                    entry.update(
                        slice=int(_batch_value(batch, "slice", b)),
                        volume=volume,
                        num_slices=int(_batch_value(batch, "num_slices", b)),
                    )
            text = json.dumps(entry)
            save_run_file(self.output_dir, self.folder / f"{name}.json", lambda tmp, t=text: tmp.write_text(t))

    def _on_completed(self, engine: Engine | None = None) -> None:
        barrier()
        if rank_and_world_size()[0] == 0 and self.folder.is_dir():
            entries = [json.loads(p.read_text()) for p in sorted(self.folder.glob("*.json"))
                       if p.name != "datalist.json" and not p.name.startswith(".tmp")]
            record: dict[str, Any] = {"data": entries}
            if self.provenance is not None:
                record["provenance"] = self.provenance
            text = json.dumps(record, indent=1)
            save_run_file(self.output_dir, self.folder / "datalist.json", lambda tmp: tmp.write_text(text))
        barrier()
