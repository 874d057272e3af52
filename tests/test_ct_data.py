"""CT data: the InVesalius ``.inv3`` reader, the Hounsfield window of a CT prior (loading, saving
back in HU, evaluate on a series of another size), and the task's default prior."""
from __future__ import annotations

import io
import plistlib
import tarfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from helpers import REPO, SIZE, error_line, make_prior, rows, run
from monai_dmilo.data import LoadImageForPriord
from monai_dmilo.data.invesalius import read_inv3
from monai_dmilo.priors.loading import load_model_config


def _main_plist(shape=(3, 4, 5), dtype="int16", filename="matrix.dat", spacing=(0.5, 0.5, 2.0)) -> bytes:
    return plistlib.dumps({"matrix": {"dtype": dtype, "filename": filename, "shape": list(shape)},
                           "spacing": list(spacing), "modality": "CT", "name": "phantom"})


def write_inv3(path: Path, members: dict[str, bytes], *, compress: bool = True) -> Path:
    """An .inv3 project: a (gzipped) tar with the members under one folder."""
    with tarfile.open(path, "w:gz" if compress else "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"tmpproject/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_inv3_reader_returns_the_volume_its_header_describes(tmp_path):
    volume = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5) * 37 - 1000
    path = write_inv3(tmp_path / "p.inv3", {"main.plist": _main_plist(), "matrix.dat": volume.astype("<i2").tobytes(),
                                            "mask_0.dat": b"\x00" * 7})
    read = read_inv3(path)
    np.testing.assert_array_equal(read.array, volume)
    assert read.array.dtype == np.int16 and read.spacing == (0.5, 0.5, 2.0)
    assert read.modality == "CT" and read.name == "phantom"


@pytest.mark.parametrize(
    "case, match",
    [
        ("not_tar", "not a (gzipped) tar archive"),
        ("no_main", "expected one main.plist, found 0"),
        ("bad_plist", "main.plist is not a property list"),
        ("no_matrix", "no 'matrix' entry"),
        ("dtype", "matrix dtype 'complex64' is not one of"),
        ("shape", "matrix shape [3, 4] is not three positive integers"),
        ("spacing", "spacing [0.5, -1.0, 2.0] is not three positive numbers"),
        ("missing_raw", "the matrix file 'matrix.dat' named in main.plist is missing"),
        ("size", "holds 118 bytes, expected 120"),
    ],
)
def test_inv3_reader_refuses_a_malformed_project_in_one_line(tmp_path, case, match):
    raw = np.zeros(60, dtype="<i2").tobytes()
    members = {"main.plist": _main_plist(), "matrix.dat": raw}
    if case == "not_tar":
        path = tmp_path / "p.inv3"
        path.write_bytes(b"this is not an archive")
    else:
        if case == "no_main":
            members.pop("main.plist")
        elif case == "bad_plist":
            members["main.plist"] = b"<plist><dict><key>matrix"
        elif case == "no_matrix":
            members["main.plist"] = plistlib.dumps({"spacing": [1.0, 1.0, 1.0]})
        elif case == "dtype":
            members["main.plist"] = _main_plist(dtype="complex64")
        elif case == "shape":
            members["main.plist"] = _main_plist(shape=(3, 4))
        elif case == "spacing":
            members["main.plist"] = _main_plist(spacing=(0.5, -1.0, 2.0))
        elif case == "missing_raw":
            members.pop("matrix.dat")
        elif case == "size":
            members["matrix.dat"] = raw[:-2]
        path = write_inv3(tmp_path / "p.inv3", members)
    line = error_line(read_inv3, path)
    assert match in line and str(path) in line


def test_inv3_reader_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_inv3(tmp_path / "absent.inv3")


def _hu_slice(tmp_path: Path, values: np.ndarray, name: str = "ct.nii.gz") -> Path:
    path = tmp_path / name
    nib.Nifti1Image(values.astype(np.float32), np.diag([0.8, 0.8, 2.0, 1.0])).to_filename(str(path))
    return path


def test_hounsfield_window_maps_air_water_bone_and_clips(tmp_path):
    hu = np.array([[-1000.0, 0.0], [1000.0, 3000.0]])
    path = _hu_slice(tmp_path, hu)
    out = LoadImageForPriord("image", intensity_window=(-1000, 1000))({"image": str(path), "name": "ct"})
    torch.testing.assert_close(out["image"][0], torch.tensor([[-1.0, 0.0], [1.0, 1.0]]))
    assert (out["intensity_min"], out["intensity_max"]) == (-1000.0, 1000.0)
    # without a window the same file is min-max scaled (the MRI priors' loading)
    plain = LoadImageForPriord("image")({"image": str(path), "name": "ct"})
    assert plain["image"].max() == 1.0 and plain["image"][0, 0, 1] == pytest.approx(-1 + 2 * 1000 / 4000)


