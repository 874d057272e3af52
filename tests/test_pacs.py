"""A real PACS in the loop: Orthanc (Debian's ``orthanc``) started on loopback with a temporary
configuration and storage folder; C-STORE of written series, C-FIND + C-GET back, the k-space
workflow's ``dicom_destination`` with a refused destination and the rerun that sends what was not
sent, and an evaluate input fetched from the PACS."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
pytest.importorskip("pynetdicom")

from monai_dmilo.data.pacs import (  # noqa: E402
    PacsError, parse_pacs_url, parse_peer, retrieve, send_files, series_folder_name,
)
from helpers import write_dicom_series  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    if shutil.which("Orthanc") is None:
        pytest.skip("Orthanc is not installed (Debian: apt-get install orthanc)")
    root = tmp_path_factory.mktemp("orthanc")
    dicom_port, http_port = _free_port(), _free_port()
    config = {
        "Name": "monai_dmilo_test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
        "DicomAet": "ORTHANC", "DicomPort": dicom_port, "HttpPort": http_port, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False, "Plugins": [], "DicomCheckCalledAet": False, "DicomModalities": {},
        "DicomAlwaysAllowStore": True, "DicomAlwaysAllowFind": True, "DicomAlwaysAllowGet": True,
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    log = (root / "log.txt").open("w")
    process = subprocess.Popen(["Orthanc", str(root / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", dicom_port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"Orthanc exited: {(root / 'log.txt').read_text()[-2000:]}")
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("Orthanc did not open its DICOM port within 30 s")
    yield parse_peer(f"127.0.0.1:{dicom_port}:ORTHANC")
    process.terminate()
    process.wait(timeout=30)
    log.close()


def _refused_peer() -> str:
    return f"127.0.0.1:{_free_port()}:NOBODY"  # nothing listens there


def test_peer_and_url_parsing_errors_are_one_line():
    assert str(parse_peer("pacs.local:104:ORTHANC")) == "pacs.local:104:ORTHANC"
    for bad, message in (("pacs:104", "HOST:PORT:AET"), ("pacs:x:AE", "port must be"),
                         ("pacs:104:" + "A" * 17, "at most 16")):
        with pytest.raises(ValueError, match=message):
            parse_peer(bad)
    peer, query = parse_pacs_url("dicom://127.0.0.1:4242/ORTHANC?StudyInstanceUID=1.2.3")
    assert str(peer) == "127.0.0.1:4242:ORTHANC" and query == {"StudyInstanceUID": "1.2.3"}
    for bad in ("http://h:1/A?StudyInstanceUID=1", "dicom://h:1/A", "dicom://h:1/A?Modality=MR"):
        with pytest.raises(ValueError, match="PACS source"):
            parse_pacs_url(bad)


def test_unreachable_destination_is_one_line(tmp_path):
    paths = write_dicom_series(np.ones((1, 4, 4)), tmp_path, description="x", uid_seed="x")
    with pytest.raises(PacsError, match="could not be reached") as info:
        send_files(paths, _refused_peer())
    assert "\n" not in str(info.value) and paths[0].is_file()


def test_stored_series_retrieved_back_equals_what_was_written(orthanc, tmp_path):
    vol = np.random.default_rng(0).random((3, 16, 20))
    paths = write_dicom_series(vol, tmp_path / "written", spacing=(2.0, 2.5, 3.0), description="round trip",
                               uid_seed="pacs-test-1", attributes={"PatientName": "Doe^Jane", "PatientID": "P7"})
    assert send_files(paths, orthanc) == 3
    study = pydicom.dcmread(paths[0]).StudyInstanceUID
    (folder,) = retrieve(orthanc, {"StudyInstanceUID": study}, tmp_path / "back")
    for path in paths:
        mine = pydicom.dcmread(path)
        theirs = pydicom.dcmread(folder / f"{mine.SOPInstanceUID}.dcm")
        assert theirs.PixelData == mine.PixelData
        for keyword in ("SeriesInstanceUID", "StudyInstanceUID", "PatientName", "PatientID", "PixelSpacing",
                        "ImagePositionPatient", "ImageComments", "SeriesDescription"):
            assert theirs.get(keyword) == mine.get(keyword), keyword
    with pytest.raises(PacsError, match="no series matching"):
        retrieve(orthanc, {"StudyInstanceUID": "1.2.3.999"}, tmp_path / "none")


def test_kspace_workflow_sends_after_a_refusal_on_rerun(orthanc, tmp_path):
    pytest.importorskip("h5py")
    from monai_dmilo.kspace.simulate import simulate_kspace, write_fastmri_h5
    from monai_dmilo.kspace.workflow import run_kspace
    from monai_dmilo.priors.loading import build_prior
    from monai_dmilo.solvers import build

    from test_kspace import phantom

    folder = tmp_path / "in"
    data = simulate_kspace(phantom(2, 32), coils=4, noise=0.005, seed=0)
    write_fastmri_h5(folder / "a.h5", data, pixel_mm=2.0, thickness_mm=3.0, acquisition="T1", patient_id="pa")
    kwargs = dict(prior=build_prior("brain_mri_32", num_steps=2), solver=build("dmilo", num_outer=1, num_inner=1),
                  solver_name="dmilo", settings={"acceleration": 3}, acceleration=3, center_fraction=0.2,
                  sense_tikhonov=0.01, cs_tv_lam=0.001)
    out = tmp_path / "out"
    with pytest.raises(PacsError, match="1 DICOM series not sent") as info:
        run_kspace(folder, out, dicom_destination=_refused_peer(), **kwargs)
    assert "rerun the same command" in str(info.value)
    written = sorted((out / "dicom" / "a").glob("*.dcm"))
    assert len(written) == 2 and (out / "a.nii.gz").is_file()  # nothing lost
    run_kspace(folder, out, dicom_destination=str(orthanc), **kwargs)  # reconstructs nothing, sends the series
    assert json.loads((out / "dicom_sent.json").read_text())[str(orthanc)] == ["a"]
    study = pydicom.dcmread(written[0]).StudyInstanceUID
    (series,) = retrieve(orthanc, {"StudyInstanceUID": study}, tmp_path / "back")
    assert sorted(p.name for p in series.iterdir()) == sorted(f"{pydicom.dcmread(p).SOPInstanceUID}.dcm" for p in written)
    run_kspace(folder, out, dicom_destination=str(orthanc), **kwargs)  # already sent: not sent twice
    assert json.loads((out / "dicom_sent.json").read_text())[str(orthanc)] == ["a"]


def test_evaluate_datalist_from_the_pacs(orthanc, tmp_path):
    from monai_dmilo.data import build_datalist

    vol = np.random.default_rng(1).random((2, 32, 32))
    paths = write_dicom_series(vol, tmp_path / "w", spacing=(1.0, 1.0, 2.0), description="input", uid_seed="eval-in")
    send_files(paths, orthanc)
    series = pydicom.dcmread(paths[0]).SeriesInstanceUID
    items = build_datalist(dataset_dir=f"dicom://127.0.0.1:{orthanc.port}/ORTHANC?SeriesInstanceUID={series}",
                           pacs_dir=tmp_path / "cache", image_shape=(1, 32, 32))
    name = series_folder_name(pydicom.dcmread(paths[0]))
    assert name.startswith("S001_input_") and len(items) == 2 and all(i["volume"] == name for i in items)
    from monai.transforms import LoadImage

    image = LoadImage(reader="PydicomReader", image_only=True)(items[0]["image"])
    np.testing.assert_allclose(np.asarray(image).transpose(2, 1, 0), np.round(vol / (vol.max() / 4095)))


def test_inference_input_series_from_the_pacs(orthanc, tmp_path, monkeypatch):
    """``inference.yaml --dataset_dir dicom://...``: a low-resolution series stored in the PACS is
    fetched and super-resolved slice by slice into a NIfTI volume over its field of view."""
    from helpers import REPO, SIZE, rows, run

    monkeypatch.chdir(REPO)
    vol = np.random.default_rng(2).uniform(10.0, 200.0, (2, SIZE // 4, SIZE // 4))
    paths = write_dicom_series(vol, tmp_path / "w", spacing=(4.0, 4.0, 3.0), description="lowres", uid_seed="inf-in")
    send_files(paths, orthanc)
    series = pydicom.dcmread(paths[0]).SeriesInstanceUID
    out = tmp_path / "run"
    run("inference.yaml", tmp_path, dataset_dir=f"dicom://127.0.0.1:{orthanc.port}/ORTHANC?SeriesInstanceUID={series}",
        output_dir=str(out), task="sr4", pacs_dir=str(tmp_path / "cache"))
    name = series_folder_name(pydicom.dcmread(paths[0]))
    assert sorted(r["name"] for r in rows(out / "metrics.csv")) == [f"{name}_s000", f"{name}_s001"]
    import nibabel as nib

    rec = nib.load(str(out / "reconstructions" / f"{name}.nii.gz"))
    assert rec.shape == (SIZE, SIZE, 2)
    np.testing.assert_allclose(np.abs(np.diag(rec.affine))[:3], [1.0, 1.0, 3.0], atol=1e-6)
