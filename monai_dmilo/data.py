"""Datalists of images for the bundle workflows, checked before any work starts.

An *item* is a dict with at least ``image`` (a file path) and ``name`` (a unique id used for
outputs, seeds and resume). 3D NIfTI volumes become one item per slice along the last axis with
``slice``, ``num_slices`` and ``volume`` (the volume's name); the saver puts them back together.

Supported files: PNG/JPEG (natural images; converted to the prior's channel count), NIfTI
(``.nii``/``.nii.gz``; 2D images or 3D volumes, one channel) and DICOM: a folder of ``.dcm`` files
is one series (a volume, read with MONAI's ``PydicomReader``: slices sorted by position, the
affine from the headers), a single ``.dcm`` file a 2D image.
"""
from __future__ import annotations

import json
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from monai.transforms import MapTransform

from monai_dmilo.seeds import seed_from_name

__all__ = [
    "IMAGE_SUFFIXES",
    "image_format",
    "file_stem",
    "list_images",
    "read_datalist_file",
    "expand_volumes",
    "check_image_sizes",
    "build_datalist",
    "read_image_array",
    "is_dicom_series",
    "read_dicom",
    "LoadImageForPriord",
    "LoadMeasurementd",
]

IMAGE_SUFFIXES: dict[str, str] = {
    ".png": "png",
    ".jpg": "png",
    ".jpeg": "png",
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".dcm": "dicom",
}

logger = logging.getLogger(__name__)


