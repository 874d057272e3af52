"""Raw multi-coil k-space: reader, coil maps, SENSE, the magnitude model, DICOM writer, workflow."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

h5py = pytest.importorskip("h5py")

from monai_dmilo.kspace.coils import estimate_coil_maps  # noqa: E402
from monai_dmilo.kspace.problem import build_problem, crop_kspace, sense, undersample  # noqa: E402
from monai_dmilo.kspace.reader import describe_mask, read_kspace_file, spacing_from_header  # noqa: E402
from monai_dmilo.kspace.simulate import HEADER, simulate_kspace, write_fastmri_h5  # noqa: E402
from monai_dmilo.operators.mri import ifft2c  # noqa: E402


def phantom(slices: int = 3, size: int = 48) -> np.ndarray:
    """Ellipse phantoms ``(slices, size, size)`` in [0, 1] (background 0, like a skull-stripped brain)."""
    u = np.linspace(-1, 1, size)[:, None]
    v = np.linspace(-1, 1, size)[None, :]
    out = []
    for k in range(slices):
        head = ((u / 0.8) ** 2 + (v / (0.65 + 0.05 * k)) ** 2) < 1
        inner = (((u - 0.2) / 0.3) ** 2 + ((v + 0.1 * k) / 0.2) ** 2) < 1
        out.append(0.6 * head + 0.4 * inner)
    return np.stack(out).astype(np.float32)


@pytest.fixture(scope="module")
def kspace_file(tmp_path_factory) -> Path:
    data = simulate_kspace(phantom(), coils=4, noise=0.002, seed=0, with_maps=True)
    path = tmp_path_factory.mktemp("ksp") / "phantom.h5"
    write_fastmri_h5(path, data, pixel_mm=2.0, thickness_mm=3.0, acquisition="TEST", patient_id="p1")
    return path


def write_h5(path: Path, **datasets) -> Path:
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            f.create_dataset(key, data=value)
    return path


# ----------------------------------------------------------------------------------------- reader
def test_reader_shapes_dtype_spacing_and_reference(kspace_file):
    item = read_kspace_file(kspace_file)
    assert item.kspace.shape == (3, 4, 48, 48) and item.kspace.dtype == np.complex64
    assert item.reference.shape == (3, 48, 48)
    assert item.mask_source == "inferred" and item.mask.all()
    assert item.spacing == (2.0, 2.0, 3.0)
    assert item.attrs["patient_id"] == "p1" and item.name == "phantom"


def test_reader_single_coil_and_mask_inferred_from_zero_lines(tmp_path):
    k = (np.random.default_rng(0).standard_normal((2, 16, 20)) + 1j).astype(np.complex64)
    k[..., ::3] = 0  # unsampled columns
    k[..., 9:11] = 1.0  # a fully sampled centre
    item = read_kspace_file(write_h5(tmp_path / "single.h5", kspace=k))
    assert item.kspace.shape == (2, 1, 16, 20)
    expected = np.ones(20, bool)
    expected[::3] = False
    expected[9:11] = True
    np.testing.assert_array_equal(item.mask, expected)
    acceleration, central = describe_mask(item.mask)
    assert acceleration == pytest.approx(20 / expected.sum()) and central == 5  # columns 7..11


def test_reader_takes_the_fastmri_layout_unchanged(tmp_path):
    """The field names, shapes and attributes of a fastMRI multi-coil test file (fastMRI README):
    kspace (slices, coils, 640, 368) complex64, mask (368,), reconstruction_rss (slices, 320, 320)."""
    rng = np.random.default_rng(1)
    k = (rng.standard_normal((2, 3, 640, 368)) + 1j * rng.standard_normal((2, 3, 640, 368))).astype(np.complex64)
    mask = np.zeros(368, np.float32)
    mask[::4] = 1
    mask[170:198] = 1
    k *= mask
    path = tmp_path / "file_brain_AXT2_200_2000019.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kspace", data=k)
        f.create_dataset("mask", data=mask)
        f.create_dataset("reconstruction_rss", data=rng.random((2, 320, 320)).astype(np.float32))
        f.create_dataset("ismrmrd_header", data=HEADER.format(h=640, w=368, fov_h=440.0, fov_w=253.0, thickness=5.0).encode())
        f.attrs.update({"acquisition": "AXT2", "max": 1.0, "norm": 1.0, "patient_id": "abc",
                        "acceleration": 4, "num_low_frequency": 28})
    item = read_kspace_file(path)
    assert item.kspace.shape == (2, 3, 640, 368) and item.mask_source == "file"
    assert describe_mask(item.mask)[1] == 28
    assert item.spacing == (pytest.approx(440 / 640), pytest.approx(253 / 368), 5.0)
    assert item.attrs["acquisition"] == "AXT2" and item.name == "file_brain_AXT2_200_2000019"


@pytest.mark.parametrize("datasets, message", [
    ({"image": np.zeros((2, 8, 8), np.float32)}, "no 'kspace' dataset"),
    ({"kspace": np.zeros((2, 8, 8), np.float32)}, "real-valued"),
    ({"kspace": np.ones((8, 8), np.complex64)}, "expected (slices, coils, H, W) or (slices, H, W)"),
    ({"kspace": np.ones((1, 2, 8, 8), np.complex64), "mask": np.ones(5)}, "'mask' has shape (5,)"),
    ({"kspace": np.zeros((1, 2, 8, 8), np.complex64)}, "no k-space line is acquired"),
])
def test_reader_bad_files_give_one_clear_line(tmp_path, datasets, message):
    path = write_h5(tmp_path / "bad.h5", **datasets)
    with pytest.raises(ValueError) as err:
        read_kspace_file(path)
    assert message in str(err.value) and "bad.h5" in str(err.value) and "\n" not in str(err.value)


def test_reader_not_hdf5_and_missing_file(tmp_path):
    (tmp_path / "x.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="could not be read as HDF5"):
        read_kspace_file(tmp_path / "x.h5")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_kspace_file(tmp_path / "missing.h5")


def test_spacing_from_header_absent_or_bad():
    assert spacing_from_header(None) == (None, None, None)
    assert spacing_from_header(b"<not xml") == (None, None, None)


# ------------------------------------------------------------------------------ coils and SENSE
@pytest.mark.parametrize("method", ["lowres", "espirit"])
def test_coil_maps_recover_the_synthetic_ones(kspace_file, method):
    if method == "espirit":
        pytest.importorskip("sigpy")
    item = read_kspace_file(kspace_file)
    maps = estimate_coil_maps(torch.from_numpy(item.kspace), item.mask, method)
    true = torch.from_numpy(item.maps)
    corr = (maps.conj() * true).sum(1).abs() / (maps.abs().square().sum(1).sqrt() * true.abs().square().sum(1).sqrt())
    on_object = torch.from_numpy(item.reference) > 0.1
    assert float(corr[on_object].mean()) > 0.99


def test_coil_maps_need_a_calibration_region():
    mask = np.zeros(32, bool)
    mask[::4] = True
    with pytest.raises(ValueError, match="fully sampled central column"):
        estimate_coil_maps(torch.zeros(1, 2, 32, 32, dtype=torch.complex64), mask)


def test_sense_on_fully_sampled_data_is_the_coil_combined_image(kspace_file):
    item = read_kspace_file(kspace_file)
    k, maps = torch.from_numpy(item.kspace), torch.from_numpy(item.maps)
    x = sense(k, maps, torch.ones(48), num_iters=5, tikhonov=0.0)
    combined = (ifft2c(k) * maps.conj()).sum(1, keepdim=True)
    torch.testing.assert_close(x, combined, atol=1e-5, rtol=1e-4)


def test_magnitude_model_with_phase_fits_the_data_and_without_does_not(tmp_path):
    """Noise-free data on the prior's grid: the true magnitude, through the problem's operator,
    reproduces y' when the calibration phase is used, and not when the phase is ignored."""
    data = simulate_kspace(phantom(2, 32), coils=4, noise=0.0, seed=3, with_maps=True)
    kspace, mask = undersample(data["kspace"], 3, 0.25, seed=0)
    fits = {}
    for use_phase in (True, False):
        problem = build_problem(kspace, mask, (32, 32), maps=data["sensitivity_maps"], use_phase=use_phase,
                                intensity_scale=1.0)
        x_true = torch.from_numpy(phantom(2, 32) * 2 - 1)[:, None]
        residual = (problem.operator(x_true) - problem.y).abs().square().sum()
        fits[use_phase] = float(residual / problem.y.abs().square().sum())
    assert fits[True] < 0.02 and fits[False] > 0.3, fits


