"""Handlers that save each image's results: the reconstruction in its input's format, and the
simulated measurement with its operator parameters (for the inference workflow)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch
from ignite.engine import Events

from monai_dmilo.data import image_format, read_dicom
from monai_dmilo.data.transforms import from_prior_range
from monai_dmilo.workflow.distributed import barrier, rank_and_world_size
from monai_dmilo.workflow.run_files import atomic_path, save_run_file

from .per_image import PerImageHandler, batch_value
from monai_dmilo.workflow.run_dir import SLICES_DIR

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["ReconstructionSaver", "MeasurementSaver"]


def _to_original_range(x: torch.Tensor, lo: float, hi: float) -> np.ndarray:
    """``(1, C, H, W)`` in [-1, 1] -> ``(C, H, W)`` float32 in ``[lo, hi]``."""
    return np.asarray(from_prior_range(x.detach().float()[0].cpu(), lo, hi), dtype=np.float32)


def _save_png(array: np.ndarray, path: Path) -> None:
    """Save ``(C, H, W)`` (C = 1 or 3) values in [0, 255] as an 8-bit PNG (MONAI's ``PILWriter``)."""
    from monai.data import PILWriter

    writer = PILWriter(output_dtype=np.uint8, scale=None)
    writer.set_data_array(np.clip(np.rint(array), 0, 255).astype(np.uint8), channel_dim=0)
    writer.write(path, verbose=False, reverse_indexing=False)


def regridded_affine(affine: np.ndarray, shape: tuple[int, ...], new_shape: tuple[int, ...]) -> np.ndarray:
    """The affine ``(4, 4)`` of the same field of view sampled on ``new_shape`` instead of ``shape``
    (leading axes; e.g. a 4x super-resolved slice of a low-resolution series): voxel sizes scale
    by ``shape / new_shape`` and the first voxel's centre moves so the outer edges stay put."""
    out = np.array(affine, dtype=np.float64)
    for axis, (old, new) in enumerate(zip(shape, new_shape)):
        column = out[:3, axis].copy()
        out[:3, axis] = column * old / new
        out[:3, 3] += 0.5 * (out[:3, axis] - column)
    return out


def _write_nifti(data: np.ndarray, source: str, path: Path) -> None:
    """Save ``data`` (``(H, W)`` or ``(H, W, Z)``) with the affine and header of ``source``,
    reshaped to the source's shape (a DICOM source: its series' RAS affine from MONAI's reader).
    Where ``(H, W)`` differs from the source's in-plane size, the affine is regridded
    (:func:`regridded_affine`)."""
    import nibabel as nib

    if image_format(source) == "dicom":
        volume, affine = read_dicom(source)
        shape, header = volume.shape, None
    else:
        src = nib.load(source)
        shape, affine, header = src.shape, src.affine, src.header.copy()
        header.set_data_dtype(np.float32)
    if tuple(data.shape[:2]) != tuple(shape[:2]):
        affine = regridded_affine(affine, tuple(shape[:2]), tuple(data.shape[:2]))
        shape = tuple(data.shape[:2]) + tuple(shape[2:])
    nib.Nifti1Image(data.reshape(shape).astype(np.float32), affine, header=header).to_filename(str(path))


class ReconstructionSaver(PerImageHandler):
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
        name = str(batch_value(batch, "name", b))
        fmt = str(batch_value(batch, "format", b, "png"))
        lo = float(batch_value(batch, "intensity_min", b, -1.0))
        hi = float(batch_value(batch, "intensity_max", b, 1.0))
        source = str(batch_value(batch, "image_path", b, ""))
        out = self.output_dir / "reconstructions"
        out.mkdir(parents=True, exist_ok=True)
        data = _to_original_range(pred, lo, hi)
        if fmt == "png":
            save_run_file(self.output_dir, out / f"{name}.png", lambda tmp: _save_png(data, tmp))
            return
        if fmt not in ("nifti", "dicom"):
            save_run_file(self.output_dir, out / f"{name}.npy", lambda tmp: np.save(tmp, data))
            return
        volume = str(batch_value(batch, "volume", b, ""))
        if not volume:
            save_run_file(self.output_dir, out / f"{name}.nii.gz", lambda tmp: _write_nifti(data[0], source, tmp))
            return
        folder = self.output_dir / SLICES_DIR / volume
        folder.mkdir(parents=True, exist_ok=True)
        k = int(batch_value(batch, "slice", b))
        with atomic_path(folder / f"s{k:05d}.npy") as tmp:
            np.save(tmp, data[0])
        meta = folder / "volume.json"
        if not meta.is_file():
            with atomic_path(meta) as tmp:
                tmp.write_text(json.dumps({"source": source, "num_slices": int(batch_value(batch, "num_slices", b))}))

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


class MeasurementSaver:
    """Save each simulated measurement and its per-image operator parameters as ``.npy`` under
    ``measurements/``, with ``measurements/datalist.json`` listing them for the inference
    workflow (the clean image is named as ``reference`` for the output format and geometry) and,
    when given, the ``provenance`` record of what made them (:mod:`monai_dmilo.workflow.provenance`).

    Args:
        output_dir: the run directory.
        param_keys: batch keys of per-image operator parameters; ``None``: those the batch's
            operator (``engine.state.output["operator"]``) declares as its ``batch_keys``.
        measurement_key: the batch key of ``y``.
        provenance: the task, prior and image shape the measurements were made with.
    """

    def __init__(self, output_dir: str | Path, *, param_keys: Sequence[str] | None = None, measurement_key: str = "y",
                 provenance: Mapping[str, Any] | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.param_keys = None if param_keys is None else tuple(param_keys)
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
        param_keys = self.param_keys
        if param_keys is None:
            output = engine.state.output
            param_keys = getattr(output.get("operator") if isinstance(output, Mapping) else None, "batch_keys", ())
        for b in range(len(batch["name"])):
            name = str(batch_value(batch, "name", b))
            entry: dict[str, Any] = {"name": name}
            for key in (self.measurement_key, *param_keys):
                if key not in batch:
                    continue
                value = torch.as_tensor(batch[key])[b].detach().cpu().numpy()
                save_run_file(self.output_dir, self.folder / f"{name}_{key}.npy", lambda tmp, v=value: np.save(tmp, v))
                entry[key] = f"{name}_{key}.npy"
            source = batch_value(batch, "image_path", b, "")
            if source:
                entry["reference"] = str(Path(source).resolve())
                volume = str(batch_value(batch, "volume", b, ""))
                if volume:
                    entry.update(
                        slice=int(batch_value(batch, "slice", b)),
                        volume=volume,
                        num_slices=int(batch_value(batch, "num_slices", b)),
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