def is_dicom_series(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding ``.dcm`` files (one DICOM series)."""
    path = Path(path)
    return path.is_dir() and any(p.suffix.lower() == ".dcm" for p in path.iterdir())


def image_format(path: str | Path) -> str | None:
    """``"png"``, ``"nifti"`` or ``"dicom"`` from a file name (or a DICOM series folder), or ``None``
    for an unsupported one."""
    if is_dicom_series(path):
        return "dicom"
    name = str(path).lower()
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return IMAGE_SUFFIXES[suffix]
    return None


def file_stem(path: str | Path) -> str:
    """The file name without its image suffix (``brain.nii.gz`` -> ``brain``)."""
    name = Path(path).name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def list_images(dataset_dir: str | Path) -> list[dict[str, Any]]:
    """One item per supported image file in ``dataset_dir`` (not recursive), sorted by name.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: it holds no supported image.
    """
    folder = Path(dataset_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset_dir {str(dataset_dir)!r} is not an existing folder.")
    files = sorted(p for p in folder.iterdir() if (p.is_file() or is_dicom_series(p)) and image_format(p) is not None)
    if not files:
        raise ValueError(
            f"dataset_dir {str(dataset_dir)!r} holds no image files; expected "
            f"{', '.join(sorted(IMAGE_SUFFIXES))} files or folders of .dcm files (DICOM series)."
        )
    return [{"image": str(p), "name": file_stem(p)} for p in files]


def read_datalist_file(datalist_file: str | Path, *, key: str = "data", path_keys: Sequence[str] = ()) -> list[dict]:
    """Items from a JSON datalist: a list of dicts, or ``{key: [...]}`` (the Decathlon layout).

    Relative paths in ``image`` and in ``path_keys`` are taken relative to the JSON file's folder.
    A missing ``name`` is derived from the ``image`` (or first path) file name.
    """
    path = Path(datalist_file)
    if not path.is_file():
        raise FileNotFoundError(f"datalist_file {str(datalist_file)!r} does not exist.")
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"datalist_file {str(datalist_file)!r} is not valid JSON: {err}.") from None
    items = content.get(key) if isinstance(content, dict) else content
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise ValueError(
            f"datalist_file {str(datalist_file)!r} must hold a non-empty list of dicts "
            f"(or {{{key!r}: [...]}}), got {type(items).__name__}."
        )
    base = path.parent
    out = []
    for item in items:
        item = dict(item)
        for k in ("image", *path_keys):
            if k in item and isinstance(item[k], str) and not Path(item[k]).is_absolute():
                item[k] = str(base / item[k])
        if "name" not in item:
            first = item.get("image") or next((item[k] for k in path_keys if k in item), None)
            if first is None:
                raise ValueError(f"datalist_file item {item!r} has neither 'name' nor 'image'.")
            item["name"] = file_stem(first)
        out.append(item)
    return out


def read_dicom(path: str) -> tuple[np.ndarray, np.ndarray]:
    """A DICOM series folder (or one ``.dcm`` file) as float32 ``(X, Y[, Z])`` (MONAI's layout: columns,
    rows, slices; rescale slope and intercept applied) and its RAS affine ``(4, 4)``."""
    from monai.transforms import LoadImage

    try:
        image = LoadImage(reader="PydicomReader", image_only=True)(path)
    except Exception as err:  # pydicom/MONAI raise many types for unreadable files
        raise ValueError(f"{path} could not be read as DICOM: {type(err).__name__}: {err}") from None
    return np.asarray(image, dtype=np.float32), np.asarray(image.affine, dtype=np.float64)


def _nifti_shape(path: str) -> tuple[int, ...]:
    if image_format(path) == "dicom":
        return tuple(int(s) for s in _CACHE.get(path).shape)
    import nibabel as nib

    return tuple(int(s) for s in nib.load(path).shape)


def _squeeze_trailing(shape: tuple[int, ...]) -> tuple[int, ...]:
    while len(shape) > 2 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def expand_volumes(items: list[dict]) -> list[dict]:
    """Replace each 3D NIfTI item by one item per slice along its last axis.

    Slice items get ``name = f"{volume}_s{k:03d}"``, ``slice = k``, ``num_slices`` and ``volume``.
    2D images (and ``(H, W, 1)`` NIfTI) are kept as one item.
    """
    out = []
    for item in items:
        path = item["image"]
        if image_format(path) not in ("nifti", "dicom"):
            out.append(item)
            continue
        shape = _squeeze_trailing(_nifti_shape(path))
        if len(shape) == 2:
            out.append(item)
        elif len(shape) == 3:
            for k in range(shape[2]):
                out.append(
                    {**item, "name": f"{item['name']}_s{k:03d}", "slice": k, "num_slices": shape[2], "volume": item["name"]}
                )
        else:
            raise ValueError(f"image {path!r} has shape {shape}; expected a 2D image or a 3D volume.")
    return out


def _spatial_size(path: str) -> tuple[int, int]:
    from nibabel.filebasedimages import ImageFileError

    try:
        if image_format(path) == "png":
            from PIL import Image

            with Image.open(path) as im:
                width, height = im.size
            return height, width
        shape = _squeeze_trailing(_nifti_shape(path))
    except (OSError, EOFError, ImageFileError) as err:  # PIL's UnidentifiedImageError is an OSError
        raise ValueError(f"{path} could not be read as an image: {type(err).__name__}: {err}") from None
    return shape[0], shape[1]


def check_image_sizes(items: list[dict], image_shape: Sequence[int]) -> None:
    """Raise ``ValueError`` naming the first image whose ``(H, W)`` differs from the prior's.

    Args:
        items: datalist items with ``image`` paths.
        image_shape: the prior's ``(C, H, W)``.
    """
    expected = tuple(int(s) for s in image_shape[-2:])
    seen: dict[str, tuple[int, int]] = {}
    for item in items:
        path = item["image"]
        if path not in seen:
            seen[path] = _spatial_size(path)
        if seen[path] != expected:
            raise ValueError(
                f"image {path!r} is {seen[path][0]}x{seen[path][1]} but the prior takes "
                f"{expected[0]}x{expected[1]} images; resize/crop the data or use a prior of that size."
            )


def _check_paths(items: list[dict], keys: Sequence[str]) -> None:
    for item in items:
        for k in keys:
            if k in item and not (Path(item[k]).is_file() or (k == "image" and is_dicom_series(item[k]))):
                raise FileNotFoundError(f"{k} file {item[k]!r} (item {item.get('name')!r}) does not exist.")
        if "image" in item and image_format(item["image"]) is None:
            raise ValueError(
                f"image {item['image']!r} has an unsupported suffix; expected one of {sorted(IMAGE_SUFFIXES)}."
            )
    names = [item["name"] for item in items]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"datalist has duplicate image names {dup[:5]}; names must be unique.")


def build_datalist(
    *,
    dataset_dir: str | Path | None = None,
    datalist_file: str | Path | None = None,
    image_shape: Sequence[int] | None = None,
    path_keys: Sequence[str] = (),
    max_items: int | None = None,
) -> list[dict]:
    """Build and validate the list of items a workflow will process.

    Args:
        dataset_dir: a folder of images (used when ``datalist_file`` is empty).
        datalist_file: a JSON datalist; takes precedence over ``dataset_dir``.
        image_shape: the prior's ``(C, H, W)``; when given, every image must have this ``(H, W)``.
        path_keys: other item keys holding file paths that must exist (measurements, masks...).
        max_items: keep only the first ``max_items`` items (after volume expansion).

    Returns:
        the items, with 3D volumes expanded to slices.

    Raises:
        FileNotFoundError, ValueError: one clear message about the first problem found.
    """
    if datalist_file:
        items = read_datalist_file(datalist_file, path_keys=path_keys)
    elif dataset_dir:
        items = list_images(dataset_dir)
    else:
        raise ValueError("either dataset_dir or datalist_file must be given, got neither.")
    _check_paths(items, ("image", *path_keys))
    items = expand_volumes([i for i in items]) if any("image" in i for i in items) else items
    if image_shape is not None:
        check_image_sizes([i for i in items if "image" in i], image_shape)
    if max_items is not None:
        if not isinstance(max_items, int) or max_items < 1:
            raise ValueError(f"max_items must be a positive integer or None, got {max_items!r}.")
        items = items[:max_items]
    return items


class _VolumeCache:
    """Keeps the last few NIfTI volumes / DICOM series loaded, so slices of one volume read it once."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()

    def get(self, path: str) -> np.ndarray:
        if path not in self._data:
            if image_format(path) == "dicom":
                self._data[path] = read_dicom(path)[0]
            else:
                import nibabel as nib

                self._data[path] = np.asarray(nib.load(path).get_fdata(dtype=np.float32))
            while len(self._data) > self.size:
                self._data.popitem(last=False)
        self._data.move_to_end(path)
        return self._data[path]


_CACHE = _VolumeCache()


def read_image_array(path: str, *, channels: int = 1, slice_index: int | None = None) -> np.ndarray:
    """Read one 2D image as float32 ``(C, H, W)`` in its stored intensity units.

    PNG/JPEG are converted to ``channels`` (1: grayscale ``L``, 3: ``RGB``); NIfTI images are
    one-channel and ``slice_index`` picks a slice along the last axis of a 3D volume.
    """
    if image_format(path) == "png":
        from PIL import Image

        mode = {1: "L", 3: "RGB"}.get(channels)
        if mode is None:
            raise ValueError(f"channels must be 1 or 3 for PNG/JPEG images, got {channels}.")
        with Image.open(path) as im:
            arr = np.asarray(im.convert(mode), dtype=np.float32)
        return arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
    if channels != 1:
        raise ValueError(f"NIfTI/DICOM images are read as one channel but the prior takes {channels} channels.")
    vol = _CACHE.get(path)
    vol = vol.reshape(_squeeze_trailing(vol.shape))
    img = vol if slice_index is None else vol[..., int(slice_index)]
    if img.ndim != 2:
        raise ValueError(f"image {path!r} gave shape {img.shape} (slice {slice_index}); expected 2D.")
    return np.ascontiguousarray(img[None], dtype=np.float32)


class LoadImageForPriord(MapTransform):
    """Load an item's image (or slice) as ``(C, H, W)`` float32 scaled to [-1, 1], plus the seed.

    PNG/JPEG: ``x / 127.5 - 1``. NIfTI: min-max scaling per image (per slice); the min and max
    are stored as ``intensity_min``/``intensity_max`` so that savers can map reconstructions back.
    Also writes ``format`` (``"png"``/``"nifti"``) and ``seed`` (from the name and ``base_seed``).

    Args:
        keys: the key holding the file path (normally ``"image"``).
        channels: the prior's channel count.
        base_seed: the run's seed; per-image seeds are derived from it and the item's name.
    """

    def __init__(self, keys: str | Sequence[str] = "image", *, channels: int = 1, base_seed: int = 0) -> None:
        super().__init__(keys)
        self.channels = int(channels)
        self.base_seed = int(base_seed)
        self._conversions_logged: set[tuple[str, int]] = set()

    def _log_conversion(self, path: str) -> None:
        """Log once per transform (one run) that colour images are turned into the prior's channels."""
        from PIL import Image

        with Image.open(path) as im:
            mode = im.mode
        wanted = {1: ("L", "I", "I;16", "F", "1", "LA"), 3: ("RGB",)}.get(self.channels, ())
        if mode in wanted or (mode, self.channels) in self._conversions_logged:
            return
        self._conversions_logged.add((mode, self.channels))
        logger.warning(
            "%s is a %s image but the prior takes %d channel(s): it is converted (%s), as every such image "
            "of this run", path, mode, self.channels, "grayscale, PIL 'L'" if self.channels == 1 else "RGB",
        )

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            path = str(d[key])
            fmt = image_format(path)
            slice_index = d.get("slice")
            slice_index = None if slice_index is None or int(slice_index) < 0 else int(slice_index)
            if fmt == "png":
                self._log_conversion(path)
            arr = read_image_array(path, channels=self.channels, slice_index=slice_index)
            if not np.isfinite(arr).all():
                where = f" (slice {slice_index})" if slice_index is not None else ""
                raise ValueError(f"image {path}{where} holds NaN or infinite values; expected finite numbers.")
            if fmt == "png":
                lo, hi = 0.0, 255.0
            else:
                lo, hi = float(arr.min()), float(arr.max())
            scale = hi - lo if hi > lo else 1.0
            d[key] = torch.from_numpy((arr - lo) / scale * 2.0 - 1.0)
            d["image_path"] = path
            d["format"] = fmt
            d["intensity_min"] = lo
            d["intensity_max"] = lo + scale
        d.setdefault("slice", -1)  # batches need the same keys in every item
        d.setdefault("num_slices", 0)
        d.setdefault("volume", "")
        d["seed"] = seed_from_name(d["name"], self.base_seed)
        return d


def _read_array(path: str, *, as_image: bool, unit_range: tuple[float, float]) -> torch.Tensor:
    """``.npy`` -> as stored (complex kept); PNG/NIfTI -> ``(C, H, W)`` float32 mapped to
    ``unit_range`` (``(-1, 1)`` for images, ``(0, 1)`` for masks)."""
    if path.lower().endswith(".npy"):
        return torch.from_numpy(np.load(path, allow_pickle=False))
    if image_format(path) is None:
        raise ValueError(f"file {path!r} must be .npy, PNG/JPEG or NIfTI.")
    arr = read_image_array(path, channels=1)
    if image_format(path) == "png":
        lo, hi = 0.0, 255.0
    else:
        lo, hi = float(arr.min()), float(arr.max())
        if not as_image:
            return torch.from_numpy(arr)
    a, b = unit_range
    return torch.from_numpy((arr - lo) / max(hi - lo, 1e-12) * (b - a) + a)


class LoadMeasurementd(MapTransform):
    """Load a real measurement and its operator parameters from the files an item names.

    * ``y``: ``.npy`` as stored (complex k-space stays complex; a 2D array gets a leading channel
      axis), or a PNG image scaled to [-1, 1] (a degraded image: masked, blurred...).
    * parameter keys (``mask``, ``kernel``, ``coil_maps``...): ``.npy`` as stored (2D arrays of
      the keys in ``channel_keys`` get a channel axis), or a PNG/NIfTI mask scaled to [0, 1].
    * ``reference`` (optional): an image file (PNG/NIfTI, with optional ``slice``) whose format,
      geometry and intensity range the reconstruction is saved with; without it the
      reconstruction is saved as ``.npy`` on the [-1, 1] scale.

    Also writes ``seed`` (from the name and ``base_seed``), ``format``, ``image_path``,
    ``intensity_min``/``intensity_max`` and the volume keys, like :class:`LoadImageForPriord`.

    Args:
        keys: ``("y", *param_keys)``; the first is the measurement.
        channel_keys: parameter keys whose 2D arrays get a channel axis (masks).
        base_seed: the run's seed.
    """

    def __init__(
        self,
        keys: str | Sequence[str] = ("y",),
        *,
        channel_keys: Sequence[str] = ("mask",),
        base_seed: int = 0,
    ) -> None:
        super().__init__(keys)
        self.channel_keys = tuple(channel_keys)
        self.base_seed = int(base_seed)

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        measurement_key = self.keys[0]
        for key in self.key_iterator(d):
            is_y = key == measurement_key
            value = _read_array(str(d[key]), as_image=is_y, unit_range=(-1.0, 1.0) if is_y else (0.0, 1.0))
            if value.ndim == 2 and (is_y or key in self.channel_keys):
                value = value[None]
            d[key] = value
        reference = d.get("reference")
        if reference:
            ref = LoadImageForPriord("reference", channels=1, base_seed=self.base_seed)(
                {"reference": reference, "name": d["name"], "slice": d.get("slice", None)}
            )
            for k in ("format", "image_path", "intensity_min", "intensity_max"):
                d[k] = ref[k]
        else:
            d.update(format="npy", image_path="", intensity_min=-1.0, intensity_max=1.0)
        d.pop("reference", None)
        d.setdefault("slice", -1)
        d.setdefault("num_slices", 0)
        d.setdefault("volume", "")
        d["seed"] = seed_from_name(d["name"], self.base_seed)
        return d