def test_crop_keeps_intensities_and_crops_the_mask():
    img = torch.zeros(1, 1, 64, 64, dtype=torch.complex64)
    img[..., 16:48, 16:48] = 1.0
    from monai_dmilo.operators.mri import fft2c

    k = fft2c(img).numpy()
    mask = np.arange(64) % 2 == 0
    cropped, m = crop_kspace(k, mask, (32, 32))
    assert cropped.shape == (1, 1, 32, 32) and m.shape == (32,)
    np.testing.assert_array_equal(m, mask[16:48])
    low = ifft2c(torch.from_numpy(cropped)).abs()
    assert float(low[..., 8:24, 8:24].mean()) == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError, match="smaller than the prior"):
        crop_kspace(k, mask, (80, 80))


# ------------------------------------------------------------------------------------------ DICOM
def test_dicom_series_round_trips_through_pydicom_and_monai(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from monai.transforms import LoadImage

    from helpers import write_dicom_series

    vol = np.random.default_rng(0).random((3, 16, 20)) * 2.5
    paths = write_dicom_series(vol, tmp_path / "a", spacing=(2.0, 2.5, 3.0), description="dmilo test", uid_seed="f|s")
    again = write_dicom_series(vol, tmp_path / "b", spacing=(2.0, 2.5, 3.0), description="dmilo test", uid_seed="f|s")
    sets = [pydicom.dcmread(p) for p in paths]
    tolerance = vol.max() / 4095
    for k, ds in enumerate(sets):
        assert ds.Modality == "MR" and "DERIVED" in ds.ImageType and ds.SeriesDescription == "dmilo test"
        assert [float(v) for v in ds.PixelSpacing] == [2.0, 2.5] and float(ds.SliceThickness) == 3.0
        assert float(ds.ImagePositionPatient[2]) == 3.0 * k
        assert "RescaleSlope" not in ds  # the MR IOD has no Modality LUT; the factor is in ImageComments
        factor = float(ds.ImageComments.split(" x ")[1].split(" = ")[0])
        assert factor == pytest.approx(tolerance, rel=1e-6)
        np.testing.assert_allclose(ds.pixel_array * factor, vol[k], atol=tolerance)
    assert len({ds.SOPInstanceUID for ds in sets}) == 3
    assert len({ds.SeriesInstanceUID for ds in sets}) == 1 and len({ds.StudyInstanceUID for ds in sets}) == 1
    assert [pydicom.dcmread(p).SOPInstanceUID for p in again] == [ds.SOPInstanceUID for ds in sets]
    image = LoadImage(reader="PydicomReader", image_only=True)(str(tmp_path / "a"))
    assert tuple(image.shape) == (20, 16, 3)  # MONAI: (columns, rows, slices)
    np.testing.assert_allclose(np.asarray(image).transpose(2, 1, 0) * tolerance, vol, atol=tolerance)
    np.testing.assert_allclose(image.pixdim[:3].numpy(), [2.5, 2.0, 3.0])


# --------------------------------------------------------------------------------------- workflow
def test_workflow_end_to_end_resume_and_refusal(tmp_path, kspace_file):
    pytest.importorskip("pydicom")
    from monai_dmilo.kspace.workflow import run_kspace
    from monai_dmilo.priors.loading import build_prior
    from monai_dmilo.solvers import build

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "phantom.h5").write_bytes(kspace_file.read_bytes())
    generator = build_prior("brain_mri_32", num_steps=2)
    solver = build("dmilo", num_outer=1, num_inner=1)
    out = tmp_path / "out"
    kwargs = dict(prior=generator, solver=solver, solver_name="dmilo", acceleration=3,
                  center_fraction=0.2)
    summary = run_kspace(folder, out, settings={"acceleration": 3}, **kwargs)
    assert set(summary) == {"zero_filled", "sense", "cs_tv", "dmilo"}
    assert all(entry["slices"] == 3 and "psnr" in entry for entry in summary.values())
    import nibabel as nib

    img = nib.load(out / "phantom.nii.gz")
    assert img.shape == (32, 32, 3)
    np.testing.assert_allclose(img.header.get_zooms(), (3.0, 3.0, 3.0))  # 2 mm x 48 / 32
    assert len(list((out / "dicom" / "phantom").glob("*.dcm"))) == 3
    assert (out / "panels" / "phantom.png").is_file()
    record = json.loads((out / "processing" / "phantom.json").read_text())
    assert record["grid"] == [32, 32] and record["matrix"].startswith("centre crop of k-space 48x48 -> 32x32")
    assert record["acceleration_grid"] > 1 and record["coil_maps"] == "lowres"
    assert sorted(p.name for p in (out / "references").iterdir()) == [
        f"phantom_{m}.nii.gz" for m in ("cs_tv", "reference", "sense", "zero_filled")]
    with (out / "kspace_metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and {r["method"] for r in rows} == set(summary)
    assert json.loads((out / "kspace_summary.json").read_text()) == summary
    stamp = (out / "phantom.nii.gz").stat().st_mtime_ns
    run_kspace(folder, out, settings={"acceleration": 3}, **kwargs)  # resumes: nothing redone
    assert (out / "phantom.nii.gz").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="overwrite"):
        run_kspace(folder, out, settings={"acceleration": 4}, **{**kwargs, "acceleration": 4})


