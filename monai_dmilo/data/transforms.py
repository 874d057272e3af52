"""MONAI dictionary transforms that load an item for the prior: a clean image (evaluate) or a
measurement and its operator parameters (inference), with the per-image seed."""
from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch
from monai.transforms import MapTransform, ScaleIntensityRange

from monai_dmilo.seeds import MAX_SEED, seed_from_name

from .files import image_format, read_image_array

__all__ = ["LoadImageForPriord", "LoadMeasurementd", "check_intensity_window", "to_prior_range", "from_prior_range"]

logger = logging.getLogger(__name__)


def to_prior_range(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Stored intensities ``[lo, hi]`` -> the prior's [-1, 1] (MONAI's ``ScaleIntensityRange``)."""
    return ScaleIntensityRange(a_min=lo, a_max=hi, b_min=-1.0, b_max=1.0)(x)


def from_prior_range(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """The inverse of :func:`to_prior_range`, clipped to ``[lo, hi]``."""
    return ScaleIntensityRange(a_min=-1.0, a_max=1.0, b_min=lo, b_max=hi, clip=True)(x)


def check_intensity_window(window: Sequence[float] | None) -> tuple[float, float] | None:
    """A prior's ``intensity_window`` as ``(lo, hi)`` floats with ``lo < hi``, or None."""
    if window is None:
        return None
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(f"intensity_window must be two numbers [lo, hi], got {window!r}.") from None
    if not (np.isfinite([lo, hi]).all() and lo < hi):
        raise ValueError(f"intensity_window must be finite numbers with lo < hi, got {window!r}.")
    return lo, hi


def _slice_index(data: dict) -> int | None:
    """The item's ``slice`` of a volume, or None (absent, or -1: a 2D image)."""
    value = data.get("slice")
    return None if value is None or int(value) < 0 else int(value)


