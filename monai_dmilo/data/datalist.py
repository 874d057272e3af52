"""Datalists: a folder or a JSON file of images becomes checked items (3D volumes: one per slice)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from .files import IMAGE_SUFFIXES, file_stem, image_format, is_dicom_series, nifti_shape, spatial_size, squeeze_trailing

__all__ = ["list_images", "read_datalist_file", "expand_volumes", "check_image_sizes", "build_datalist"]


def list_images(dataset_dir: str | Path, *, key: str = "image") -> list[dict[str, Any]]:
    """One item ``{key: path, "name": stem}`` per supported image file (or DICOM series folder) in
    ``dataset_dir`` (not recursive), sorted by name.

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
    return [{key: str(p), "name": file_stem(p)} for p in files]


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


def expand_volumes(items: list[dict], *, key: str = "image") -> list[dict]:
    """Replace each item whose ``key`` is a 3D NIfTI volume or DICOM series by one item per slice
    along its last axis (an item that already names its ``slice`` is kept).

    Slice items get ``name = f"{volume}_s{k:03d}"``, ``slice = k``, ``num_slices`` and ``volume``.
    2D images (and ``(H, W, 1)`` NIfTI) are kept as one item.
    """
    out = []
    for item in items:
        path = item.get(key)
        if path is None or item.get("slice") is not None or image_format(path) not in ("nifti", "dicom"):
            out.append(item)
            continue
        shape = squeeze_trailing(nifti_shape(path))
        if len(shape) == 2:
            out.append(item)
        elif len(shape) == 3:
            for k in range(shape[2]):
                out.append(
                    {**item, "name": f"{item['name']}_s{k:03d}", "slice": k, "num_slices": shape[2], "volume": item["name"]}
                )
        else:
            raise ValueError(f"{key} {path!r} has shape {shape}; expected a 2D image or a 3D volume.")
    return out


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
            seen[path] = spatial_size(path)
        if seen[path] != expected:
            raise ValueError(
                f"image {path!r} is {seen[path][0]}x{seen[path][1]} but the prior takes "
                f"{expected[0]}x{expected[1]} images; resize/crop the data, pass --resize_to_prior true, or use a "
                "prior of that size."
            )


def _check_paths(items: list[dict], keys: Sequence[str]) -> None:
    for item in items:
        for k in keys:
            if k in item and not (Path(item[k]).is_file() or is_dicom_series(item[k])):
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
    pacs_dir: str | Path = "data_cache/pacs",
    image_key: str = "image",
) -> list[dict]:
    """Build and validate the list of items a workflow will process.

    Args:
        dataset_dir: a folder of images (used when ``datalist_file`` is empty), or a PACS query
            ``dicom://HOST:PORT/AET?StudyInstanceUID=...`` (:func:`~monai_dmilo.data.pacs.parse_pacs_url`):
            the matching series are fetched (C-FIND + C-GET) into ``pacs_dir/<AET>_<key>_<uid>/``,
            one folder per series, each a volume.
        datalist_file: a JSON datalist; takes precedence over ``dataset_dir``.
        image_shape: the prior's ``(C, H, W)``; when given, every image must have this ``(H, W)``.
        path_keys: other item keys holding file paths that must exist (measurements, masks...).
        max_items: keep only the first ``max_items`` items (after volume expansion).
        pacs_dir: where series fetched from a PACS are kept.
        image_key: the item key of the images found in ``dataset_dir`` (``"y"`` for inference,
            whose images are measurements); volumes named by it are expanded to slices.

    Returns:
        the items, with 3D volumes expanded to slices.

    Raises:
        FileNotFoundError, ValueError: one clear message about the first problem found.
    """
    if datalist_file:
        items = read_datalist_file(datalist_file, path_keys=path_keys)
    elif dataset_dir and str(dataset_dir).startswith("dicom://"):
        from .pacs import parse_pacs_url, retrieve

        peer, query = parse_pacs_url(str(dataset_dir))
        key, uid = next(iter(query.items()))
        folder = Path(pacs_dir) / "".join(c if c.isalnum() or c in "._-" else "_" for c in f"{peer.aet}_{key}_{uid}")
        retrieve(peer, query, folder)
        items = list_images(folder, key=image_key)
    elif dataset_dir:
        items = list_images(dataset_dir, key=image_key)
    else:
        raise ValueError("either dataset_dir or datalist_file must be given, got neither.")
    _check_paths(items, ("image", *path_keys))
    items = expand_volumes(items, key=image_key)
    if image_shape is not None:
        check_image_sizes([i for i in items if "image" in i], image_shape)
    if max_items is not None:
        if not isinstance(max_items, int) or max_items < 1:
            raise ValueError(f"max_items must be a positive integer or None, got {max_items!r}.")
        items = items[:max_items]
    return items