def test_workflow_refuses_bad_options_and_already_undersampled_files(tmp_path, kspace_file):
    from monai_dmilo.kspace.workflow import check_options, run_kspace

    base = dict(acceleration=None, center_fraction=0.08, pattern="equispaced", coil_maps="lowres", batch_size=8,
                sense_tikhonov="auto", cs_tv_lam=0.01)
    for key, value, message in (("acceleration", 1, "acceleration must be"), ("pattern", "spiral", "pattern must be"),
                                ("coil_maps", "magic", "coil_maps must be"), ("center_fraction", 0, "center_fraction"),
                                ("sense_tikhonov", "high", "sense_tikhonov must be"), ("cs_tv_lam", -1, "cs_tv_lam")):
        with pytest.raises(ValueError, match=message):
            check_options(**{**base, key: value})
    k = read_kspace_file(kspace_file).kspace.copy()
    k[..., ::2] = 0
    folder = tmp_path / "under"
    folder.mkdir()
    write_h5(folder / "u.h5", kspace=k)
    with pytest.raises(ValueError, match="already undersampled"):
        run_kspace(folder, tmp_path / "o", prior=None, solver=None, solver_name="dmilo",
                   settings={}, acceleration=4)
    assert not (tmp_path / "o").exists()  # refused before anything was written
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no .h5"):
        run_kspace(tmp_path / "empty", tmp_path / "o", prior=None, solver=None, solver_name="dmilo",
                   settings={})


def test_workflow_refuses_file_maps_missing_before_writing(tmp_path):
    from monai_dmilo.kspace.workflow import run_kspace

    folder = tmp_path / "in"
    folder.mkdir()
    write_h5(folder / "nomaps.h5", kspace=np.ones((1, 2, 8, 8), np.complex64))
    with pytest.raises(ValueError, match="holds no 'sensitivity_maps'"):
        run_kspace(folder, tmp_path / "o", prior=None, solver=None, solver_name="dmilo",
                   settings={}, coil_maps="file")
    assert not (tmp_path / "o").exists()