class LoadImageForPriord(MapTransform):
    """Load an item's image (or slice) as ``(C, H, W)`` float32 scaled to [-1, 1], plus the seed.

    PNG/JPEG: ``x / 127.5 - 1``. NIfTI/DICOM: min-max scaling per image (per slice), or, for a
    prior trained on calibrated intensities (CT in Hounsfield units), the prior's fixed
    ``intensity_window`` ``(lo, hi)``: ``lo -> -1``, ``hi -> 1``, values outside clipped. The range
    used is stored as ``intensity_min``/``intensity_max`` so that savers can map reconstructions
    back. Also writes ``format`` (``"png"``/``"nifti"``/``"dicom"``) and ``seed`` (the item's own
    ``seed`` when the datalist gives one, else from the name and ``base_seed``).

    Args:
        keys: the key holding the file path (normally ``"image"``).
        channels: the prior's channel count.
        base_seed: the run's seed; per-image seeds are derived from it and the item's name.
        intensity_window: ``(lo, hi)`` stored intensities mapped to [-1, 1] for NIfTI/DICOM files,
            or None for min-max per slice. PNG/JPEG always use ``(0, 255)``.
        spatial_size: ``(H, W)`` to bring every image to (antialiased bilinear, linear in the
            stored units; the saved reconstruction keeps the source's field of view), or None to
            keep the size as read.
    """

    def __init__(self, keys: str | Sequence[str] = "image", *, channels: int = 1, base_seed: int = 0,
                 intensity_window: Sequence[float] | None = None,
                 spatial_size: Sequence[int] | None = None) -> None:
        super().__init__(keys)
        if spatial_size is not None and (len(spatial_size) != 2 or min(int(s) for s in spatial_size) < 1):
            raise ValueError(f"spatial_size must be two positive ints (H, W) or None, got {spatial_size!r}.")
        self.spatial_size = None if spatial_size is None else (int(spatial_size[0]), int(spatial_size[1]))
        self.channels = int(channels)
        self.base_seed = int(base_seed)
        self.intensity_window = check_intensity_window(intensity_window)
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
            slice_index = _slice_index(d)
            if fmt == "png":
                self._log_conversion(path)
            arr = read_image_array(path, channels=self.channels, slice_index=slice_index)
            if not np.isfinite(arr).all():
                where = f" (slice {slice_index})" if slice_index is not None else ""
                raise ValueError(f"image {path}{where} holds NaN or infinite values; expected finite numbers.")
            if fmt == "png":
                lo, hi = 0.0, 255.0
            elif self.intensity_window is not None:
                lo, hi = self.intensity_window
                arr = np.clip(arr, lo, hi)
            else:
                lo, hi = float(arr.min()), float(arr.max())
            scale = hi - lo if hi > lo else 1.0
            image = torch.from_numpy(np.ascontiguousarray(arr))
            if self.spatial_size is not None and tuple(image.shape[-2:]) != self.spatial_size:
                image = torch.nn.functional.interpolate(image[None], size=self.spatial_size, mode="bilinear",
                                                        align_corners=False, antialias=True)[0]
            d[key] = to_prior_range(image, lo, lo + scale)
            d["image_path"] = path
            d["format"] = fmt
            d["intensity_min"] = lo
            d["intensity_max"] = lo + scale
        d.setdefault("slice", -1)  # batches need the same keys in every item
        d.setdefault("num_slices", 0)
        d.setdefault("volume", "")
        d["seed"] = self._seed(d)
        return d

    def _seed(self, d: dict) -> int:
        """The item's own ``seed`` (an int in a datalist, e.g. to reproduce a benchmark's measurement),
        else one derived from its name and ``base_seed``."""
        if "seed" not in d:
            return seed_from_name(d["name"], self.base_seed)
        seed = d["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise ValueError(f"datalist item {d['name']!r}: seed must be an int in [0, {MAX_SEED}], got {seed!r}.")
        return seed


def _read_array(path: str, *, as_image: bool, unit_range: tuple[float, float],
                slice_index: int | None = None,
                window: tuple[float, float] | None = None) -> tuple[torch.Tensor, tuple[float, float] | None]:
    """``.npy`` -> as stored (complex kept); PNG/NIfTI/DICOM (``slice_index`` of a volume) ->
    ``(C, H, W)`` float32 mapped to ``unit_range`` (``(-1, 1)`` for images, ``(0, 1)`` for masks),
    NIfTI/DICOM images from ``window`` (clipped) when given, else from their min and max.

    Returns the array and the stored intensity range ``(lo, hi)`` it was mapped from (None for
    ``.npy`` and for NIfTI/DICOM parameters, which are kept as stored)."""
    if path.lower().endswith(".npy"):
        return torch.from_numpy(np.load(path, allow_pickle=False)), None
    fmt = image_format(path)
    if fmt is None:
        raise ValueError(f"file {path!r} must be .npy, PNG/JPEG, NIfTI or a DICOM series.")
    arr = read_image_array(path, channels=1, slice_index=slice_index)
    if not np.isfinite(arr).all():
        raise ValueError(f"file {path!r} holds NaN or infinite values; expected finite numbers.")
    if fmt == "png":
        lo, hi = 0.0, 255.0
    elif not as_image:
        return torch.from_numpy(arr), None
    elif window is not None:
        lo, hi = window
        arr = np.clip(arr, lo, hi)
    else:
        lo, hi = float(arr.min()), float(arr.max())
    hi = max(hi, lo + 1e-12)
    a, b = unit_range
    return ScaleIntensityRange(a_min=lo, a_max=hi, b_min=a, b_max=b)(torch.from_numpy(arr)), (lo, hi)


class LoadMeasurementd(MapTransform):
    """Load a real measurement and its operator parameters from the files an item names.

    * ``y``: ``.npy`` as stored (complex k-space stays complex; a 2D array gets a leading channel
      axis), or a degraded image (masked, low resolution, blurred...) scaled to [-1, 1]: PNG, or a
      slice (``slice``) of a NIfTI volume or DICOM series (min-max per slice).
    * parameter keys (``mask``, ``kernel``, ``coil_maps``...): ``.npy`` as stored (2D arrays of
      the keys in ``channel_keys`` get a channel axis), or a PNG/NIfTI mask scaled to [0, 1].
    * ``reference`` (optional): an image file (PNG/NIfTI, with optional ``slice``) whose format,
      geometry and intensity range the reconstruction is saved with. Without it, a ``y`` image
      gives them (a NIfTI/DICOM ``y`` of another size, e.g. super-resolution: its field of view on
      the reconstruction's grid); a ``.npy`` ``y``: ``.npy`` on the [-1, 1] scale.

    Also writes ``seed`` (from the name and ``base_seed``), ``format``, ``image_path``,
    ``intensity_min``/``intensity_max`` and the volume keys, like :class:`LoadImageForPriord`.

    Args:
        keys: ``("y", *param_keys)``; the first is the measurement.
        channel_keys: parameter keys whose 2D arrays get a channel axis (masks).
        base_seed: the run's seed.
        intensity_window: the prior's fixed ``(lo, hi)`` window (CT: Hounsfield units): a NIfTI/DICOM
            ``y`` image and the ``reference`` are mapped with it instead of min-max per slice.
    """

    def __init__(
        self,
        keys: str | Sequence[str] = ("y",),
        *,
        channel_keys: Sequence[str] = ("mask",),
        base_seed: int = 0,
        intensity_window: Sequence[float] | None = None,
    ) -> None:
        super().__init__(keys)
        self.channel_keys = tuple(channel_keys)
        self.base_seed = int(base_seed)
        self.intensity_window = check_intensity_window(intensity_window)

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        measurement_key = self.keys[0]
        slice_index = _slice_index(d)
        y_source: tuple[str, tuple[float, float] | None] = ("", None)  # y's path and stored range
        for key in self.key_iterator(d):
            is_y = key == measurement_key
            value, stored_range = _read_array(str(d[key]), as_image=is_y, unit_range=(-1.0, 1.0) if is_y else (0.0, 1.0),
                                              slice_index=slice_index if is_y else None,
                                              window=self.intensity_window if is_y else None)
            if value.ndim == 2 and (is_y or key in self.channel_keys):
                value = value[None]
            if is_y:
                y_source = (str(d[key]), stored_range)
            d[key] = value
        reference = d.get("reference")
        if reference:
            ref = LoadImageForPriord("reference", channels=1, base_seed=self.base_seed,
                                     intensity_window=self.intensity_window)(
                {"reference": reference, "name": d["name"], "slice": d.get("slice", None)}
            )
            for k in ("format", "image_path", "intensity_min", "intensity_max"):
                d[k] = ref[k]
        elif y_source[1] is not None:
            path, (lo, hi) = y_source
            d.update(format=image_format(path), image_path=path, intensity_min=lo, intensity_max=hi)
        else:
            d.update(format="npy", image_path="", intensity_min=-1.0, intensity_max=1.0)
        d.pop("reference", None)
        d.setdefault("slice", -1)
        d.setdefault("num_slices", 0)
        d.setdefault("volume", "")
        d["seed"] = seed_from_name(d["name"], self.base_seed)
        return d
