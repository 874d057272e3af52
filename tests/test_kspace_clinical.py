"""The clinical path: ISMRMRD / MRD input, the classical references (checked against BART where
installed), coil-map refinement, DICOM that passes dciodvfy (where installed)."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import torch

h5py = pytest.importorskip("h5py")

from monai_dmilo.kspace.classical import (  # noqa: E402
    _gradient, _gradient_adjoint, choose_weight, cs_tv, sense, tv_scale, zero_filled_rss,
)
from monai_dmilo.kspace.coils import estimate_coil_maps  # noqa: E402
from monai_dmilo.kspace.problem import undersample  # noqa: E402
from monai_dmilo.kspace.reader import dicom_attributes, read_kspace_file  # noqa: E402
from monai_dmilo.kspace.simulate import simulate_kspace  # noqa: E402
from monai_dmilo.operators.mri import MRI  # noqa: E402

from test_kspace import phantom  # noqa: E402


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """After the least-squares intensity scale (Tikhonov shrinks the image)."""
    s = float((image * reference).sum() / (image * image).sum())
    return float(10 * np.log10(reference.max() ** 2 / np.mean((s * image - reference) ** 2)))


def mean_psnr(images: np.ndarray, references: np.ndarray) -> float:
    return float(np.mean([psnr(a, r) for a, r in zip(images, references)]))


@pytest.fixture(scope="module")
def few_lines():
    """4 coils, 32 x 32, 4x with 3 calibration columns: what makes the calibration-only maps poor."""
    data = simulate_kspace(phantom(3, 32), coils=4, noise=0.01, seed=1, with_maps=True)
    kspace, mask = undersample(data["kspace"], 4, 0.08, seed=0)
    return data, torch.from_numpy(kspace), mask, torch.from_numpy(mask.astype(np.float32))


# ------------------------------------------------------------------------------------- references
def test_tv_gradient_adjoint():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 8, 9, dtype=torch.complex64, generator=g)
    p = torch.randn(2, 2, 8, 9, dtype=torch.complex64, generator=g)
    lhs = (_gradient(x).conj() * p).sum().real
    rhs = (x.conj() * _gradient_adjoint(p)).sum().real
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-5)


def test_cs_tv_minimises_its_objective(few_lines):
    data, k, mask, m = few_lines
    maps = torch.from_numpy(data["sensitivity_maps"])
    lam = 1e-2
    weight = lam * tv_scale(k, maps, m)
    operator = MRI(m, coil_maps=maps)

    def objective(x):
        tv = _gradient(x).abs().square().sum(1).sqrt().flatten(1).sum(1)
        return 0.5 * (operator(x) - k).abs().square().flatten(1).sum(1) + weight * tv

    x = cs_tv(k, maps, m, lam=lam, num_iters=400)
    best = objective(x)
    assert bool((best < objective(torch.zeros_like(x))).all())
    g = torch.Generator().manual_seed(1)
    for _ in range(3):  # small perturbations of the minimiser do not lower the objective
        dx = 1e-3 * torch.randn(x.shape, dtype=x.dtype, generator=g) * x.abs().max()
        assert bool((objective(x + dx) >= best - 1e-4 * best).all())


def test_per_slice_weights_equal_separate_calls(few_lines):
    data, k, mask, m = few_lines
    k, maps = k.to(torch.complex128), torch.from_numpy(data["sensitivity_maps"]).to(torch.complex128)
    weights = torch.tensor([1e-3, 1e-2, 1e-1])
    joint = sense(k, maps, m, tikhonov=weights)
    for s in range(3):
        alone = sense(k[s:s + 1], maps[s:s + 1], m, tikhonov=float(weights[s]))
        torch.testing.assert_close(joint[s:s + 1], alone, atol=1e-9, rtol=1e-7)


def test_cross_validation_follows_the_noise():
    """Exact maps: nearly noise-free data get a smaller weight than very noisy data."""
    clean = simulate_kspace(phantom(2, 32), coils=4, noise=1e-4, seed=2, with_maps=True)
    noisy = simulate_kspace(phantom(2, 32), coils=4, noise=0.1, seed=2, with_maps=True)
    chosen = []
    for data in (clean, noisy):
        kspace, mask = undersample(data["kspace"], 2, 0.1, seed=0)
        maps = torch.from_numpy(data["sensitivity_maps"])
        grid = (1e-3, 1e-2, 1e-1, 1.0)
        chosen.append(choose_weight(sense, torch.from_numpy(kspace), maps, torch.from_numpy(mask.astype(np.float32)),
                                    grid, keyword="tikhonov"))
    assert bool((chosen[0] < chosen[1]).all()), chosen


def test_cross_validated_sense_beats_the_fixed_weight_and_zero_filling_with_few_lines(few_lines):
    data, k, mask, m = few_lines
    reference = data["reconstruction_rss"]
    maps = estimate_coil_maps(k, mask, "lowres")
    weights = choose_weight(sense, k, maps, m, (1e-3, 1e-2, 1e-1, 1.0), keyword="tikhonov")
    auto = mean_psnr(sense(k, maps, m, tikhonov=weights).abs()[:, 0].numpy(), reference)
    fixed = mean_psnr(sense(k, maps, m, tikhonov=0.01).abs()[:, 0].numpy(), reference)
    zero_filled = mean_psnr(zero_filled_rss(k).numpy(), reference)
    assert auto > fixed and auto > zero_filled, (auto, fixed, zero_filled)


def test_jsense_maps_are_closer_to_the_truth_than_the_calibration_maps(few_lines):
    data, k, mask, m = few_lines
    true = torch.from_numpy(data["sensitivity_maps"])
    on_object = torch.from_numpy(data["reconstruction_rss"]) > 0.1
    scores = {}
    for method in ("lowres", "jsense"):
        maps = estimate_coil_maps(k, mask, method)
        assert torch.allclose(maps.abs().square().sum(1)[on_object], torch.ones(()), atol=1e-3)
        corr = (maps.conj() * true).sum(1).abs() / (maps.abs().square().sum(1).sqrt() * true.abs().square().sum(1).sqrt())
        scores[method] = float(corr[on_object].mean())
    assert scores["jsense"] > scores["lowres"], scores


# ------------------------------------------------------------------------------------------- BART
bart = pytest.mark.skipif(shutil.which("bart") is None, reason="bart is not installed (Debian: apt-get install bart)")


def test_cfl_round_trip(tmp_path):
    from monai_dmilo.kspace.bart import read_cfl, write_cfl

    a = (np.arange(24) + 1j * np.arange(24)[::-1]).reshape(2, 3, 4).astype(np.complex64)
    write_cfl(tmp_path / "a", a)
    assert (tmp_path / "a.hdr").read_text().split("\n")[1].split()[:4] == ["2", "3", "4", "1"]
    np.testing.assert_array_equal(read_cfl(tmp_path / "a"), a)


@bart
@pytest.mark.parametrize("method", ["sense", "cs_tv"])
def test_references_match_bart_pics(few_lines, method):
    """The same k-space, maps and weight: PSNR within 0.3 dB of ``bart pics`` on every slice."""
    from monai_dmilo.kspace.bart import bart_pics

    data, k, mask, m = few_lines
    reference = data["reconstruction_rss"]
    maps = estimate_coil_maps(k, mask, "lowres")
    if method == "sense":
        ours = sense(k, maps, m, tikhonov=0.1)
        theirs = [bart_pics(k[s].numpy(), maps[s].numpy(), regularization="l2", lam=0.1) for s in range(3)]
    else:
        lam = 1e-2
        ours = cs_tv(k, maps, m, lam=lam, num_iters=500)
        scale = tv_scale(k, maps, m)
        theirs = [bart_pics(k[s].numpy(), maps[s].numpy(), regularization="tv", lam=float(lam * scale[s]), iters=300)
                  for s in range(3)]
    for s in range(3):
        a = psnr(ours.abs()[s, 0].numpy(), reference[s])
        b = psnr(np.abs(theirs[s]), reference[s])
        assert abs(a - b) < 0.3, (s, a, b)


# -------------------------------------------------------------------------------------------- MRD
ismrmrd = pytest.importorskip("ismrmrd")


def _mrd(tmp_path, name="scan", **kwargs):
    from monai_dmilo.kspace.simulate import write_mrd_file

    data = simulate_kspace(phantom(2, 32), coils=4, noise=0.0, seed=0, with_maps=True)
    path = tmp_path / f"{name}.h5"
    write_mrd_file(path, data["kspace"], pixel_mm=2.0, thickness_mm=4.0, **kwargs)
    return path, data


def test_mrd_fully_sampled_round_trip_and_header(tmp_path):
    path, data = _mrd(tmp_path, subject={"patientName": "Doe^Jane", "patientID": "P7", "patientGender": "F"},
                      study={"studyDate": "2026-01-02", "studyTime": "10:11:12", "studyInstanceUID": "1.2.826.0.1.7"},
                      sequence={"TR": [500.0], "TE": [12.5], "flipAngle_deg": [90.0]})
    item = read_kspace_file(path)
    assert item.attrs["format"] == "mrd" and item.kspace.shape == (2, 4, 32, 32) and item.mask.all()
    np.testing.assert_allclose(item.kspace, data["kspace"], atol=1e-6)
    assert item.spacing == (2.0, 2.0, 4.0)
    assert item.dicom == {"PatientName": "Doe^Jane", "PatientID": "P7", "PatientSex": "F", "StudyDate": "20260102",
                          "StudyTime": "101112", "StudyInstanceUID": "1.2.826.0.1.7", "PatientPosition": "HFS",
                          "MagneticFieldStrength": "1.5", "RepetitionTime": "500", "EchoTime": "12.5",
                          "FlipAngle": "90"}


def test_mrd_undersampled_with_calibration_flags(tmp_path):
    data = simulate_kspace(phantom(2, 32), coils=4, noise=0.0, seed=0)
    kspace, mask = undersample(data["kspace"], 4, 0.1, seed=0)
    from monai_dmilo.kspace.simulate import write_mrd_file

    write_mrd_file(tmp_path / "u.h5", data["kspace"], mask=mask, calibration=3, acceleration=4)
    item = read_kspace_file(tmp_path / "u.h5")
    np.testing.assert_array_equal(item.mask, mask)
    np.testing.assert_allclose(item.kspace, kspace, atol=1e-6)
    assert item.attrs["header_acceleration"] == 4 and item.mask_source == "acquired lines"


def test_mrd_noise_scan_whitens_the_coils(tmp_path):
    """Correlated coil noise: after whitening with the noise scan the k-space noise is white, unit variance."""
    from monai_dmilo.kspace.simulate import write_mrd_file

    rng = np.random.default_rng(0)
    mixing = np.eye(4) + 0.5 * rng.standard_normal((4, 4))
    white = rng.standard_normal((1, 4, 64, 64)) + 1j * rng.standard_normal((1, 4, 64, 64))
    noise_only = np.einsum("dc,schw->sdhw", mixing, 0.05 * white)
    write_mrd_file(tmp_path / "n.h5", noise_only, noise_samples=4096, noise=0.05, coil_noise=mixing, seed=3)
    item = read_kspace_file(tmp_path / "n.h5")
    samples = item.kspace.reshape(4, -1)
    covariance = samples @ samples.conj().T / samples.shape[1]
    np.testing.assert_allclose(covariance, np.eye(4), atol=0.1)  # E |n_c|^2 = 1, coils uncorrelated
    assert "whitened" in item.attrs["whitening"]


@pytest.mark.parametrize("problem, message", [
    ("not_mrd", "not an ISMRMRD"), ("radial", "trajectory"), ("three_d", "3D encoding"),
    ("contrast", "more than one contrast"), ("outside", "outside the header"), ("empty", "no acquisitions"),
])
def test_malformed_mrd_files_give_one_clear_line(tmp_path, problem, message):
    import ismrmrd.xsd as xsd

    path, _ = _mrd(tmp_path)
    if problem == "not_mrd":
        with h5py.File(path, "w") as f:
            f.create_dataset("other", data=np.zeros(3))
    elif problem in ("radial", "three_d", "empty"):
        dataset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
        header = xsd.CreateFromDocument(dataset.read_xml_header())
        dataset.close()
        if problem == "radial":
            header.encoding[0].trajectory = xsd.trajectoryType.RADIAL
        elif problem == "three_d":
            header.encoding[0].encodedSpace.matrixSize.z = 8
        with h5py.File(path, "a") as f:
            if problem == "empty":
                del f["dataset/data"]
            del f["dataset/xml"]
        dataset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
        dataset.write_xml_header(xsd.ToXML(header))
        dataset.close()
    else:
        dataset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
        acq = dataset.read_acquisition(0)
        if problem == "contrast":
            acq.idx.contrast = 1
        else:
            acq.idx.kspace_encode_step_1 = 99
        dataset.append_acquisition(acq)
        dataset.close()
    from monai_dmilo.kspace.mrd import read_mrd_file

    with pytest.raises(ValueError, match=message) as info:
        read_mrd_file(path)
    assert "\n" not in str(info.value)


def test_header_attributes_from_a_fastmri_header_and_bad_xml():
    from monai_dmilo.kspace.simulate import HEADER

    assert dicom_attributes(None) == {} and dicom_attributes(b"<not xml") == {}
    assert dicom_attributes(HEADER.format(h=4, w=4, fov_h=8, fov_w=8, thickness=2)) == {}


def test_workflow_reads_a_folder_of_mrd_files_and_writes_their_patient(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from monai_dmilo.kspace.workflow import run_kspace
    from monai_dmilo.priors.loading import build_prior
    from monai_dmilo.solvers import build

    folder = tmp_path / "in"
    folder.mkdir()
    data = simulate_kspace(phantom(2, 32), coils=4, noise=0.005, seed=0)
    _, mask = undersample(data["kspace"], 3, 0.2, seed=0)
    from monai_dmilo.kspace.simulate import write_mrd_file

    write_mrd_file(folder / "mrd.h5", data["kspace"], mask=mask, calibration=6, pixel_mm=2.0, noise_samples=512,
                   noise=0.005, subject={"patientName": "Doe^John", "patientID": "P9"},
                   study={"studyInstanceUID": "1.2.826.0.1.9"})
    out = tmp_path / "out"
    summary = run_kspace(folder, out, prior=build_prior("brain_mri_32", num_steps=2),
                         solver=build("dmilo", num_outer=1, num_inner=1), solver_name="dmilo", settings={})
    assert set(summary) == {"zero_filled", "sense", "cs_tv", "dmilo"}  # no reference: no PSNR, still all written
    ds = pydicom.dcmread(next((out / "dicom" / "mrd").glob("*.dcm")))
    assert (str(ds.PatientName), ds.PatientID, ds.StudyInstanceUID) == ("Doe^John", "P9", "1.2.826.0.1.9")
    import json

    record = json.loads((out / "processing" / "mrd.json").read_text())
    assert record["format"] == "mrd" and "whitened" in record["noise"]
    assert set(record["reference_weights"]) == {"sense_tikhonov", "cs_tv_lam"}


# ------------------------------------------------------------------------------------------ DICOM
@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy is not installed (Debian: dicom3tools)")
@pytest.mark.parametrize("attributes", [{}, {"PatientName": "Doe^Jane", "PatientID": "P7", "PatientSex": "F",
                                              "StudyDate": "20260102", "StudyTime": "101112", "EchoTime": "12.5",
                                              "RepetitionTime": "500", "Manufacturer": "ACME"}])
def test_written_mr_instances_pass_dciodvfy(tmp_path, attributes):
    pytest.importorskip("pydicom")
    from helpers import write_dicom_series

    vol = np.random.default_rng(0).random((2, 16, 20))
    paths = write_dicom_series(vol, tmp_path, spacing=(2.0, 2.5, 3.0), description="dmilo", uid_seed="x",
                               attributes=attributes)
    for path in paths:
        result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
        report = result.stdout + result.stderr
        assert "MRImage" in report
        errors = [line for line in report.splitlines() if line.startswith("Error")]
        assert not errors, report


def test_fit_intensity_undoes_the_shrinkage():
    """Noise-free, exact maps, fully sampled: strong Tikhonov shrinks SENSE by 1 / (1 + lam); the
    data-fitted scale brings it back to the true image."""
    from monai_dmilo.kspace.classical import fit_intensity

    data = simulate_kspace(phantom(2, 32), coils=4, noise=0.0, seed=4, with_maps=True)
    k, maps = torch.from_numpy(data["kspace"]), torch.from_numpy(data["sensitivity_maps"])
    ones = torch.ones(32)
    shrunk = sense(k, maps, ones, tikhonov=1.0)
    truth = sense(k, maps, ones, tikhonov=0.0)
    assert float((shrunk.abs() / truth.abs().clamp_min(1e-6))[truth.abs() > 0.1].mean()) == pytest.approx(0.5, abs=0.01)
    torch.testing.assert_close(fit_intensity(shrunk, k, maps, ones), truth, atol=1e-4, rtol=1e-3)