def test_resize_to_the_prior_grid_is_linear_in_hounsfield_units(tmp_path):
    rng = np.random.default_rng(0)
    hu = rng.uniform(-200.0, 200.0, (64, 64))
    path = _hu_slice(tmp_path, hu)
    out = LoadImageForPriord("image", intensity_window=(-1000, 1000), spatial_size=(16, 16))(
        {"image": str(path), "name": "ct"})["image"]
    assert out.shape == (1, 16, 16)
    # antialiased 4x down-sampling of a field inside the window: block means, in HU / 1000
    blocks = hu.reshape(16, 4, 16, 4).mean(axis=(1, 3)) / 1000.0
    assert float((out[0].double() - torch.from_numpy(blocks)).abs().mean()) < 0.02
    with pytest.raises(ValueError, match="spatial_size must be two positive ints"):
        LoadImageForPriord("image", spatial_size=(0, 16))


def test_model_config_intensity_window_is_checked(tmp_path):
    cfg = make_prior(tmp_path)
    text = cfg.read_text()
    cfg.write_text(text + "intensity_window: [-1000, 1000]\n")
    assert load_model_config(cfg)["intensity_window"] == (-1000.0, 1000.0)
    cfg.write_text(text + "intensity_window: [1000, -1000]\n")
    assert "intensity_window must be finite numbers with lo < hi" in error_line(load_model_config, cfg)


@pytest.fixture()
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)


def test_evaluate_windows_a_hounsfield_volume_of_another_size_and_saves_it_in_hu(tmp_path, _repo_cwd):
    """A prior with an intensity window (a CT prior): a 2x larger HU volume is brought to the
    prior's grid and windowed exactly as training was; the reconstruction is saved in HU over the
    source's field of view."""
    cfg = make_prior(tmp_path)
    cfg.write_text(cfg.read_text() + "intensity_window: [-1000, 1000]\n")
    yy, xx = np.mgrid[: 2 * SIZE, : 2 * SIZE]
    head = ((yy - SIZE) ** 2 + (xx - SIZE) ** 2 < (0.7 * SIZE) ** 2)
    vol = np.where(head, 40.0, -1000.0)[..., None].repeat(2, axis=2)
    vol[SIZE, SIZE, :] = 2500.0  # above the window: clipped
    affine = np.diag([0.5, 0.5, 3.0, 1.0])
    data = tmp_path / "ct"
    data.mkdir()
    nib.Nifti1Image(vol.astype(np.float32), affine).to_filename(str(data / "head.nii.gz"))
    out = tmp_path / "run"
    run("evaluate.yaml", tmp_path, dataset_dir=str(data), output_dir=str(out), task="gaussian_blur")

    assert sorted(r["name"] for r in rows(out / "metrics.csv")) == ["head_s000", "head_s001"]
    rec = nib.load(str(out / "reconstructions" / "head.nii.gz"))
    assert rec.shape == (SIZE, SIZE, 2)
    np.testing.assert_allclose(np.diag(rec.affine)[:3], [1.0, 1.0, 3.0])
    values = np.asarray(rec.dataobj)
    assert values.min() >= -1000.0 - 1e-3 and values.max() <= 1000.0 + 1e-3  # HU, within the window
    # the same volume with the window removed from the prior is refused for its size
    cfg.write_text(cfg.read_text().replace("intensity_window: [-1000, 1000]\n", ""))
    line = error_line(run, "evaluate.yaml", tmp_path, dataset_dir=str(data), output_dir=str(tmp_path / "run2"),
                      task="gaussian_blur")
    assert f"is {2 * SIZE}x{2 * SIZE} but the prior takes {SIZE}x{SIZE}" in line and "--resize_to_prior true" in line


def test_tasks_name_their_default_prior():
    from monai_dmilo.workflow.tasks import load_task, task_model_config

    assert Path(task_model_config(load_task("mri"))).name == "brain_mri_32.yaml"
    assert Path(task_model_config(load_task("inpainting"))).name == "fashion_mnist_32.yaml"


def test_a_checkpoint_with_its_model_config_beside_it_needs_no_model_config(tmp_path, _repo_cwd):
    """--checkpoint runs/x/prior.pt alone: train.yaml's runs/x/prior.yaml next to it is used (the
    issue's "182 missing keys" case); with another model config the error names the one to pass."""
    from helpers import make_pngs

    make_prior(tmp_path)  # tiny.pt with tiny.yaml beside it
    make_pngs(tmp_path / "data", 1)
    default = "$monai_dmilo.workflow.tasks.task_model_config(@task_preset, checkpoint=@checkpoint)"
    out = tmp_path / "run"
    run("evaluate.yaml", tmp_path, dataset_dir=str(tmp_path / "data"), output_dir=str(out),
        model_config=default, checkpoint=str(tmp_path / "tiny.pt"))
    assert [r["name"] for r in rows(out / "metrics.csv")] == ["img0"]
    line = error_line(run, "evaluate.yaml", tmp_path, dataset_dir=str(tmp_path / "data"),
                      output_dir=str(tmp_path / "run2"), model_config="configs/models/fashion_mnist_32.yaml",
                      checkpoint=str(tmp_path / "tiny.pt"))
    assert "does not match prior 'fashion_mnist_32'" in line and f"--model_config {tmp_path / 'tiny.yaml'}" in line


