"""Datalists: folders, JSON datalists, volume slicing, size checks, loading and per-image seeds."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from monai_dmilo.data import (
    LoadImageForPriord,
    build_datalist,
    check_image_sizes,
    expand_volumes,
    file_stem,
    list_images,
    read_datalist_file,
)
from monai_dmilo.seeds import seed_from_name


def _png(path, size=16, mode="L", seed=0):
    rng = np.random.default_rng(seed)
    shape = (size, size) if mode == "L" else (size, size, 3)
    arr = rng.integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(arr, mode=mode).save(path)
    return arr


def _nifti(path, shape=(16, 16, 3), seed=0):
    data = np.random.default_rng(seed).normal(100.0, 20.0, shape).astype(np.float32)
    affine = np.diag([0.5, 0.7, 2.0, 1.0])
    affine[:3, 3] = [1.0, -2.0, 3.0]
    nib.Nifti1Image(data, affine).to_filename(str(path))
    return data, affine


def test_file_stem_handles_double_suffix():
    assert file_stem("a/b/brain.nii.gz") == "brain"
    assert file_stem("x.png") == "x"


def test_list_images_sorted_and_filtered(tmp_path):
    _png(tmp_path / "b.png")
    _png(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    items = list_images(tmp_path)
    assert [i["name"] for i in items] == ["a", "b"]
    assert items[0]["image"].endswith("a.png")


def test_missing_and_empty_folders_raise(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset_dir"):
        list_images(tmp_path / "nope")
    (tmp_path / "only.txt").write_text("x")
    with pytest.raises(ValueError, match="holds no image files"):
        build_datalist(dataset_dir=tmp_path)
    with pytest.raises(ValueError, match="either dataset_dir or datalist_file"):
        build_datalist()


def test_datalist_json_relative_paths_and_missing_file(tmp_path):
    sub = tmp_path / "imgs"
    sub.mkdir()
    _png(sub / "x.png")
    dl = tmp_path / "list.json"
    dl.write_text(json.dumps({"data": [{"image": "imgs/x.png"}]}))
    items = read_datalist_file(dl)
    assert items == [{"image": str(tmp_path / "imgs" / "x.png"), "name": "x"}]
    dl.write_text(json.dumps({"data": [{"image": "imgs/missing.png"}]}))
    with pytest.raises(FileNotFoundError, match="missing.png"):
        build_datalist(datalist_file=dl)
    dl.write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_datalist_file(dl)
    with pytest.raises(FileNotFoundError, match="datalist_file"):
        build_datalist(datalist_file=tmp_path / "absent.json")


def test_duplicate_names_rejected(tmp_path):
    _png(tmp_path / "x.png")
    dl = tmp_path / "list.json"
    dl.write_text(json.dumps([{"image": "x.png"}, {"image": "x.png"}]))
    with pytest.raises(ValueError, match="duplicate image names"):
        build_datalist(datalist_file=dl)


def test_volumes_expand_to_slices(tmp_path):
    _nifti(tmp_path / "vol.nii.gz", (16, 16, 3))
    _nifti(tmp_path / "flat.nii.gz", (16, 16, 1))
    items = expand_volumes(list_images(tmp_path))
    names = [i["name"] for i in items]
    assert names == ["flat", "vol_s000", "vol_s001", "vol_s002"]
    assert [i.get("slice") for i in items[1:]] == [0, 1, 2]
    assert all(i["volume"] == "vol" and i["num_slices"] == 3 for i in items[1:])
    _nifti(tmp_path / "four.nii.gz", (16, 16, 2, 2))
    with pytest.raises(ValueError, match="expected a 2D image or a 3D volume"):
        expand_volumes(list_images(tmp_path))


def test_size_the_prior_cannot_take(tmp_path):
    _png(tmp_path / "big.png", size=20)
    items = list_images(tmp_path)
    with pytest.raises(ValueError, match=r"is 20x20 but the prior takes 16x16"):
        check_image_sizes(items, (1, 16, 16))
    check_image_sizes(items, (1, 20, 20))  # no error
    with pytest.raises(ValueError, match="20x20"):
        build_datalist(dataset_dir=tmp_path, image_shape=(1, 16, 16))


def test_max_items(tmp_path):
    for k in range(3):
        _png(tmp_path / f"i{k}.png", seed=k)
    assert [i["name"] for i in build_datalist(dataset_dir=tmp_path, max_items=2)] == ["i0", "i1"]
    with pytest.raises(ValueError, match="max_items"):
        build_datalist(dataset_dir=tmp_path, max_items=0)


def test_load_png_scaled_to_unit_interval(tmp_path):
    arr = _png(tmp_path / "g.png")
    d = LoadImageForPriord("image", channels=1)({"image": str(tmp_path / "g.png"), "name": "g"})
    assert d["image"].shape == (1, 16, 16) and d["image"].dtype == torch.float32
    np.testing.assert_allclose(d["image"][0].numpy(), arr / 127.5 - 1.0, atol=1e-6)
    assert d["format"] == "png" and (d["intensity_min"], d["intensity_max"]) == (0.0, 255.0)


def test_load_rgb_png_as_grayscale_or_rgb(tmp_path):
    _png(tmp_path / "c.png", mode="RGB")
    item = {"image": str(tmp_path / "c.png"), "name": "c"}
    assert LoadImageForPriord("image", channels=1)(item)["image"].shape == (1, 16, 16)
    assert LoadImageForPriord("image", channels=3)(item)["image"].shape == (3, 16, 16)


def test_monai_readers_keep_rows_channels_and_name_unreadable_files(tmp_path):
    """MONAI's PILReader without its axis swap: row 0 is the image's top row, RGB planes in order; a PNG
    written back by the saver (MONAI's PILWriter) has the same pixels."""
    from monai_dmilo.data.files import load_image
    from monai_dmilo.handlers.savers import _save_png

    rng = np.random.default_rng(3)
    gray = rng.integers(0, 256, (12, 7), dtype=np.uint8)
    rgb = rng.integers(0, 256, (12, 7, 3), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    Image.fromarray(rgb).save(tmp_path / "c.png")
    np.testing.assert_array_equal(load_image(str(tmp_path / "g.png")).numpy(), gray[None])
    np.testing.assert_array_equal(load_image(str(tmp_path / "c.png"), channels=3).numpy(), np.moveaxis(rgb, -1, 0))
    for name, arr in (("g", gray[None]), ("c", np.moveaxis(rgb, -1, 0))):
        _save_png(arr.astype(np.float32), tmp_path / f"{name}_out.png")
        np.testing.assert_array_equal(load_image(str(tmp_path / f"{name}_out.png"), channels=arr.shape[0]).numpy(), arr)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png could not be read as PNG"):
        load_image(str(tmp_path / "broken.png"))
    with pytest.raises(ValueError, match="channels must be 1 or 3"):
        load_image(str(tmp_path / "g.png"), channels=2)


def test_load_nifti_slice_min_max(tmp_path):
    data, _ = _nifti(tmp_path / "v.nii.gz", (16, 16, 3))
    items = expand_volumes(list_images(tmp_path))
    d = LoadImageForPriord("image")(items[2])
    s = data[..., 2]
    np.testing.assert_allclose(d["image"][0].numpy(), (s - s.min()) / (s.max() - s.min()) * 2 - 1, atol=1e-5)
    assert d["intensity_min"] == pytest.approx(float(s.min()))
    assert d["intensity_max"] == pytest.approx(float(s.max()))
    assert d["format"] == "nifti" and d["slice"] == 2


def test_seeds_depend_on_name_and_run_seed_only(tmp_path):
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    items = list_images(tmp_path)
    load = LoadImageForPriord("image", base_seed=3)
    seeds = {load(i)["name"]: load(i)["seed"] for i in items}
    reversed_seeds = {load(i)["name"]: load(i)["seed"] for i in reversed(items)}
    assert seeds == reversed_seeds
    assert seeds["a"] != seeds["b"]
    assert seeds["a"] == seed_from_name("a", 3) != seed_from_name("a", 4)