def test_ct_task_runs_on_the_shipped_ct_prior_and_saves_hounsfield_units(tmp_path, _repo_cwd):
    """``--task ct`` with no --model_config: the CT prior, its HU window on the shipped CT slices,
    reconstructions back in HU. DDRM (its CT preset: 20 NFE) keeps it quick: what is tested is the
    task's prior and units, not the solver."""
    import json

    from monai_dmilo.workflow.tasks import load_task, task_model_config

    assert Path(task_model_config(load_task("ct"))).name == "ct_head_32.yaml"
    default = "$monai_dmilo.workflow.tasks.task_model_config(@task_preset, checkpoint=@checkpoint)"
    out = tmp_path / "run"
    run("evaluate.yaml", tmp_path, dataset_dir=str(REPO / "bundle" / "sample_images" / "ct_head"),
        output_dir=str(out), task="ct", model_config=default, max_images=2, solver="ddrm",
        solver_overrides=None)
    summary = json.loads((out / "summary.json").read_text())
    assert Path(summary["model_config"]).name == "ct_head_32.yaml"
    for row in rows(out / "metrics.csv"):
        rec = np.asarray(nib.load(str(out / "reconstructions" / f"{row['name']}.nii.gz")).dataobj)
        assert rec.shape == (32, 32) and -1000.0 - 1e-3 <= rec.min() and rec.max() <= 1000.0 + 1e-3


def _ct_series(folder: Path, hu: np.ndarray, spacing=(0.5, 0.5, 3.0)) -> None:
    """A minimal CT image series: ``hu`` ``(rows, cols, slices)`` stored as HU + 1024 with
    RescaleIntercept -1024 (the usual CT encoding)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True)
    series = generate_uid(entropy_srcs=["ct-series"])
    for k in range(hu.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
        meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["ct", str(k)])
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(str(folder / f"{k}.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.StudyInstanceUID = "CT", series, generate_uid(entropy_srcs=["study"])
        ds.InstanceNumber, ds.Rows, ds.Columns = k + 1, hu.shape[0], hu.shape[1]
        ds.PixelSpacing, ds.SliceThickness = [spacing[0], spacing[1]], spacing[2]
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, k * spacing[2]], [1, 0, 0, 0, 1, 0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = np.ascontiguousarray(hu[:, :, k] + 1024, dtype=np.uint16).tobytes()
        ds.save_as(str(folder / f"{k}.dcm"), enforce_file_format=True)


def test_evaluate_windows_a_ct_dicom_series_in_hounsfield_units(tmp_path, _repo_cwd):
    """A CT DICOM series (stored values + RescaleIntercept = HU) of another matrix size: read in HU,
    windowed and resized as training was, reconstructed back in HU as a NIfTI volume."""
    pytest.importorskip("pydicom")
    cfg = make_prior(tmp_path)
    cfg.write_text(cfg.read_text() + "intensity_window: [-1000, 1000]\n")
    yy, xx = np.mgrid[: 2 * SIZE, : 2 * SIZE]
    head = (yy - SIZE) ** 2 + (xx - SIZE) ** 2 < (0.7 * SIZE) ** 2
    hu = np.where(head, 40, -1024)[..., None].repeat(2, axis=2)
    _ct_series(tmp_path / "ct" / "series1", hu)
    out = tmp_path / "run"
    run("evaluate.yaml", tmp_path, dataset_dir=str(tmp_path / "ct"), output_dir=str(out), task="gaussian_blur")
    assert sorted(r["name"] for r in rows(out / "metrics.csv")) == ["series1_s000", "series1_s001"]
    rec = nib.load(str(out / "reconstructions" / "series1.nii.gz"))
    assert rec.shape == (SIZE, SIZE, 2)
    np.testing.assert_allclose(np.abs(np.diag(rec.affine))[:3], [1.0, 1.0, 3.0], atol=1e-6)
    values = np.asarray(rec.dataobj)
    assert values.min() >= -1000.0 - 1e-3 and values.max() <= 1000.0 + 1e-3
    inside = values[SIZE // 2 - 2: SIZE // 2 + 2, SIZE // 2 - 2: SIZE // 2 + 2]
    assert np.abs(inside.mean() - 40.0) < 150.0  # the head's soft tissue, in HU (not a min-max scale)
